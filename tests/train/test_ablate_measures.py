"""`plast ablate` with the understanding measures and the reference alternatives on the tiny LLaVA:
every run is scored on the held-out problems (the pivot's questions included), `rule:` trains the layers
the selection's own statistics give, `full` and `lora` run LLaVA's own fine-tuning, report what they
trained and are labelled not budget-matched everywhere; bad alternatives are refused before training."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import PROBE, base_env, llava_args

ANSWERS = {"1": "The car is red.", "2": "Three people.", "3": "A cat.", "4": "B"}


def _train_args(assets) -> list[str]:
    args = llava_args(assets, "unused", steps=2)
    at = args.index("--output_dir")
    return args[:at] + args[at + 2:]


def _selection(assets, path, msd=None):
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
    from plast_plugin.core.statistics import LayerRecord

    layers = [LayerRecord(layer=i, msd=v) for i, v in enumerate(msd)] if msd else []
    SelectionFile(selected_layers=[1, 2], rule="msd-above-mean" if msd else "manual", layers=layers,
                  model=ModelIdentity("LlavaLlamaForCausalLM", 4, 128, 64, str(assets["model"]))).save(path)
    return path


def _problems(path):
    with path.open("w", encoding="utf-8") as handle:
        for qid, en, zh, ru in PROBE:
            for lang, text in (("en", en), ("zh", zh), ("ru", ru)):
                row = {"id": qid, "lang": lang, "question": text, **({"answer": ANSWERS[qid]} if lang == "en" else {})}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def ablate(assets, selection, out, *options):
    cmd = [sys.executable, "-m", "plast_plugin.cli", "ablate", "--selection", str(selection),
           "--heldout", str(assets["probe"]), "--out", str(out), "--quiet", *options, "--", *_train_args(assets)]
    return subprocess.run(cmd, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def measured(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate_measures")
    # msd-top:2 of these statistics is layers 1 and 3: not the selection (1, 2), the same budget
    selection = _selection(assets, root / "plast_layers.json", msd=[0.1, 0.5, 0.2, 0.4])
    out = root / "run"
    proc = ablate(assets, selection, out, "--seeds", "2", "--problems", str(_problems(root / "problems.jsonl")),
                  "--alternatives", "rule:msd-top:2,full,lora", "--keep-checkpoints")
    return {"proc": proc, "out": out, "selection": selection}


def test_reference_alternatives_train_what_they_claim_and_are_labelled(assets, measured):
    from safetensors import safe_open

    from plast_plugin.llava.lora import lora_trainable_params

    proc, out = measured["proc"], measured["out"]
    assert proc.returncode == 0, proc.stdout[-6000:]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["alternatives"] == ["plast", "rule:msd-top:2", "full", "lora"]
    assert {r["alternative"]: r["layers"] for r in plan["runs"]}["rule:msd-top:2"] == [1, 3]
    with safe_open(str(assets["model"] / "model.safetensors"), framework="pt") as handle:
        outside_vision = sum(math.prod(handle.get_slice(n).get_shape()) for n in handle.keys() if "vision_tower" not in n)
    for seed in (0, 1):
        rule = json.loads((out / "runs" / f"rule-msd-top-2-seed{seed}" / "result.json").read_text())
        assert rule["layers"] == [1, 3] and rule["trainable_params"] == 82_176  # the plugin's own record
        full = out / "runs" / f"full-seed{seed}"
        lora = out / "runs" / f"lora-seed{seed}"
        for folder in (full, lora):  # LLaVA's own fine-tuning: no layers chosen, no PLAST record
            assert not (folder / "plast_training.json").exists() and not (folder / "train" / "plast_training.json").exists()
            assert "--plast_layers" not in (folder / "train.log").read_text().splitlines()[0]
        assert "--lora_enable True --lora_r 128 --lora_alpha 256" in (lora / "train.log").read_text().splitlines()[0]
        assert json.loads((full / "result.json").read_text())["trainable_params"] == outside_vision
        assert json.loads((lora / "result.json").read_text())["trainable_params"] == lora_trainable_params(lora / "train")
    summary = json.loads((out / "ablation.json").read_text())
    assert {alt: e["budget_matched"] for alt, e in summary["alternatives"].items()} == {
        "plast": True, "rule:msd-top:2": True, "full": False, "lora": False}
    printed = proc.stdout
    assert "vs full (not budget-matched):" in printed and "vs lora (not budget-matched):" in printed
    assert "vs rule:msd-top:2:" in printed
    recorded = json.loads(measured["selection"].read_text())["ablation"]["verdicts"]
    assert [recorded[alt]["budget_matched"] for alt in ("rule:msd-top:2", "full", "lora")] == [True, False, False]


def test_every_run_is_scored_by_all_three_measures(assets, measured):
    out = measured["out"]
    assert measured["proc"].returncode == 0, measured["proc"].stdout[-6000:]
    base = json.loads((out / "base" / "result.json").read_text())
    for folder in [out / "base", *sorted((out / "runs").iterdir())]:
        result = json.loads((folder / "result.json").read_text())
        assert set(result["losses"]) == {"zh", "ru"}
        assert set(result["answers"]) == {"en", "zh", "ru"}  # the English questions too: retention, the gap's base
        assert all(set(per_q) == {"1", "2", "3", "4"} for per_q in result["answers"].values())
        if folder.name != "base":  # trained: the answers' NLL moved (the lora run scored merged, not the base)
            assert result["answers"]["en"] != base["answers"]["en"], folder.name
    summary = json.loads((out / "ablation.json").read_text())
    u = summary["understanding"]
    assert set(u["alternatives"]) == {"plast", "rule:msd-top:2", "full", "lora"}
    assert set(u["differences"]) == {"rule:msd-top:2", "full", "lora"}
    for alt, verdicts in summary["verdicts"].items():
        assert set(verdicts) == {"translation", "understanding_gap", "english"}, alt
    assert (out / "ablation_understanding.png").stat().st_size > 0
    printed = measured["proc"].stdout
    assert "understanding gap: NLL(English answer | question in the language)" in printed
    assert "English retention: NLL(English answer | en question)" in printed


@pytest.mark.parametrize("alternatives, statistics, message", [
    ("rule:msd-bottom:2", True, "unknown selection rule 'msd-bottom:2'"),
    ("rule:msd-top:2", False, "the selection file has no per-layer statistics"),
    ("first,rule:0-1", True, "'0-1' is a layer spec"),
])
def test_bad_alternatives_are_refused_in_one_line_before_training(assets, tmp_path, alternatives, statistics,
                                                                  message):
    selection = _selection(assets, tmp_path / "s.json", msd=[0.1, 0.5, 0.2, 0.4] if statistics else None)
    proc = ablate(assets, selection, tmp_path / "run", "--alternatives", alternatives)
    assert proc.returncode == 1
    assert message in proc.stdout and "Traceback" not in proc.stdout
    assert len([line for line in proc.stdout.splitlines() if message in line]) == 1
    assert not (tmp_path / "run").exists()
