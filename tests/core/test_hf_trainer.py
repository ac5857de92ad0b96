"""PLAST with the Hugging Face Trainer: `plast_plugin.trainers.hf`, its data reader `trainers.hf_data` and
the runnable scripts/train_hf_example.py on a tiny
llava-hf (both transformers lines) and a tiny LLaVA-NeXT (transformers >= 4.39, the eval env).

After a few real optimizer steps exactly the selected layer's tensors changed and every other tensor
of the saved checkpoint is bit-identical to the base model; the records next to the checkpoints let
`plast export` write the delta and merge it back bit for bit.
"""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from core_testutil import question_rows, write_jsonl
from plast_plugin.cli import main as plast
from plast_plugin.checkpoints.weights import CheckpointWeights
from plast_plugin.trainers.hf_data import ConversationDataset, collate
from plast_plugin.errors import PlastError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_hf_example.py"
HAS_NEXT = hasattr(transformers, "LlavaNextForConditionalGeneration")
KINDS = ["llava-hf", pytest.param("llava-next-hf", marks=pytest.mark.skipif(
    not HAS_NEXT, reason=f"transformers {transformers.__version__} has no LLaVA-NeXT"))]
TRAINED_LAYER = 1


def _png(size, color) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _tensors(folder: Path) -> dict:
    with CheckpointWeights(folder) as weights:
        return weights.read_all()


def _model_and_data(setup):
    """The tiny model (fp32), and its `plast build-data` records read by the package's data reader."""
    from transformers import AutoProcessor

    kind = {"llava-hf": "LlavaForConditionalGeneration", "llava-next-hf": "LlavaNextForConditionalGeneration"}
    dtype = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
    model = getattr(transformers, kind[setup["kind"]]).from_pretrained(str(setup["model"]), **dtype)
    processor = AutoProcessor.from_pretrained(str(setup["model"]))
    return model, processor, ConversationDataset(str(setup["data"]), processor, None, 512)


