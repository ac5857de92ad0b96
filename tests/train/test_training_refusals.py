"""What PLAST training refuses, through LLaVA's own train(): an empty --plast_layers, a resume with
another selection, a merge into another base, a selection file's modules, and a resume without
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (a crafted rng_state.pth must not run code). Each would otherwise
train the wrong thing or run the pickle."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import check_only_layers_changed, llava_args, run_train


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-6000:]


def _record(out: Path) -> dict:
    return json.loads((out / "plast_training.json").read_text())


@pytest.fixture(scope="module")
def layer1_run(assets, tmp_path_factory):
    """--plast_layers 1 for 2 steps, saving checkpoint-2 (which a re-run resumes from)."""
    out = tmp_path_factory.mktemp("layer1_run") / "out"
    proc = run_train(llava_args(assets, out, "--plast_layers", "1", "--save_strategy", "steps",
                                "--save_steps", "2", steps=2))
    _ok(proc)
    assert (out / "checkpoint-2" / "rng_state.pth").exists()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(run, out)
    return out


def _resume_args(assets, out, *extra):
    return llava_args(assets, out, "--save_strategy", "steps", "--save_steps", "2", *extra, steps=4)


def test_empty_plast_layers_is_refused(assets, tmp_path):
    out = tmp_path / "out"
    proc = run_train(llava_args(assets, out, "--plast_layers", ""))
    assert proc.returncode != 0
    assert "--plast_layers is empty" in proc.stdout  # not a full fine-tune
    assert "'loss'" not in proc.stdout and not (out / "model.safetensors").exists()


def test_resume_with_another_selection_is_refused(assets, layer1_run, tmp_path):
    out = _copy(layer1_run, tmp_path)
    proc = run_train(_resume_args(assets, out, "--plast_layers", "2"))
    assert proc.returncode != 0
    assert "trained layers [1] (layer)" in proc.stdout and "this run selects [2]" in proc.stdout
    assert "'loss'" not in proc.stdout
    assert _record(out)["layers"] == [1]  # the record still says what was trained


def test_explicit_selection_change_records_the_union(assets, layer1_run, tmp_path):
    out = _copy(layer1_run, tmp_path)
    proc = run_train(_resume_args(assets, out, "--plast_layers", "2", "--plast_allow_selection_change", "True"))
    _ok(proc)
    record = _record(out)
    assert record["layers"] == [1, 2] and record["modules"] == "layer"
    assert [h["layers"] for h in record["history"]] == [[1], [2]]
    check_only_layers_changed(assets["model"], out, [1, 2])
    delta = tmp_path / "delta"
    from plast_plugin.cli import main

    assert main(["export", str(out), "--out", str(delta)]) == 0
    manifest = json.loads((delta / "plast_delta.json").read_text())
    assert manifest["layers"] == [1, 2]


def test_resume_same_selection_without_the_weights_only_override(assets, layer1_run, tmp_path):
    """rng_state.pth (numpy's RNG state) loads with torch's weights-only unpickler."""
    out = _copy(layer1_run, tmp_path)
    proc = run_train(_resume_args(assets, out, "--plast_layers", "1"))
    _ok(proc)
    assert "Weights only load failed" not in proc.stdout
    assert (out / "checkpoint-4").exists()
    assert [h["layers"] for h in _record(out)["history"]] == [[1], [1]]


class _Payload:
    """Unpickling this calls open(marker, 'w'): code run by a crafted checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_crafted_rng_state_is_refused_on_resume(assets, layer1_run, tmp_path):
    import torch

    out = _copy(layer1_run, tmp_path)
    marker = tmp_path / "pwned"
    rng = out / "checkpoint-2" / "rng_state.pth"
    state = torch.load(str(rng), weights_only=False)  # our own file, trusted
    state["python"] = _Payload(marker)
    torch.save(state, str(rng))
    proc = run_train(_resume_args(assets, out, "--plast_layers", "1"))
    assert proc.returncode != 0
    assert "Weights only load failed" in proc.stdout
    assert not marker.exists()  # refused before it runs anything


def test_training_records_the_base_fingerprint_and_merge_checks_it(assets, spec_run, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from plast_plugin.cli import main
    from plast_plugin.checkpoints.export import tensor_sha256

    out = spec_run["out"]
    record = _record(out)
    base = load_file(str(assets["model"] / "model.safetensors"))
    fingerprint = record["base_fingerprint"]["tensors"]
    assert sorted(fingerprint) == sorted(record["trainable_names"])
    assert all(fingerprint[n]["sha256"] == tensor_sha256(base[n]) for n in fingerprint)

    delta = tmp_path / "delta"
    assert main(["export", str(out), "--out", str(delta)]) == 0
    other = tmp_path / "other_base"
    shutil.copytree(assets["model"], other)
    changed = dict(base)
    name = "model.layers.1.mlp.down_proj.weight"
    changed[name] = changed[name] * 1.01  # same shapes and dtype: another model
    save_file(changed, str(other / "model.safetensors"), metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["export", str(delta), "--merge-into", str(other), "--out", str(tmp_path / "merged")]) == 1
    assert "is not the model this delta was trained from" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()


def test_selection_file_modules_are_trained_without_plast_modules(assets, tmp_path):
    import torch
    from safetensors.torch import load_file

    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile

    selection = tmp_path / "mlp.json"
    SelectionFile(selected_layers=[1], rule="1", options={"modules": "mlp"},
                  model=ModelIdentity("LlavaLlamaForCausalLM", 4, 128, 64, str(assets["model"]))).save(selection)
    out = tmp_path / "out"
    proc = run_train(llava_args(assets, out, "--plast_layers", str(selection)))
    _ok(proc)
    assert _record(out)["modules"] == "mlp"
    start = load_file(str(assets["model"] / "model.safetensors"))
    end = load_file(str(out / "model.safetensors"))
    changed = sorted(n for n in end if not torch.equal(start[n].to(end[n].dtype), end[n]))
    assert changed and all(n.startswith("model.layers.1.mlp.") for n in changed), changed  # not the whole layer
