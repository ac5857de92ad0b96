"""The README's workflow for a transformers 5 vision-language model, command after command, as printed:
the model named by its hub id (a tiny Qwen2.5-VL put into a Hugging Face cache, offline). `plast select`
with images writes the selection, `plast build-data` the training data, scripts/train_hf_example.py
trains from that very selection file (exactly its layers change), `plast export` writes the delta of those
layers, and `plast eval --model qwen2_5_vl --baseline <hub id>` builds the lmms-eval commands for the
family's own class (the real runs of such commands: test_vlm_families_eval.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import torch
from eval_testutil import REPO, png_base64

from plast_plugin.checkpoints.weights import CheckpointWeights

QUESTIONS = {"1": {"en": "What color is the car?", "zh": "汽车是什么颜色？"},
             "2": {"en": "How many people are there?", "zh": "有几个人？"},
             "3": {"en": "Which animal is on the table?", "zh": "桌子上是什么动物？"},
             "4": {"en": "Is the window open?", "zh": "窗户开着吗？"}}
SIZES = {"1": (60, 30), "2": (30, 60), "3": (60, 60), "4": (90, 50)}


def _weights(folder) -> dict:
    with CheckpointWeights(folder) as weights:
        return weights.read_all()


HUB_ID = "Qwen/Qwen2.5-VL-7B-Instruct"  # the README's, resolved to the tiny model in the cache


def test_select_build_data_train_export_eval_on_a_vision_language_family(tmp_path):
    from plast_plugin.testing.hub_cache import add_to_hub_cache, offline_hub_env
    from plast_plugin.testing.tiny_models import make_tiny_vlm

    model = make_tiny_vlm("qwen2_5_vl", tmp_path / "model")
    add_to_hub_cache(tmp_path / "hub", HUB_ID, model)
    env = offline_hub_env(tmp_path / "hub", tmp_path / "hf_home")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(
        json.dumps({"id": qid, "lang": lang, "question": text,
                    "image": png_base64(SIZES[qid], (40 * int(qid), 90, 200))},
                   ensure_ascii=False) + "\n" for qid, texts in QUESTIONS.items() for lang, text in texts.items()))

    def run(*command) -> str:
        proc = subprocess.run([sys.executable, *command], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    plast = ("-m", "plast_plugin.cli")
    run(*plast, "select", "--model", HUB_ID, "--data", "questions.jsonl", "--out", "runs/select-qwen25vl",
        "--device", "cpu", "--quiet", "--no-plot", "--rule", "msd-top:1")
    selection = json.loads((tmp_path / "runs/select-qwen25vl/plast_layers.json").read_text())
    chosen = selection["selected_layers"]
    assert selection["data"]["images_used"] is True and len(chosen) == 1

    run(*plast, "build-data", "--data", "questions.jsonl", "--out", "data/plast_train.json", "--quiet")
    run(str(REPO / "scripts" / "train_hf_example.py"), "--model", HUB_ID, "--data", "data/plast_train.json",
        "--selection", "runs/select-qwen25vl/plast_layers.json", "--output-dir", "checkpoints/qwen25vl-plast",
        "--max-steps", "2", "--batch-size", "2", "--lr", "1e-2")
    out = tmp_path / "checkpoints/qwen25vl-plast"
    base, trained = _weights(model), _weights(out)
    # Qwen2.5-VL's files keep the decoder as model.layers.N (its vision blocks are visual.blocks.N)
    layer_tensors = {n for n in base if n.startswith(f"model.layers.{chosen[0]}.")}
    assert {n for n in base if not torch.equal(base[n], trained[n])} == layer_tensors

    run(*plast, "export", "checkpoints/qwen25vl-plast", "--out", "checkpoints/qwen25vl-plast-delta")
    from safetensors.torch import load_file

    delta = load_file(str(tmp_path / "checkpoints/qwen25vl-plast-delta/plast_delta.safetensors"))
    assert set(delta) == layer_tensors and all(torch.equal(delta[n], trained[n]) for n in delta)

    printed = run(*plast, "eval", "checkpoints/qwen25vl-plast", "--model", "qwen2_5_vl", "--baseline", HUB_ID,
                  "--benchmarks", "mmmb", "--languages", "en", "--device", "cpu", "--dry-run")
    assert "--model qwen2_5_vl" in printed and "pretrained=checkpoints/qwen25vl-plast" in printed
    assert f"pretrained={HUB_ID}" in printed and "device_map=cpu" in printed
