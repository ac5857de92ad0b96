"""What `plast export` (delta, merge) and `plast build-data` refuse, and that a refused or failed
run leaves one line and no partial output. Checkpoints are
made of plain safetensors files here: export works on the files alone."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest
import torch

from core_testutil import question_rows, write_jsonl
from plast_plugin.cli import main
from plast_plugin.checkpoints.export import tensor_sha256

NAMES = ("self_attn.q_proj.weight", "mlp.up_proj.weight", "input_layernorm.weight")


def _tensors(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"model.layers.{i}.{n}": torch.randn(4, 4, generator=g) for i in range(4) for n in NAMES}


def _checkpoint(folder: Path, tensors: dict, record: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 4, "_name_or_path": "base"}))
    if record is not None:
        (folder / "plast_training.json").write_text(json.dumps(record))
    return folder


@pytest.fixture()
def trained(tmp_path):
    """A base (seed 0), a run that trained layers 1-2 of it, and another base of the same shapes."""
    base = _tensors(0)
    after = dict(base)
    names = [n for n in base if n.startswith(("model.layers.1.", "model.layers.2."))]
    for n in names:
        after[n] = base[n] + 1
    record = {"layers": [1, 2], "modules": "layer", "base_model": "base",
              "base_fingerprint": {"method": "test", "tensors": {
                  n: {"dtype": "float32", "sha256": tensor_sha256(base[n])} for n in names}}}
    return {"base": _checkpoint(tmp_path / "base", base), "run": _checkpoint(tmp_path / "run", after, record),
            "other": _checkpoint(tmp_path / "other", _tensors(1)), "after": after, "root": tmp_path}


def _plast(*argv) -> int:
    return main([str(a) for a in argv])


# ----------------------------------------------------------------------------- export flags vs the training record
@pytest.mark.parametrize("flags, message", [
    (("--layers", "0"), "--layers 0 does not match"),
    (("--layers", "1"), "--layers 1 does not match"),
    (("--modules", "mlp"), "--modules mlp does not match"),
    (("--layers", "-1"), "malformed layer spec"),
    (("--layers", "a,b"), "malformed layer spec"),
    (("--layers", "1.5"), "malformed layer spec"),
    (("--layers", "3-1"), "runs backwards"),
    (("--layers", "1-7"), "names layer 7, but the model has 4 decoder layers"),
])
def test_export_refuses_what_was_not_trained(trained, capsys, flags, message):
    out = trained["root"] / "delta"
    assert _plast("export", trained["run"], "--out", out, *flags) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_export_accepts_flags_matching_the_record(trained):
    """(Positive control: export with flags equal to the record still works.)"""
    out = trained["root"] / "delta"
    assert _plast("export", trained["run"], "--out", out, "--layers", "1-2", "--modules", "layer") == 0
    assert json.loads((out / "plast_delta.json").read_text())["layers"] == [1, 2]


# ----------------------------------------------------------------------------- no training record
def test_export_never_guesses_the_modules(trained, capsys):
    """A run folder with only a selection file (modules mlp) and no training record: taking the
    file's 'mlp' would drop the attention updates of a whole-layer run."""
    run = trained["run"]
    (run / "plast_training.json").unlink()
    (run / "plast_layers.json").write_text(json.dumps({
        "schema": "plast-layers/1", "selected_layers": [1, 2], "rule": "1-2", "options": {"modules": "mlp"},
        "model": {"architecture": "X", "num_layers": 4, "ffn_width": 4, "hidden_size": 4}}))
    assert _plast("export", run, "--out", trained["root"] / "delta") == 1
    assert "pass both --layers and --modules" in capsys.readouterr().err
    assert _plast("export", run, "--out", trained["root"] / "delta", "--layers", "1-2", "--modules", "layer") == 0


