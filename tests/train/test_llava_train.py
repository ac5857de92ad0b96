"""LLaVA's own train() (llava-torch) on CPU with --plast_layers: spec, auto, selection file,
resume, DeepSpeed ZeRO-2/3, refusals. Each run is a fresh process (~5-10 s)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import check_only_layers_changed, layer_param_names, llava_args, run_train, run_train_ranks
from plast_plugin.errors import PlastError

REPO = Path(__file__).resolve().parents[2]


def _optimizer_names(record: Path) -> list[str]:
    groups = json.loads(record.read_text())["groups"]
    assert all(groups), f"empty parameter group reached the optimizer: {[len(g) for g in groups]}"
    return sorted(n for g in groups for n in g)


def _all_names(model_dir: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return list(f.keys())


def _assert_ok(proc):
    assert proc.returncode == 0, proc.stdout[-6000:]


def _selected(out: Path) -> list[int]:
    return json.loads((out / "plast_layers.json").read_text())["selected_layers"]


def test_spec_via_import_hook(assets, spec_run):
    """Unmodified LLaVA train(), --plast_layers 1,2, gradient checkpointing, --mm_projector_lr."""
    proc, out, record = spec_run["proc"], spec_run["out"], spec_run["record"]
    _assert_ok(proc)
    assert "PLAST trainable parameters" in proc.stdout
    check_only_layers_changed(assets["model"], out, [1, 2])
    trainable = layer_param_names(_all_names(out), [1, 2])
    assert _optimizer_names(record) == trainable
    assert _selected(out) == [1, 2]
    training = json.loads((out / "plast_training.json").read_text())
    assert training["layers"] == [1, 2] and sorted(training["trainable_names"]) == trainable


def test_selection_file_via_module_entry_without_hook(assets, tmp_path):
    """python -m plast_plugin.llava.train works with the hook off; layers from a selection file."""
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile

    selection = tmp_path / "chosen.json"
    SelectionFile(selected_layers=[0, 3], rule="manual",
                  model=ModelIdentity("LlavaLlamaForCausalLM", 4, 128, 64, str(assets["model"]))).save(selection)
    out, record = tmp_path / "out", tmp_path / "opt.json"
    proc = run_train(llava_args(assets, out, "--plast_layers", str(selection)), mode="module",
                     env={"PLAST_DISABLE_HOOK": "1", "PLAST_TEST_OPTIMIZER_RECORD": record})
    _assert_ok(proc)
    check_only_layers_changed(assets["model"], out, [0, 3])
    assert _optimizer_names(record) == layer_param_names(_all_names(out), [0, 3])


def test_auto_then_resume_reuses_saved_layers(assets, tmp_path):
    out = tmp_path / "out"
    proc = run_train(llava_args(assets, out, "--plast_layers", "auto", "--plast_probe_data", str(assets["probe"]),
                                "--plast_languages", "zh,ru"))
    _assert_ok(proc)
    assert "--plast_layers auto selected layers" in proc.stdout
    layers = _selected(out)
    assert (out / "plast_layers.png").exists()
    check_only_layers_changed(assets["model"], out, layers)

    # A resumed run must not select again: make the saved choice distinguishable, rerun.
    saved = json.loads((out / "plast_layers.json").read_text())
    other = [i for i in range(4) if i not in layers][:1]
    saved["selected_layers"] = other
    (out / "plast_layers.json").write_text(json.dumps(saved))
    for f in ("model.safetensors", "plast_layers.png"):
        (out / f).unlink()
    proc = run_train(llava_args(assets, out, "--plast_layers", "auto", "--plast_probe_data", str(assets["probe"])))
    _assert_ok(proc)
    assert "resumed run: reusing the layers selected before" in proc.stdout
    assert "probing" not in proc.stdout
    check_only_layers_changed(assets["model"], out, other)


@pytest.mark.parametrize("stage,plast", [("zero2", ["--plast_layers", "1,2", "--mm_projector_lr", "2e-5"]),
                                         ("zero3", ["--plast_layers", "auto"])])
def test_deepspeed_cpu(assets, tmp_path, stage, plast):
    out, record = tmp_path / "out", tmp_path / "opt.json"
    if plast[1] == "auto":
        plast = [*plast, "--plast_probe_data", str(assets["probe"])]
    # ZeRO-2 through the real `deepspeed` launcher CLI, ZeRO-3 with the environment it sets.
    proc = run_train(llava_args(assets, out, *plast), deepspeed=REPO / "scripts" / f"{stage}.json",
                     launcher=stage == "zero2", env={"PLAST_TEST_OPTIMIZER_RECORD": record})
    _assert_ok(proc)
    layers = _selected(out)
    if stage == "zero3":
        assert "with ZeRO-3 parameters gathered" in proc.stdout
    check_only_layers_changed(assets["model"], out, layers)
    assert _optimizer_names(record) == layer_param_names(_all_names(out), layers)


def test_without_hook_the_flag_is_refused(assets, tmp_path):
    proc = run_train(llava_args(assets, tmp_path / "out", "--plast_layers", "1,2"), env={"PLAST_DISABLE_HOOK": "1"})
    assert proc.returncode != 0
    assert "Some specified arguments are not used by the HfArgumentParser" in proc.stdout
    assert "--plast_layers" in proc.stdout


@pytest.mark.parametrize("flag,expect", [
    (["--lora_enable", "True"], "--lora_enable conflicts with --plast_layers"),
    (["--tune_mm_mlp_adapter", "True"], "--tune_mm_mlp_adapter conflicts with --plast_layers"),
])
def test_conflicting_flag_refused_before_training(assets, tmp_path, flag, expect):
    out = tmp_path / "out"
    proc = run_train(llava_args(assets, out, "--plast_layers", "1,2", *flag))
    assert proc.returncode != 0
    assert expect in proc.stdout
    assert "'loss'" not in proc.stdout and not (out / "model.safetensors").exists()


def test_patch_applies_to_llava_copy_and_trains(assets, tmp_path):
    """patches/llava-plast.patch on a copy of the installed llava package; `python llava/train/train.py`."""
    import subprocess

    import llava

    checkout = tmp_path / "LLaVA"
    shutil.copytree(Path(llava.__file__).parent, checkout / "llava",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "apply", str(REPO / "patches" / "llava-plast.patch")], cwd=checkout, check=True)
    out = tmp_path / "out"
    proc = run_train(llava_args(assets, out, "--plast_layers", "2"), script=checkout / "llava" / "train" / "train.py",
                     cwd=checkout, env={"PLAST_DISABLE_HOOK": "1", "PYTHONPATH": checkout})
    _assert_ok(proc)
    check_only_layers_changed(assets["model"], out, [2])


def test_resume_from_trainer_checkpoint(assets, tmp_path):
    """LLaVA's train() resumes from checkpoint-* (optimizer state included) with the same layers."""
    out = tmp_path / "out"
    common = ["--plast_layers", "auto", "--plast_probe_data", str(assets["probe"]),
              "--save_strategy", "steps", "--save_steps", "2"]
    first = run_train(llava_args(assets, out, *common, steps=2))
    _assert_ok(first)
    layers = _selected(out)
    assert (out / "checkpoint-2" / "optimizer.pt").exists()
    second = run_train(llava_args(assets, out, *common, steps=4))
    _assert_ok(second)
    assert "resumed run: reusing the layers selected before" in second.stdout and "probing" not in second.stdout
    assert _selected(out) == layers
    check_only_layers_changed(assets["model"], out, layers)


