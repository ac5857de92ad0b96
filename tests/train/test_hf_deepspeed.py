"""The HF Trainer path under DeepSpeed ZeRO-2 and ZeRO-3 (CPU, one process): PlastCallback finds the
model's own parameters behind DeepSpeed's optimizer (bit16_groups / fp16_groups, whose
param_groups hold flat partitions), so its check passes, and the saved checkpoint differs from the
base model exactly in the selected layer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import base_env, free_port

REPO = Path(__file__).resolve().parents[2]
# DeepSpeed's save calls torch.cuda.synchronize(), which fails without CUDA (docs/troubleshooting.md pitfall 8).
RUN_EXAMPLE = ("import torch; torch.cuda.synchronize = lambda *a, **k: None; import runpy; "
               "runpy.run_path('scripts/train_hf_example.py', run_name='__main__')")


@pytest.fixture(scope="module")
def hf_assets(tmp_path_factory):
    import base64
    import io
    import json

    from PIL import Image

    from plast_plugin.cli import main as plast
    from plast_plugin.testing.tiny_models import make_tiny_llava_hf

    root = tmp_path_factory.mktemp("hf_ds")
    model = make_tiny_llava_hf(root / "model")

    def png(seed):
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), (seed * 40, 9, 9)).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    rows = [{"id": str(i), "lang": lang, "question": f"{lang} question number {i}?", "image": png(i)}
            for i in range(4) for lang in ("en", "zh")]
    data = root / "q.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plast(["build-data", "--data", str(data), "--out", str(root / "train.json"), "--quiet"]) == 0
    assert plast(["select", "--model", str(model), "--data", str(data), "--out", str(root / "sel"), "--device", "cpu",
                  "--quiet", "--no-plot", "--rule", "2", "--images", "off"]) == 0
    return {"model": model, "data": root / "train.json", "selection": root / "sel" / "plast_layers.json"}


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_trains_exactly_the_selected_layer(hf_assets, tmp_path, stage):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    env = base_env(RANK=0, LOCAL_RANK=0, WORLD_SIZE=1, LOCAL_WORLD_SIZE=1, MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=free_port())
    cmd = [sys.executable, "-c", RUN_EXAMPLE, "--model", str(hf_assets["model"]), "--data", str(hf_assets["data"]),
           "--selection", str(hf_assets["selection"]), "--output-dir", str(out), "--max-steps", "2",
           "--batch-size", "2", "--lr", "1e-2", "--deepspeed", str(REPO / "scripts" / f"{stage}.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[plast] checked: the optimizer holds exactly the 9 selected parameters" in proc.stdout
    base = load_file(str(hf_assets["model"] / "model.safetensors"))
    trained = load_file(str(out / "model.safetensors"))
    changed = {n for n in base if not torch.equal(base[n], trained[n])}
    assert changed == {n for n in base if n.startswith("language_model.model.layers.2.")}