def _run_example(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module", params=KINDS)
def setup(request, tmp_path_factory):
    """A tiny model of the kind, `plast build-data` output with images of several aspect ratios,
    and a `plast select` selection of one layer."""
    from plast_plugin.testing import tiny_models

    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    build = tiny_models.make_tiny_llava_hf if kind == "llava-hf" else tiny_models.make_tiny_llava_next_hf
    model = build(root / "model")
    # Three aspect ratios: LLaVA-NeXT tiles them into 3, 3 and 5 crops, so batches mix tile counts.
    sizes = [(60, 30), (30, 60), (60, 60)]
    rows = [dict(row, image=_png(sizes[int(row["id"]) % 3], (50 * int(row["id"]), 9, 9)))
            for row in question_rows(("en", "zh", "ru"))]
    questions = write_jsonl(root / "q.jsonl", rows)
    assert plast(["build-data", "--data", str(questions), "--out", str(root / "train.json"), "--quiet"]) == 0
    assert plast(["select", "--model", str(model), "--data", str(questions), "--out", str(root / "sel"),
                  "--device", "cpu", "--quiet", "--no-plot", "--rule", str(TRAINED_LAYER), "--images", "off"]) == 0
    return {"kind": kind, "root": root, "model": model, "data": root / "train.json",
            "selection": root / "sel" / "plast_layers.json"}


def _changed(base: dict, trained: dict) -> set:
    assert set(base) == set(trained)
    return {name for name in base if not torch.equal(base[name], trained[name]) or base[name].dtype != trained[name].dtype}


def test_example_script_changes_exactly_the_selected_layer(setup, tmp_path, capsys):
    out = tmp_path / "out"
    proc = _run_example("--model", setup["model"], "--data", setup["data"], "--selection", setup["selection"],
                        "--output-dir", out, "--max-steps", "3", "--batch-size", "2", "--lr", "1e-2",
                        "--save-steps", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    base, trained = _tensors(setup["model"]), _tensors(out)
    layer = f"language_model.model.layers.{TRAINED_LAYER}."  # the files' names, in both lines
    selected = {name for name in base if name.startswith(layer)}
    assert selected and _changed(base, trained) == selected  # every selected tensor moved, nothing else

    record = json.loads((out / "plast_training.json").read_text())
    assert record["layers"] == [TRAINED_LAYER] and record["modules"] == "layer"
    assert json.loads((out / "plast_layers.json").read_text())["selected_layers"] == [TRAINED_LAYER]
    assert (out / "checkpoint-2" / "plast_training.json").exists()  # next to every checkpoint too

    # The records make `plast export` work on this checkpoint: delta, then a bit-exact merge.
    assert plast(["export", str(out), "--out", str(tmp_path / "delta")]) == 0
    manifest = json.loads((tmp_path / "delta" / "plast_delta.json").read_text())
    assert set(manifest["tensors"]) == selected
    assert plast(["export", str(tmp_path / "delta"), "--merge-into", str(setup["model"]),
                  "--out", str(tmp_path / "merged")]) == 0
    merged = _tensors(tmp_path / "merged")
    assert not _changed(trained, merged)
    # The record fingerprints the base under the files' names, so a same-shaped other model is refused.
    assert set(record["base_fingerprint"]["tensors"]) == selected
    from plast_plugin.testing import tiny_models

    build = tiny_models.make_tiny_llava_hf if setup["kind"] == "llava-hf" else tiny_models.make_tiny_llava_next_hf
    other = build(tmp_path / "other_seed", seed=1)
    capsys.readouterr()
    assert plast(["export", str(tmp_path / "delta"), "--merge-into", str(other), "--out", str(tmp_path / "bad")]) == 1
    assert "is not the model this delta was trained from" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_gradient_checkpointing_still_trains_the_selected_layer(setup, tmp_path):
    """Frozen embeddings + reentrant checkpointing would leave the trained layer without gradient."""
    if setup["kind"] != "llava-hf":
        pytest.skip("one model is enough for this")
    out = tmp_path / "out"
    proc = _run_example("--model", setup["model"], "--data", setup["data"], "--selection", setup["selection"],
                        "--output-dir", out, "--max-steps", "2", "--batch-size", "2", "--lr", "1e-2",
                        "--gradient-checkpointing")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    base, trained = _tensors(setup["model"]), _tensors(out)
    assert _changed(base, trained) == {n for n in base if n.startswith(f"language_model.model.layers.{TRAINED_LAYER}.")}


def _trainer(setup, tmp_path, optimizer_over_every_parameter: bool = False):
    from transformers import Trainer, TrainingArguments

    from plast_plugin.trainers.hf import PlastCallback

    model, _, data = _model_and_data(setup)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
                             report_to="none", remove_unused_columns=False, save_strategy="no")
    # An optimizer built before the freeze (a common mistake) would train the whole model.
    optimizers = (torch.optim.AdamW(model.parameters(), lr=1e-3), None) if optimizer_over_every_parameter else (None, None)
    return model, Trainer(model=model, args=args, train_dataset=data, data_collator=collate(0),
                          callbacks=[PlastCallback(setup["selection"])], optimizers=optimizers)


def test_callback_refuses_an_optimizer_over_every_parameter(setup, tmp_path):

    if setup["kind"] != "llava-hf":
        pytest.skip("one model is enough for this")
    model, trainer = _trainer(setup, tmp_path, optimizer_over_every_parameter=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(PlastError, match="extra"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # refused before any step


def test_trainer_freezes_on_construction_and_its_optimizer_passes(setup, tmp_path):
    model, trainer = _trainer(setup, tmp_path)
    if setup["kind"] == "llava-next-hf":  # the collator pads crops: batches mix 3 and 5 tiles per image
        data = trainer.train_dataset
        assert {data[i]["pixel_values"].shape[1] for i in range(len(data))} == {3, 5}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    layout_prefix = ("model.language_model.layers." if int(transformers.__version__.split(".")[0]) >= 5
                     else "language_model.model.layers.")
    assert trainable and all(n.startswith(f"{layout_prefix}{TRAINED_LAYER}.") for n in trainable)
    trainer.train()  # the optimizer check passes for the Trainer's own optimizer
    assert json.loads((tmp_path / "out" / "plast_training.json").read_text())["trainable_names"] == sorted(trainable)


def test_apply_selection_refuses_a_model_of_another_shape(setup, tmp_path):
    from plast_plugin.trainers.hf import apply_selection
    from plast_plugin.testing.tiny_models import make_tiny_llava_hf

    if setup["kind"] != "llava-hf":
        pytest.skip("one model is enough for this")
    other = transformers.LlavaForConditionalGeneration.from_pretrained(
        str(make_tiny_llava_hf(tmp_path / "four_layers", num_layers=4)))
    with pytest.raises(PlastError, match="3 layers.*4 layers"):
        apply_selection(other, setup["selection"])
    assert all(p.requires_grad for p in other.parameters())  # refused before touching anything


def test_the_loss_is_on_the_answer_only(setup):
    """Supervised tokens decode to exactly the English question plus the template's end token; the
    prompt (chat template, instruction, image tokens) is all -100."""
    _, processor, data = _model_and_data(setup)
    records = json.loads(Path(setup["data"]).read_text())
    tokenizer = processor.tokenizer
    for index in (0, len(data) - 1):
        item = data[index]
        supervised = item["input_ids"][item["labels"] != -100]
        assert torch.equal(item["labels"][item["labels"] != -100], supervised)
        answer = records[index]["conversations"][1]["value"]
        assert tokenizer.decode(supervised, skip_special_tokens=True).strip() == answer
        assert supervised[-1].item() == tokenizer.eos_token_id
        prompt = item["input_ids"][item["labels"] == -100]
        assert (prompt == tokenizer.convert_tokens_to_ids("<image>")).any()  # the image is in the prompt


def test_data_that_is_not_build_data_output_is_refused_by_name(setup, tmp_path):
    from transformers import AutoProcessor

    from plast_plugin.errors import PlastError

    if setup["kind"] != "llava-hf":
        pytest.skip("one model is enough for this")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "q1", "conversations": [{"from": "human", "value": "hi"}]}]))
    processor = AutoProcessor.from_pretrained(str(setup["model"]))
    with pytest.raises(PlastError, match=r"bad\.json: record 0 \(id 'q1'\) is not one human turn and one gpt turn"):
        ConversationDataset(str(bad), processor, None, 512)
    bad.write_text(json.dumps({"conversations": []}))
    with pytest.raises(PlastError, match=r"training data .*bad\.json holds a JSON dict, not a list of records"):
        ConversationDataset(str(bad), processor, None, 512)
    bad.write_text(json.dumps([{"id": "q1", "conversations": [{"from": "human", "value": "hi"}]}]))
    proc = _run_example("--model", setup["model"], "--data", bad, "--selection", setup["selection"],
                        "--output-dir", tmp_path / "out")
    assert proc.returncode == 1 and "write the data with `plast build-data`" in proc.stderr


def test_a_hub_id_base_gets_its_fingerprint_from_the_cached_snapshot(setup, tmp_path):
    """`--model llava-hf/...` (the README's command): the base's files are read from the HF cache
    the model was loaded from (never downloaded), so the record carries the fingerprint."""
    from plast_plugin.testing.hub_cache import add_to_hub_cache, offline_hub_env

    if setup["kind"] != "llava-hf":
        pytest.skip("one model is enough for this")
    add_to_hub_cache(tmp_path / "cache", "llava-hf/llava-1.5-7b-hf", setup["model"])
    out = tmp_path / "out"
    proc = _run_example("--model", "llava-hf/llava-1.5-7b-hf", "--data", setup["data"], "--selection",
                        setup["selection"], "--output-dir", out, "--max-steps", "1", "--batch-size", "2",
                        env=offline_hub_env(tmp_path / "cache", tmp_path / "home"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "plast_training.json").read_text())
    assert record["base_model"] == "llava-hf/llava-1.5-7b-hf"
    assert set(record["base_fingerprint"]["tensors"]) == {
        n for n in _tensors(setup["model"]) if n.startswith(f"language_model.model.layers.{TRAINED_LAYER}.")}
