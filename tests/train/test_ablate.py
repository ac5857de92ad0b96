"""`plast ablate` end to end on the tiny LLaVA: real train() runs (one subprocess each), every
alternative trains exactly its own layers with the same budget, the statistics in ablation.json
are those of the runs' results, a partial run folder resumes, and bad input is refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, check_only_layers_changed, llava_args

REPO = Path(__file__).resolve().parents[2]


def _train_args(assets) -> list[str]:
    args = llava_args(assets, "unused", steps=2)
    at = args.index("--output_dir")
    return args[:at] + args[at + 2:]


def _selection(assets, path: Path, layers, num_layers: int = 4) -> Path:
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile

    SelectionFile(selected_layers=list(layers), rule="manual",
                  model=ModelIdentity("LlavaLlamaForCausalLM", num_layers, 128, 64, str(assets["model"]))).save(path)
    return path


def ablate(assets, selection, out, *options, train_args=None):
    cmd = [sys.executable, "-m", "plast_plugin.cli", "ablate", "--selection", str(selection),
           "--heldout", str(assets["probe"]), "--out", str(out), "--quiet", *options,
           "--", *(train_args if train_args is not None else _train_args(assets))]
    return subprocess.run(cmd, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)


def _saved_tensors(folder: Path):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def ablation(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    selection = _selection(assets, root / "plast_layers.json", [1, 2])
    out = root / "run"
    proc = ablate(assets, selection, out, "--seeds", "2", "--random-draws", "1", "--keep-checkpoints")
    return {"proc": proc, "out": out, "selection": selection}


def test_every_alternative_trains_exactly_its_layers_with_one_budget(assets, ablation):
    proc, out = ablation["proc"], ablation["out"]
    assert proc.returncode == 0, proc.stdout[-6000:]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["alternatives"] == ["plast", "first", "last", "random1"] and plan["seeds"] == [0, 1]
    assert len(plan["runs"]) == 8
    budgets = set()
    for run in plan["runs"]:
        folder = out / "runs" / run["name"]
        layers = run["layers"]
        expected = {"plast": [1, 2], "first": [0, 1], "last": [2, 3]}.get(run["alternative"])
        if expected is None:
            assert len(set(layers)) == 2 and layers != [1, 2]
        else:
            assert layers == expected
        # Weights: every tensor of the run's layers moved, every other tensor is bit-identical.
        check_only_layers_changed(assets["model"], folder / "train", layers)
        record = json.loads((folder / "plast_training.json").read_text())
        assert record["layers"] == layers
        budgets.add(record["trainable"]["trainable_params"])
        result = json.loads((folder / "result.json").read_text())
        assert result["trainable_params"] == record["trainable"]["trainable_params"]
        assert set(result["losses"]) == {"ru", "zh"} and len(result["losses"]["zh"]) == 4
    assert len(budgets) == 1  # two whole layers of the same shape each
    # 2 layers x (4 x 64 x 64 attention + 3 x 64 x 128 MLP + 2 x 64 norms) = 82,176
    assert budgets == {82_176}


def test_report_statistics_come_from_the_runs(ablation):
    from plast_plugin.ablation import stats

    out = ablation["out"]
    summary = json.loads((out / "ablation.json").read_text())
    result = {name: json.loads((out / "runs" / name / "result.json").read_text())
              for name in ("plast-seed0", "plast-seed1", "last-seed0", "last-seed1")}
    per_seed = []
    for seed in (0, 1):
        plast, last = result[f"plast-seed{seed}"]["losses"]["zh"], result[f"last-seed{seed}"]["losses"]["zh"]
        diff = sum(plast[q][0] - last[q][0] for q in plast) / sum(plast[q][1] for q in plast)
        per_seed.append(diff)
    entry = summary["differences"]["last"]["zh"]
    assert entry["per_seed"] == {"0": pytest.approx(per_seed[0]), "1": pytest.approx(per_seed[1])}
    interval = stats.mean_interval(per_seed)
    assert (entry["mean"], entry["low"], entry["high"]) == (pytest.approx(interval.mean), pytest.approx(interval.low),
                                                            pytest.approx(interval.high))
    assert set(summary["verdicts"]) == {"first", "last", "random1"}
    for name in ("ablation.txt", "ablation_zh.png", "ablation_ru.png", "ablation_mean.png"):
        assert (out / name).stat().st_size > 0
    printed = ablation["proc"].stdout
    assert "PLAST minus alternative" in printed and "verdicts, PLAST minus alternative, mean over languages" in printed
    for alt in ("first", "last", "random1"):
        assert f"vs {alt}" in printed
    recorded = json.loads(ablation["selection"].read_text())
    assert recorded["selected_layers"] == [1, 2]
    assert {alt: {m: e["verdict"] for m, e in v["measures"].items()}
            for alt, v in recorded["ablation"]["verdicts"].items()} == summary["verdicts"]
    assert all(set(v) == {"translation"} for v in summary["verdicts"].values())  # no --problems: one measure
    assert recorded["ablation"]["run_dir"] == str(out.resolve())


def test_untrained_score_matches_translation_loss(assets, ablation):
    """The per-question sums kept for pairing add up to translation_loss's own language loss."""
    from plast_plugin.models.loading import load_for_probe
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.models.translation_loss import translation_losses

    model, tokenizer, _ = load_for_probe(str(assets["model"]), "cpu", "fp32")
    tokenizer.model_max_length = 256
    losses = translation_losses(model, tokenizer, load_parallel_questions(assets["probe"]), batch_size=16,
                                model_max_length=256)
    summary = json.loads((ablation["out"] / "ablation.json").read_text())
    for lang, result in losses.items():
        assert summary["base_loss"][lang] == pytest.approx(result.loss, rel=1e-6)
        assert sum(t for _, t in result.per_question.values()) == result.tokens


