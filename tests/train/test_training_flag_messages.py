"""Training flags whose trouble used to surface late or not at all: a probe file without the pivot
is refused when the arguments are parsed (before the model is loaded and DeepSpeed started), and
--freeze_backbone under --plast_layers is reported as overridden."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import llava_args, run_train
from plast_plugin.errors import PlastError

REPO = Path(__file__).resolve().parents[2]


def _probe_without_pivot(path):
    rows = [{"id": str(i), "lang": lang, "question": f"question {i} in {lang}"} for i in range(4) for lang in ("zh", "ru")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_probe_data_without_the_pivot_is_refused_when_arguments_are_parsed(tmp_path):
    import llava.train.train as module

    from plast_plugin.llava.integration import patch_llava_train_module

    patch_llava_train_module(module)
    probe = _probe_without_pivot(tmp_path / "probe.jsonl")
    with pytest.raises(PlastError, match=r"--plast_probe_data: .*'en'"):
        module.TrainingArguments(output_dir=str(tmp_path / "out"), plast_layers="auto", plast_probe_data=str(probe))
    # a resumed run reuses its selection file and does not need the probe data again
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plast_layers.json").write_text("{}")
    module.TrainingArguments(output_dir=str(tmp_path / "out"), plast_layers="auto", plast_probe_data=str(probe))


def test_zero3_auto_without_the_pivot_stops_before_the_model_loads(assets, tmp_path):
    probe = _probe_without_pivot(tmp_path / "probe.jsonl")
    started = time.monotonic()
    proc = run_train(llava_args(assets, tmp_path / "out", "--plast_layers", "auto", "--plast_probe_data", str(probe)),
                     deepspeed=REPO / "scripts" / "zero3.json")
    assert proc.returncode != 0 and "--plast_probe_data:" in proc.stdout, proc.stdout[-3000:]
    assert "probing" not in proc.stdout and "Loading checkpoint" not in proc.stdout
    assert not (tmp_path / "out" / "plast_layers.json").exists()
    print(f"refused after {time.monotonic() - started:.1f} s")


def test_freeze_backbone_is_reported_as_overridden(assets, tmp_path):
    proc = run_train(llava_args(assets, tmp_path / "out", "--plast_layers", "0-1", "--freeze_backbone", "True", steps=1))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "--freeze_backbone True): --plast_layers overrides it and trains layers [0, 1]" in proc.stdout
    plain = run_train(llava_args(assets, tmp_path / "plain", "--plast_layers", "0-1", steps=1))
    assert plain.returncode == 0 and "--freeze_backbone" not in plain.stdout
