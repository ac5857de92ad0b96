"""With images, only the chosen positions are counted: the question's text tokens by default,
never image features or padding (official LLaVA format; the `llava` package lives in the
training env, so this test runs there and is skipped in the eval env)."""

from __future__ import annotations

import base64
import io

import pytest
import torch

from core_testutil import question_rows, write_jsonl
from plast_plugin.options import SelectionOptions
from plast_plugin.parallel_data import load_parallel_questions
from plast_plugin.pipeline import probe_questions

pytest.importorskip("llava", reason="the official LLaVA code (llava-torch) is installed in the training env only")


def _png(color) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from plast_plugin.loading import load_for_probe
    from plast_plugin.testing.tiny_models import make_tiny_llava

    out = tmp_path_factory.mktemp("tiny_llava")
    make_tiny_llava(out)
    return load_for_probe(str(out), "cpu", "fp32")


@pytest.fixture()
def questions_with_images(tmp_path):
    images = {qid: _png((40 * int(qid), 90, 200)) for qid in "12345"}
    rows = [dict(row, image=images[row["id"]]) for row in question_rows(("en", "zh", "ar"))]
    return load_parallel_questions(write_jsonl(tmp_path / "q.jsonl", rows), None, "en")


def test_image_features_and_padding_are_not_counted(tiny_llava, questions_with_images):
    model, tokenizer, image_processor = tiny_llava
    tower = model.get_vision_tower()
    features_per_image = tower.num_patches
    run = lambda positions: probe_questions(  # noqa: E731
        model, tokenizer, questions_with_images, SelectionOptions(positions=positions, batch_size=3),
        image_processor=image_processor, progress=False)
    question_only, image_only, everything = run("question"), run("image"), run("all")
    assert question_only.images_used and image_only.images_used
    text_only = probe_questions(model, tokenizer, questions_with_images,
                                SelectionOptions(images="off", batch_size=3), progress=False)
    # The counted tokens are exactly the questions' tokens, with or without the image in context,
    # and exactly the image features with positions='image'.
    assert torch.equal(question_only.counts.tokens, text_only.counts.tokens)
    per_group = torch.tensor([len(questions_with_images.ids)] * 2 + [3, 2])  # zh, ar, en#a, en#b
    assert torch.equal(image_only.counts.tokens, per_group * features_per_image)
    assert (everything.counts.tokens > question_only.counts.tokens + image_only.counts.tokens).all()
    # The image is in the context: question activations change when it is present.
    assert not torch.equal(question_only.counts.counts, text_only.counts.counts)


def test_images_required_but_missing_is_an_error(tiny_llava, questions_jsonl):
    model, tokenizer, image_processor = tiny_llava
    questions = load_parallel_questions(questions_jsonl, None, "en")
    with pytest.raises(ValueError, match="only 0 of 5 questions have one"):
        probe_questions(model, tokenizer, questions, SelectionOptions(images="on"),
                        image_processor=image_processor, progress=False)