def test_two_ranks_zero3_auto_shards_the_probe(assets, tmp_path):
    """Two ZeRO-3 ranks: each probes half the batches, counts are all-reduced, so the statistics
    equal a single-process probe; rank 0 writes the file; only the selected layers change."""
    single, double = tmp_path / "single", tmp_path / "double"
    auto = ["--plast_layers", "auto", "--plast_probe_data", str(assets["probe"])]
    _assert_ok(run_train(llava_args(assets, single, *auto, steps=1)))
    results = run_train_ranks(llava_args(assets, double, *auto, steps=2), deepspeed=REPO / "scripts" / "zero3.json")
    for code, output in results:
        assert code == 0, output[-4000:]
    one = json.loads((single / "plast_layers.json").read_text())
    two = json.loads((double / "plast_layers.json").read_text())
    assert two["data"]["tokens_counted"] == one["data"]["tokens_counted"]
    assert two["selected_layers"] == one["selected_layers"] and two["layers"] == one["layers"]
    assert "with ZeRO-3 parameters gathered" in results[0][1]
    check_only_layers_changed(assets["model"], double, two["selected_layers"])


def test_fully_masked_labels_refused():
    """A tokenizer that does not fit --version makes LLaVA mask every label (seen with SmolLM2's
    tokenizer and --version v1/mpt: loss 0.0, nothing learnt); PLAST refuses such data."""
    import torch

    from plast_plugin.llava.integration import check_supervision

    masked = [{"input_ids": torch.ones(5, dtype=torch.long), "labels": torch.full((5,), -100)}] * 3
    with pytest.raises(PlastError, match="no supervised token"):
        check_supervision(masked)
    check_supervision(masked + [{"labels": torch.tensor([-100, 7])}])  # one supervised sample is enough
    check_supervision(None)