# ----------------------------------------------------------------------------- merge base
def test_merge_refuses_another_base_of_the_same_shapes(trained, capsys):
    delta = trained["root"] / "delta"
    assert _plast("export", trained["run"], "--out", delta) == 0
    manifest = json.loads((delta / "plast_delta.json").read_text())
    assert set(manifest["base_fingerprint"]["tensors"]) == set(manifest["tensors"])
    bad = trained["root"] / "bad"
    assert _plast("export", delta, "--merge-into", trained["other"], "--out", bad) == 1
    assert "is not the model this delta was trained from" in capsys.readouterr().err
    assert not bad.exists() and not [p for p in bad.parent.iterdir() if p.name.startswith(".plast-tmp")]
    good = trained["root"] / "good"
    assert _plast("export", delta, "--merge-into", trained["base"], "--out", good) == 0
    from safetensors.torch import load_file

    merged = load_file(str(good / "model.safetensors"))
    assert all(torch.equal(merged[n], trained["after"][n]) for n in merged)


# ----------------------------------------------------------------------------- export/merge tracebacks
def test_export_into_its_own_checkpoint_is_refused_before_writing(trained, capsys):
    before = sorted(p.name for p in trained["run"].iterdir())
    assert _plast("export", trained["run"], "--out", trained["run"]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in trained["run"].iterdir()) == before


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "plast_delta.json").write_text(json.dumps({"format": "plast-delta/1", "layers": [1]})),
     "'tensors' must map each tensor name"),
    (lambda d: (d / "plast_delta.json").write_text("[1, 2]"), "holds a JSON list, not an object"),
    (lambda d: (d / "plast_delta.json").write_text('{"format": '), "is not valid JSON"),
    (lambda d: (d / "plast_delta.safetensors").write_bytes((d / "plast_delta.safetensors").read_bytes()[:200]),
     "cannot read weights file"),
])
def test_broken_delta_is_one_line_naming_the_file(trained, capsys, damage, message):
    delta = trained["root"] / "delta"
    assert _plast("export", trained["run"], "--out", delta) == 0
    damage(delta)
    capsys.readouterr()
    assert _plast("export", delta, "--merge-into", trained["base"], "--out", trained["root"] / "m") == 1
    err = capsys.readouterr().err.strip()
    assert message in err and str(delta) in err and len(err.splitlines()) == 1


def test_truncated_training_record_names_the_file(trained, capsys):
    (trained["run"] / "plast_training.json").write_text('{"layers": [1,')
    assert _plast("export", trained["run"], "--out", trained["root"] / "delta") == 1
    assert f"{trained['run'] / 'plast_training.json'} is not valid JSON" in capsys.readouterr().err


def test_failed_merge_leaves_nothing_and_a_rerun_works(trained):
    from safetensors.torch import save_file

    delta = trained["root"] / "delta"
    assert _plast("export", trained["run"], "--out", delta) == 0
    lacking = trained["root"] / "lacking"
    lacking.mkdir()
    (lacking / "config.json").write_text("{}")
    (lacking / "tokenizer.json").write_text("{}")
    # One tensor of another shape: refused inside the merge loop, after config and tokenizer were copied.
    save_file({"model.layers.1.mlp.up_proj.weight": torch.zeros(4, 5)}, str(lacking / "model.safetensors"))
    out = trained["root"] / "merged"
    assert _plast("export", delta, "--merge-into", lacking, "--out", out) == 1
    assert not out.exists()  # not even the config and tokenizer copied before the refusal
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".plast-tmp")]
    assert _plast("export", delta, "--merge-into", trained["base"], "--out", out) == 0


def test_to_hf_takes_the_vision_tower_flag(monkeypatch, tmp_path):
    import sys
    import types

    calls = []
    fake = types.ModuleType("plast_plugin.checkpoints.hf_convert")
    fake.convert_to_hf = lambda checkpoint, out, **kw: calls.append((checkpoint, out, kw))
    monkeypatch.setitem(sys.modules, "plast_plugin.checkpoints.hf_convert", fake)
    assert _plast("export", "ckpt", "--to-hf", "--vision-tower", "clip", "--out", tmp_path / "hf") == 0
    assert calls == [("ckpt", str(tmp_path / "hf"), {"vision_tower": "clip"})]