def test_a_partial_run_folder_resumes_only_what_is_missing(assets, ablation):
    out = ablation["out"]
    runs = sorted((out / "runs").iterdir())
    before = {run.name: (run / "result.json").stat().st_mtime_ns for run in runs}
    (out / "runs" / "last-seed1" / "result.json").unlink()  # as if killed after training, before the result
    proc = ablate(assets, ablation["selection"], out, "--seeds", "2", "--random-draws", "1")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "7 of 8 runs already finished" in proc.stdout
    after = {run.name: (run / "result.json").stat().st_mtime_ns for run in runs}
    assert {name for name in before if before[name] != after[name]} == {"last-seed1"}
    assert not (out / "runs" / "last-seed1" / "train").exists()  # re-trained, scored, checkpoint removed
    assert (out / "runs" / "plast-seed0" / "train").exists()  # untouched


def test_another_plan_is_not_mixed_into_a_run_folder(assets, ablation):
    proc = ablate(assets, ablation["selection"], ablation["out"], "--seeds", "3", "--random-draws", "1")
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert "another plan (differs in: runs, seeds)" in lines[-1] and "give a new --out" in lines[-1]


@pytest.mark.parametrize("options, train_args, message", [
    (("--seeds", "1"), None, "--seeds 1: a 95% interval over seeds needs at least 2 seeds"),
    ((), ["--seed", "3"], "training argument --seed is set by plast ablate"),
    ((), ["--output-dir=x"], "training argument --output-dir is set by plast ablate"),
    ((), ["--data_path", "x.json"], "no --model_name_or_path in the training arguments"),
    ((), ["--lora_enable", "True"], "training argument --lora_enable is set by plast ablate"),
])
def test_bad_arguments_are_refused_in_one_line(assets, tmp_path, options, train_args, message):
    selection = _selection(assets, tmp_path / "s.json", [1, 2])
    proc = ablate(assets, selection, tmp_path / "run", *options, train_args=train_args)
    assert proc.returncode == 1
    assert message in proc.stdout and "Traceback" not in proc.stdout
    assert not (tmp_path / "run").exists()


