"""PLAST training of the vision-language families (Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL) under
DeepSpeed ZeRO-2 and ZeRO-3 on CPU: scripts/train_hf_example.py (a real `transformers.Trainer` with
`PlastCallback`, the model's processor and chat template) on `plast build-data` output, in a process of
its own with the environment the `deepspeed` launcher sets for one local rank (DeepSpeed initializes
torch.distributed and accelerate's process-wide state, which must not leak into the test process). The
callback finds the model's own parameters behind DeepSpeed's optimizer (flat partitions) and its check
passes; the saved checkpoint differs from the base exactly in the selected tensors, every other tensor
bit-identical; and `plast export` writes the delta and merges it back bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from eval_testutil import REPO, free_port, subprocess_env
from vlm_training_util import family_data  # noqa: F401 (fixture)
from vlm_training_util import TRAINED_LAYER, changed, load, selected_in_files, tensors, write_selection

from plast_plugin.cli import main as plast
from plast_plugin.core.freeze import plast_parameter_names

# DeepSpeed's save calls torch.cuda.synchronize(), which fails without CUDA (docs/troubleshooting.md).
RUN_EXAMPLE = ("import torch; torch.cuda.synchronize = lambda *a, **k: None; import runpy; "
               "runpy.run_path('scripts/train_hf_example.py', run_name='__main__')")


def _tied_copies(model, base: dict, trained: dict) -> set:
    """The tensors the trained checkpoint holds beyond the base's: under ZeRO-2 the Trainer saves
    DeepSpeed's copy of the state dict (each tensor cloned on its own), so a tied output layer
    (InternVL's lm_head, tied to the embeddings) no longer shares storage and is written as a second
    copy. Each must be a tied weight, bit-identical to the base tensor it is tied to."""
    tied = model.get_expanded_tied_weights_keys(all_submodels=True)  # {tied name: source name}, in memory
    extra = set(trained) - set(base)
    for name in extra:
        assert name in tied, f"{name} is in the trained checkpoint only and is no tied weight"
        tail = ".".join(tied[name].split(".")[-2:])  # file names differ from memory names before it
        (source,) = [n for n in base if n.endswith(tail)]
        assert torch.equal(trained[name], base[source])
    return extra


@pytest.mark.parametrize("stage, modules", [("zero2", "layer"), ("zero3", "attn")], ids=["zero2", "zero3"])
def test_deepspeed_steps_change_exactly_the_selected_tensors(family_data, tmp_path, stage, modules):
    selection = write_selection(family_data, tmp_path, modules)
    out = tmp_path / "out"
    env = subprocess_env(tmp_path, RANK=0, LOCAL_RANK=0, WORLD_SIZE=1, LOCAL_WORLD_SIZE=1,
                         MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port(), PYTHONWARNINGS="ignore",
                         # DeepSpeed JIT-builds a CPU comm op once (~20 s) with the env's own ninja.
                         TORCH_EXTENSIONS_DIR=REPO / ".cache" / "torch_extensions_eval",
                         PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-c", RUN_EXAMPLE, "--model", str(family_data["path"]), "--data", str(family_data["data"]),
           "--selection", str(selection), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2",
           "--lr", "1e-2", "--deepspeed", str(REPO / "scripts" / f"{stage}.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    model = load(family_data["name"], family_data["path"])
    count = len(plast_parameter_names(model, [TRAINED_LAYER], modules))
    assert f"[plast] checked: the optimizer holds exactly the {count} selected parameters" in proc.stdout
    base, trained = tensors(family_data["path"]), tensors(out)
    for name in _tied_copies(model, base, trained):
        del trained[name]
    selected = selected_in_files(family_data["name"], modules, base)
    assert len(selected) == count and changed(base, trained) == selected  # every selected tensor moved, nothing else

    assert json.loads((out / "plast_training.json").read_text())["layers"] == [TRAINED_LAYER]
    assert plast(["export", str(out), "--out", str(tmp_path / "delta")]) == 0
    assert set(json.loads((tmp_path / "delta" / "plast_delta.json").read_text())["tensors"]) == selected
    assert plast(["export", str(tmp_path / "delta"), "--merge-into", str(family_data["path"]),
                  "--out", str(tmp_path / "merged")]) == 0
    assert not changed(trained, tensors(tmp_path / "merged"))
