"""The README's workflow for a transformers 5 vision-language model, command after command, on a tiny
Qwen2.5-VL: `plast select` with images writes the selection, `plast build-data` the training data,
scripts/train_hf_example.py trains from that very selection file (exactly its layers change), `plast export`
writes the delta of those layers, and `plast eval --model qwen2_5_vl` builds the lmms-eval command for the
family's own class (the real runs of that command: test_vlm_families_eval.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import torch
from eval_testutil import REPO, png_base64, subprocess_env

from plast_plugin.checkpoints.weights import CheckpointWeights
from plast_plugin.cli import main as plast

QUESTIONS = {"1": {"en": "What color is the car?", "zh": "汽车是什么颜色？"},
             "2": {"en": "How many people are there?", "zh": "有几个人？"},
             "3": {"en": "Which animal is on the table?", "zh": "桌子上是什么动物？"},
             "4": {"en": "Is the window open?", "zh": "窗户开着吗？"}}
SIZES = {"1": (60, 30), "2": (30, 60), "3": (60, 60), "4": (90, 50)}


def _weights(folder) -> dict:
    with CheckpointWeights(folder) as weights:
        return weights.read_all()


def test_select_build_data_train_export_eval_on_a_vision_language_family(tmp_path, capsys):
    from plast_plugin.testing.tiny_models import make_tiny_vlm

    model = make_tiny_vlm("qwen2_5_vl", tmp_path / "model")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(
        json.dumps({"id": qid, "lang": lang, "question": text,
                    "image": png_base64(SIZES[qid], (40 * int(qid), 90, 200))},
                   ensure_ascii=False) + "\n" for qid, texts in QUESTIONS.items() for lang, text in texts.items()))

    assert plast(["select", "--model", str(model), "--data", str(questions), "--out", str(tmp_path / "select"),
                  "--device", "cpu", "--quiet", "--no-plot", "--rule", "msd-top:1"]) == 0
    selection = tmp_path / "select" / "plast_layers.json"
    chosen = json.loads(selection.read_text())["selected_layers"]
    assert json.loads(selection.read_text())["data"]["images_used"] is True and len(chosen) == 1

    data = tmp_path / "plast_train.json"
    assert plast(["build-data", "--data", str(questions), "--out", str(data), "--quiet"]) == 0

    out = tmp_path / "qwen25vl-plast"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_hf_example.py"), "--model", str(model),
                           "--data", str(data), "--selection", str(selection), "--output-dir", str(out),
                           "--max-steps", "2", "--batch-size", "2", "--lr", "1e-2"],
                          env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    base, trained = _weights(model), _weights(out)
    # Qwen2.5-VL's files keep the decoder as model.layers.N (its vision blocks are visual.blocks.N)
    assert {n for n in base if not torch.equal(base[n], trained[n])} == {
        n for n in base if n.startswith(f"model.layers.{chosen[0]}.")}

    assert plast(["export", str(out), "--out", str(tmp_path / "delta")]) == 0
    from safetensors.torch import load_file

    delta = load_file(str(tmp_path / "delta" / "plast_delta.safetensors"))
    assert set(delta) == {n for n in base if n.startswith(f"model.layers.{chosen[0]}.")}
    assert all(torch.equal(delta[n], trained[n]) for n in delta)

    capsys.readouterr()
    assert plast(["eval", str(out), "--model", "qwen2_5_vl", "--benchmarks", "mmmb", "--languages", "en",
                  "--device", "cpu", "--dry-run"]) == 0
    command = capsys.readouterr().out
    assert "--model qwen2_5_vl" in command and f"pretrained={out}" in command and "device_map=cpu" in command