def test_selection_for_another_model_is_refused(assets, tmp_path):
    selection = _selection(assets, tmp_path / "s.json", [1, 2], num_layers=6)
    proc = ablate(assets, selection, tmp_path / "run")
    assert proc.returncode == 1 and "Traceback" not in proc.stdout
    assert "selection file was made for" in proc.stdout and "Run `plast select` on this model" in proc.stdout
    assert not (tmp_path / "run").exists()


def test_attention_only_under_the_deepspeed_launcher(assets, tmp_path):
    """--modules attn through a user's launcher prefix (the real `deepspeed` CLI) and pass-through
    training arguments (--deepspeed zero2.json): each run trains the self-attention of its layers,
    every other tensor stays bit-identical, one budget."""
    import torch

    from conftest import DRIVER, free_port

    selection = _selection(assets, tmp_path / "s.json", [1])
    out = tmp_path / "run"
    # The tests' driver: plast_plugin.llava.train.main() plus a no-op torch.cuda.synchronize, which
    # LLaVA's DeepSpeed save calls (CPU only; see tests/train/_driver.py).
    launcher = f"{Path(sys.executable).parent / 'deepspeed'} --num_gpus 1 --master_port {free_port()} {DRIVER} module"
    train_args = ["--deepspeed", str(REPO / "scripts" / "zero2.json"), *_train_args(assets)]
    proc = ablate(assets, selection, out, "--seeds", "2", "--alternatives", "last", "--modules", "attn",
                  "--launcher", launcher, "--keep-checkpoints", train_args=train_args)
    assert proc.returncode == 0, proc.stdout[-6000:]
    start = _saved_tensors(Path(assets["model"]))
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert [(r["alternative"], r["layers"]) for r in runs] == [("plast", [1]), ("plast", [1]), ("last", [3]), ("last", [3])]
    for run in runs:
        folder = out / "runs" / run["name"]
        assert "deepspeed" in (folder / "train.log").read_text().splitlines()[0]
        end = _saved_tensors(folder / "train")
        changed = {n for n in end if not torch.equal(start[n].to(end[n].dtype), end[n])}
        prefix = f"model.layers.{run['layers'][0]}.self_attn."
        assert changed == {n for n in start if n.startswith(prefix)}, (run["name"], sorted(changed))
        record = json.loads((folder / "plast_training.json").read_text())
        assert record["modules"] == "attn" and record["trainable"]["trainable_params"] == 4 * 64 * 64


def test_training_flags_are_read_as_llavas_train_reads_them():
    # The ablation must score with the template and length the runs train with, whichever spelling the
    # user wrote: the flags are read by train()'s own HfArgumentParser, with LLaVA's defaults (the
    # transformers of the training env takes only --model_max_length; newer ones take --model-max-length too).
    from llava.train import train as llava_train
    from transformers import HfArgumentParser

    from plast_plugin.commands.ablate import check_training_arguments
    from plast_plugin.errors import PlastError

    trainer = HfArgumentParser((llava_train.ModelArguments, llava_train.DataArguments, llava_train.TrainingArguments))
    for given in (["--model_max_length=1024", "--version", "v1"], ["--model-max-length=1024", "--version", "v1"], []):
        flags = check_training_arguments(["--model_name_or_path", "m", *given, "--data_path", "x.json"])
        model_args, _, training_args, _ = trainer.parse_args_into_dataclasses(
            ["--output_dir", "unused", *given], return_remaining_strings=True)
        assert (flags.model_max_length, flags.version) == (training_args.model_max_length, model_args.version)
        if given[:1] == ["--model_max_length=1024"]:
            assert (flags.model_name_or_path, flags.model_max_length, flags.version) == ("m", 1024, "v1")
        if not given:
            assert (flags.model_max_length, flags.version) == (512, "v0")  # LLaVA's defaults
    with pytest.raises(PlastError, match="--version: expected one argument"):  # a flag without its value
        check_training_arguments(["--model_name_or_path", "m", "--version"])
