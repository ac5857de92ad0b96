"""LLaVA-NeXT (transformers' LlavaNextForConditionalGeneration, llava-hf/llava-v1.6-*) in `plast select`.

Anyres tiling gives each image its own number of features (here 1x2, 2x1 and 2x2 tiles in one
batch). The probe must count exactly the question's text tokens, and the activations it counts
must be those of the model's own forward on the processor's expanded prompt. LLaVA-NeXT exists in
transformers >= 4.39 (the eval env); in the train env (4.37) loading one is one clear error.
"""
from __future__ import annotations

import base64
import io
import json

import pytest
import torch
import transformers

from core_testutil import question_rows, write_jsonl
from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_image, load_parallel_questions
from plast_plugin.pipeline import probe_questions
from plast_plugin.testing.gate_counts import add_gate_counts

HAS_NEXT = hasattr(transformers, "LlavaNextForConditionalGeneration")
needs_next = pytest.mark.skipif(not HAS_NEXT, reason=f"transformers {transformers.__version__} has no LLaVA-NeXT")

# Aspect ratios that pick different anyres grids (1x2, 2x1, 2x2 tiles) and so different feature counts.
SIZES = {"1": (60, 30), "2": (30, 60), "3": (60, 60), "4": (40, 30), "5": (30, 40)}


def _png(size, color) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    if not HAS_NEXT:
        pytest.skip("no LLaVA-NeXT in this transformers")
    from plast_plugin.testing.tiny_models import make_tiny_llava_next_hf

    return make_tiny_llava_next_hf(tmp_path_factory.mktemp("tiny_next"))


@pytest.fixture(scope="module")
def tiny_next(next_dir):
    from plast_plugin.models.loading import load_for_probe

    return load_for_probe(str(next_dir), "cpu", "fp32")


@pytest.fixture()
def questions_with_images(tmp_path):
    images = {qid: _png(size, (40 * int(qid), 90, 200)) for qid, size in SIZES.items()}
    rows = [dict(row, image=images[row["id"]]) for row in question_rows(("en", "zh", "ar"))]
    return load_parallel_questions(write_jsonl(tmp_path / "q.jsonl", rows), None, "en")


def _processor_feature_count(next_dir, reference) -> int:
    """How many image tokens the model's own processor puts in the text for this image."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(next_dir))
    ids = processor(text="<image>", images=load_image(reference), return_tensors="pt")["input_ids"]
    return int((ids == processor.tokenizer.convert_tokens_to_ids("<image>")).sum())


@needs_next
def test_anyres_counts_exactly_the_question_tokens(tiny_next, next_dir, questions_with_images):
    model, tokenizer, image_processor = tiny_next
    per_image = {qid: _processor_feature_count(next_dir, questions_with_images.image(qid)) for qid in SIZES}
    assert len(set(per_image.values())) >= 3, per_image  # the batch really mixes tile counts

    def run(positions, images="auto"):
        return probe_questions(model, tokenizer, questions_with_images,
                               SelectionOptions(positions=positions, images=images, batch_size=3),
                               image_processor=image_processor, progress=False)

    question_only, image_only, everything = run("question"), run("image"), run("all")
    text_only = run("question", images="off")
    assert question_only.images_used and not text_only.images_used
    # The question's tokens, with or without the image in the context.
    assert torch.equal(question_only.counts.tokens, text_only.counts.tokens)
    # positions='image': every feature of every tile (the processor's own count), nothing else.
    ids = questions_with_images.ids
    groups = question_only.groups  # zh, ar, en#a, en#b
    from plast_plugin.models.probe_inputs import split_pivot

    halves = split_pivot(len(ids), SelectionOptions().seed)
    expected = [sum(per_image.values())] * 2 + [
        sum(per_image[q] for q, h in zip(ids, halves) if h == half) for half in (0, 1)]
    assert len(groups) == 4 and image_only.counts.tokens.tolist() == expected
    assert (everything.counts.tokens > question_only.counts.tokens + image_only.counts.tokens).all()
    # The image is in the context: question activations change with it.
    assert not torch.equal(question_only.counts.counts, text_only.counts.counts)


@needs_next
def test_counted_activations_are_the_models_own_forward(tiny_next, next_dir, questions_with_images):
    """Reference: the model's forward on the processor-expanded prompt, gate activations counted at
    the question's positions by a hook. The probe (placeholder widened, features spliced) agrees."""
    from transformers import AutoProcessor

    from plast_plugin.models.probe_inputs import QUESTION, encode_prompt

    model, tokenizer, image_processor = tiny_next
    processor = AutoProcessor.from_pretrained(str(next_dir))
    image_id = model.config.image_token_id
    layers = model.model.language_model.layers
    reference = torch.zeros(len(layers), layers[0].mlp.gate_proj.out_features, dtype=torch.long)
    tokens = 0
    for qid in questions_with_images.ids:
        image = load_image(questions_with_images.image(qid))
        n = _processor_feature_count(next_dir, questions_with_images.image(qid))
        prompt = encode_prompt(tokenizer, questions_with_images.question(qid, "zh"), prompt="llava",
                               max_question_tokens=SelectionOptions().max_question_tokens,
                               image_ids=[image_id] * n, group=0)
        counted = torch.tensor([kind == QUESTION for kind in prompt.kinds])
        tokens += int(counted.sum())
        pixels = processor.image_processor([image], return_tensors="pt")
        add_gate_counts(layers, counted, reference, lambda: model(
            input_ids=torch.tensor([prompt.input_ids]), pixel_values=pixels["pixel_values"],
            image_sizes=pixels["image_sizes"]))
    probed = probe_questions(model, tokenizer, questions_with_images, SelectionOptions(batch_size=1),
                             image_processor=image_processor, progress=False)
    zh = probed.groups.index("zh")
    assert int(probed.counts.tokens[zh]) == tokens
    assert torch.equal(probed.counts.counts[zh], reference)


@needs_next
def test_select_and_freeze_a_llava_next_checkpoint(next_dir, questions_with_images, tmp_path):
    from plast_plugin.cli import main
    from plast_plugin.core.freeze import freeze_for_plast
    from plast_plugin.models.loading import load_for_probe

    data = tmp_path / "q.jsonl"
    rows = [dict(row, image=_png(SIZES[row["id"]], (9, 9, 9))) for row in question_rows(("en", "zh"))]
    write_jsonl(data, rows)
    assert main(["select", "--model", str(next_dir), "--data", str(data), "--out", str(tmp_path / "sel"),
                 "--device", "cpu", "--quiet", "--no-plot", "--rule", "msd-top:1"]) == 0
    selection = json.loads((tmp_path / "sel" / "plast_layers.json").read_text())
    assert selection["model"]["architecture"] == "LlavaNextForConditionalGeneration"
    assert selection["data"]["images_used"] is True and len(selection["selected_layers"]) == 1

    model = load_for_probe(str(next_dir), "cpu", "fp32")[0]
    freeze_for_plast(model, [2])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.language_model.layers.2.") for n in trainable)


@pytest.mark.skipif(HAS_NEXT, reason="this transformers has LLaVA-NeXT")
def test_llava_next_without_support_is_one_clear_error(tmp_path):
    from plast_plugin.models.loading import load_for_probe

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_next",
                                                      "architectures": ["LlavaNextForConditionalGeneration"]}))
    from plast_plugin.errors import PlastError

    with pytest.raises(PlastError, match="LLaVA-NeXT checkpoint.*added in 4.39.*evaluation env"):
        load_for_probe(str(tmp_path), "cpu", "fp32")