# ----------------------------------------------------------------------------- build-data
def _png_base64(color) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_failed_build_keeps_the_existing_output(tmp_path, capsys):
    out = tmp_path / "train.json"
    out.write_text('[{"id": "good"}]\n')
    rows = question_rows(("en", "zh"))
    rows[1]["question"] = "bad \ud800"
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # \ud800 escaped
    assert _plast("build-data", "--data", path, "--out", out, "--quiet") == 1
    assert "lone surrogate" in capsys.readouterr().err
    assert out.read_text() == '[{"id": "good"}]\n'  # not truncated


def test_the_training_json_write_is_atomic(tmp_path):
    from plast_plugin.data.translation_data import TranslationData

    out = tmp_path / "train.json"
    out.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        TranslationData([{"id": "x\ud800"}], {}).save(out)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


@pytest.mark.parametrize("image", ["../../etc/passwd", "notes.txt"])
def test_non_images_never_reach_the_training_data(tmp_path, capsys, image):
    data_dir = tmp_path / "a" / "b"
    data_dir.mkdir(parents=True)
    (data_dir / "notes.txt").write_text("not an image")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    rows = question_rows(("en", "zh"), ids={"1", "2"})
    for row in rows:
        row["image"] = image
    data = write_jsonl(data_dir / "q.jsonl", rows)
    out = tmp_path / "train.json"
    assert _plast("build-data", "--data", data, "--out", out, "--quiet") == 1
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "question '1'" in err
    assert not out.exists()


def test_build_data_stopping_on_a_bad_image_leaves_no_images(tmp_path, capsys):
    rows = question_rows(("en", "zh"), ids={"1", "2", "3"})
    for row in rows:
        row["image"] = _png_base64((200, 0, 0)) if row["id"] != "3" else "A" * 100  # base64 of no image
    data = write_jsonl(tmp_path / "q.jsonl", rows)
    out = tmp_path / "train.json"
    assert _plast("build-data", "--data", data, "--out", out, "--quiet") == 1
    assert "cannot decode image" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "train_images").exists()  # not even q1's good image


def test_build_data_good_inline_images_are_written(tmp_path):
    """(Positive control: validated inline images are still written, once per distinct image.)"""
    rows = question_rows(("en", "zh"), ids={"1", "2"})
    for row in rows:
        row["image"] = _png_base64((0, 0, 200))
    data = write_jsonl(tmp_path / "q.jsonl", rows)
    assert _plast("build-data", "--data", data, "--out", tmp_path / "train.json", "--quiet") == 0
    records = json.loads((tmp_path / "train.json").read_text())
    assert all(os.path.isfile(r["image"]) for r in records) and len(list((tmp_path / "train_images").iterdir())) == 1


@pytest.mark.parametrize("argv, message", [
    (("--template", "{question"), "is not a valid template"),
    (("--template", "{question!z}"), "cannot be filled in"),
])
def test_build_data_bad_template_is_one_line(questions_jsonl, tmp_path, capsys, argv, message):
    assert _plast("build-data", "--data", questions_jsonl, "--out", tmp_path / "d.json", *argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_build_data_out_is_a_folder(questions_jsonl, tmp_path, capsys):
    assert _plast("build-data", "--data", questions_jsonl, "--out", tmp_path, "--quiet") == 1
    assert "is a folder" in capsys.readouterr().err


def test_a_killed_runs_stage_is_removed_by_the_next_run(trained):
    """SIGKILL skips every cleanup: the stage of a dead process (same host) goes on the next run;
    a live process's stage stays."""
    import subprocess
    import sys

    from plast_plugin.atomic import _stage_prefix

    out = trained["root"] / "delta"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = trained["root"] / (_stage_prefix(out, int(dead.stdout)) + "abc")
    (stale / "half").mkdir(parents=True)
    live = trained["root"] / (_stage_prefix(out, os.getppid()) + "xyz")
    live.mkdir()
    assert _plast("export", trained["run"], "--out", out) == 0
    assert not stale.exists() and live.exists() and (out / "plast_delta.json").exists()
