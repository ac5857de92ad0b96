"""`plast ablate --trainer hf`: the ablation through the Hugging Face Trainer path (scripts/train_hf_example.py)
for transformers models, on a tiny Qwen2.5-VL (mrope positions, its ChatML template). Every run trains
exactly its layer set; every run and the untrained model are scored through the model's own chat
template on the very tokens the HF path trains on (the held-out loss equals the trained model's own
forward loss on `plast build-data` records); the report and the selection file's verdicts are written;
what the HF path cannot run is refused before any training."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from eval_testutil import subprocess_env

from plast_plugin.cli import main as plast

QUESTIONS = {  # id: (en, zh, ru)
    "1": ("What color is the car?", "汽车是什么颜色？", "Какого цвета машина?"),
    "2": ("How many people are there?", "有几个人？", "Сколько там людей?"),
    "3": ("Which animal is on the table?", "桌子上是什么动物？", "Какое животное на столе?"),
    "4": ("Is the window open?", "窗户开着吗？", "Окно открыто?"),
}
HELDOUT = {"5": ("Where is the bicycle?", "自行车在哪里？", "Где велосипед?"),
           "6": ("What is the man holding?", "那个人拿着什么？", "Что держит мужчина?")}
ANSWERS = {"5": "Near the tree.", "6": "A red cup."}


def _write(path: Path, questions: dict, answers: dict | None = None) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for qid, texts in questions.items():
            for lang, text in zip(("en", "zh", "ru"), texts):
                row = {"id": qid, "lang": lang, "question": text}
                if answers and lang == "en":
                    row["answer"] = answers[qid]
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
    from plast_plugin.testing.tiny_models import make_tiny_vlm

    root = tmp_path_factory.mktemp("ablate_hf")
    model = make_tiny_vlm("qwen2_5_vl", root / "model")
    assert plast(["build-data", "--data", str(_write(root / "train.jsonl", QUESTIONS)),
                  "--out", str(root / "train.json"), "--quiet"]) == 0
    import transformers

    loaded = transformers.AutoModelForImageTextToText.from_pretrained(str(model))
    selection = root / "plast_layers.json"
    SelectionFile(selected_layers=[1], rule="manual", model=ModelIdentity.of(loaded, str(model)),
                  options={"modules": "layer"}).save(selection)
    return {"model": model, "data": root / "train.json", "selection": selection, "root": root,
            "heldout": _write(root / "heldout.jsonl", HELDOUT),
            "problems": _write(root / "problems.jsonl", HELDOUT, ANSWERS)}


def _ablate(assets, out: Path, *options, train=("--max-steps", "2", "--batch-size", "2", "--lr", "1e-2")):
    cmd = [sys.executable, "-m", "plast_plugin.cli", "ablate", "--trainer", "hf", "--selection",
           str(assets["selection"]), "--heldout", str(assets["heldout"]), "--out", str(out), "--quiet",
           "--device", "cpu", "--dtype", "fp32", *options,
           "--", "--model", str(assets["model"]), "--data", str(assets["data"]), *train]
    return subprocess.run(cmd, env=subprocess_env(out.parent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)


def test_every_run_trains_its_layers_and_is_scored_on_every_measure(assets):
    from safetensors.torch import load_file

    out = assets["root"] / "run"
    proc = _ablate(assets, out, "--seeds", "2", "--alternatives", "last", "--problems", str(assets["problems"]),
                   "--keep-checkpoints")
    assert proc.returncode == 0, proc.stdout[-6000:]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["training"]["trainer"] == "hf" and plan["alternatives"] == ["plast", "last"]
    base = load_file(str(assets["model"] / "model.safetensors"))
    for run in plan["runs"]:
        result = json.loads((out / "runs" / run["name"] / "result.json").read_text())
        assert set(result["losses"]) == {"zh", "ru"} and set(result["answers"]) == {"en", "zh", "ru"}
        trained = load_file(str(out / "runs" / run["name"] / "train" / "model.safetensors"))
        changed = {n for n in base if not torch.equal(base[n], trained[n])}
        layer = run["layers"][0]  # the decoder's layer, not the vision tower's of the same index
        assert changed == {n for n in base if f"layers.{layer}." in n and "vision" not in n}, run["name"]
    assert {run["alternative"]: run["layers"] for run in plan["runs"]} == {"plast": [1], "last": [2]}
    base_result = json.loads((out / "base" / "result.json").read_text())
    assert set(base_result["answers"]) == {"en", "zh", "ru"}
    assert "understanding gap" in proc.stdout.lower()
    recorded = json.loads(assets["selection"].read_text())["ablation"]
    assert set(recorded["verdicts"]) == {"last"}


def test_held_out_loss_is_the_trained_model_own_loss_on_the_training_path_tokens(assets):
    """Scored as trained: the chat-template scoring's per-question NLL equals the model's own forward loss on
    the HF training path's (trainers.hf_data) encoding of the same `plast build-data` record."""
    import transformers

    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.models.translation_loss import translation_losses
    from plast_plugin.trainers.hf_data import ConversationDataset

    model = transformers.AutoModelForImageTextToText.from_pretrained(str(assets["model"]), dtype=torch.float32)
    processor = transformers.AutoProcessor.from_pretrained(str(assets["model"]))
    heldout = load_parallel_questions([str(assets["heldout"])])
    losses = translation_losses(model, processor, heldout, conv_version=None, batch_size=3)
    records = assets["root"] / "heldout_train.json"
    assert plast(["build-data", "--data", str(assets["heldout"]), "--out", str(records), "--quiet"]) == 0
    dataset = ConversationDataset(str(records), processor, None, 2048)
    checked = 0
    for index, record in enumerate(dataset.records):
        qid, lang = record["id"].rsplit("-", 1)
        item = dataset[index]
        with torch.no_grad():
            out = model(input_ids=item["input_ids"][None], labels=item["labels"][None])
        tokens = int((item["labels"][1:] != -100).sum())
        total, counted = losses[lang].per_question[qid]
        assert counted == tokens
        assert total == pytest.approx(float(out.loss) * tokens, rel=1e-4)
        checked += 1
    assert checked == 2 * len(HELDOUT)


@pytest.mark.parametrize("options, train, message", [
    (("--alternatives", "full"), (), "full and lora are LLaVA's own fine-tuning"),
    ((), ("--selection", "other.json"), "training argument --selection is set by plast ablate"),
    ((), ("--output_dir", "x"), "training argument --output_dir is set by plast ablate"),
])
def test_what_the_hf_path_cannot_run_is_refused_before_training(assets, tmp_path, options, train, message):
    proc = _ablate(assets, tmp_path / "run", "--seeds", "2", *options, train=train)
    assert proc.returncode != 0 and message in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "run" / "runs").exists()


def test_hf_path_without_a_model_flag_is_refused(assets, tmp_path):
    cmd = [sys.executable, "-m", "plast_plugin.cli", "ablate", "--trainer", "hf", "--selection",
           str(assets["selection"]), "--heldout", str(assets["heldout"]), "--out", str(tmp_path / "run"), "--quiet",
           "--", "--data", str(assets["data"])]
    proc = subprocess.run(cmd, env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "no --model in the training arguments" in proc.stdout
