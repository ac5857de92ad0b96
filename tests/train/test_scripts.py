"""scripts/finetune_plast.sh forms a command line the patched LLaVA parser accepts in full."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_finetune_script

REPO = Path(__file__).resolve().parents[2]


def test_finetune_script_flags_parse(tmp_path):
    proc, launched = run_finetune_script(tmp_path, ["--max_steps", "5"], SIZE="13b")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert launched["unknown"] == []
    assert launched["script"].endswith("llava/train/train_mem.py")
    args = launched["args"]
    assert args["model_name_or_path"] == "liuhaotian/llava-v1.5-13b" and float(args["learning_rate"]) == 2e-5
    assert args["plast_layers"] == "auto" and args["plast_languages"] == "zh,pt,ar,tr,ru"
    # Unset: a selection file's modules win, so the script must not pass 'layer'.
    assert args["plast_modules"] in (None, "None")
    assert args["lr_scheduler_type"] == "cosine" and str(args["bf16"]) == "True"
    # ZeRO-2 by default for PLAST (the weights it would partition are mostly frozen); checkpointing on.
    assert args["deepspeed"].endswith("zero2.json") and int(args["max_steps"]) == 5
    assert str(args["gradient_checkpointing"]) == "True"


def test_finetune_script_zero3_and_checkpointing_off_on_request(tmp_path):
    proc, launched = run_finetune_script(tmp_path, SIZE="7b", ZERO=str(REPO / "scripts" / "zero3.json"),
                                         GRAD_CKPT="False")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert launched["unknown"] == []
    assert launched["args"]["deepspeed"].endswith("zero3.json")
    assert str(launched["args"]["gradient_checkpointing"]) == "False"


def test_deepspeed_configs_have_no_auto_prefetch():
    for name in ("zero2.json", "zero3.json"):
        config = json.loads((REPO / "scripts" / name).read_text())
        assert config["zero_optimization"].get("stage3_prefetch_bucket_size", 0) != "auto"  # docs/troubleshooting.md pitfall 6
        assert "optimizer" not in config  # LLaVATrainer.create_optimizer builds it (from requires_grad)
