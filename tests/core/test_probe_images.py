"""With images, only the chosen positions are counted: the question's text tokens by default,
never image features or padding (official LLaVA format; the `llava` package lives in the
training env, so this test runs there and is skipped in the eval env)."""

from __future__ import annotations

import base64
import io

import pytest
import torch

from core_testutil import question_rows, write_jsonl
from plast_plugin.errors import PlastError
from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.pipeline import probe_questions

pytest.importorskip("llava", reason="the official LLaVA code (llava-torch) is installed in the training env only")


def _png(color) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from plast_plugin.models.loading import load_for_probe
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
    with pytest.raises(PlastError, match="only 0 of 5 questions have one"):
        probe_questions(model, tokenizer, questions, SelectionOptions(images="on"),
                        image_processor=image_processor, progress=False)


def test_each_image_decoded_once_for_all_languages(tiny_llava, tmp_path, monkeypatch):
    """The batches that share images run back to back, so every image is decoded and
    preprocessed once, not once per language; the counts equal one question per batch."""
    import plast_plugin.models.probe_models as probe_models

    model, tokenizer, image_processor = tiny_llava
    images = {qid: _png((40 * int(qid), 90, 200)) for qid in "12345"}
    rows = [dict(row, image=images[row["id"]]) for row in question_rows(("en", "zh", "ar"))]
    questions = load_parallel_questions(write_jsonl(tmp_path / "q.jsonl", rows), None, "en")
    decoded = []
    real_load = probe_models.load_image
    monkeypatch.setattr(probe_models, "load_image", lambda ref: decoded.append(ref) or real_load(ref))
    model64 = model.double()  # float64, so batching cannot flip a sign through rounding
    torch.set_default_dtype(torch.float64)  # transformers 4.37 builds its masks in the default dtype
    try:
        blocks = probe_questions(model64, tokenizer, questions, SelectionOptions(batch_size=2),
                                 image_processor=image_processor, progress=False)
        assert len(decoded) == 5  # 5 images, 3 languages: 15 decodes before
        decoded.clear()
        single = probe_questions(model64, tokenizer, questions, SelectionOptions(batch_size=1),
                                 image_processor=image_processor, progress=False)
    finally:
        torch.set_default_dtype(torch.float32)
        model.float()
    assert len(decoded) == 5
    assert torch.equal(blocks.counts.counts, single.counts.counts)
    assert torch.equal(blocks.counts.tokens, single.counts.tokens)


def test_question_blocks_keep_every_group_together():
    from plast_plugin.models.probe_inputs import EncodedPrompt, make_batches

    prompts = [EncodedPrompt(group, [1] * (3 + q % 3 + group), ["question"] * (3 + q % 3 + group), f"img{q}", question=q)
               for group in range(3) for q in range(7)]
    batches = make_batches(prompts, 3)
    assert all(len({p.group for p in batch}) == 1 for batch in batches)
    seen = []
    for batch in batches:
        block = {p.question for p in batch}
        if not seen or block != seen[-1][0]:
            seen.append((block, []))
        seen[-1][1].append(batch[0].group)
    assert [groups for _, groups in seen] == [[0, 1, 2]] * 3  # each block in every group, back to back
    assert sorted(len(block) for block, _ in seen) == [1, 3, 3]
    assert sorted(id(p) for batch in batches for p in batch) == sorted(id(p) for p in prompts)


def test_pixel_cache_is_bounded():
    from PIL import Image

    from plast_plugin.models.probe_models import PixelCache

    cache = PixelCache(lambda images: torch.zeros(len(images), 3, 4, 4))
    import plast_plugin.models.probe_models as probe_models

    original = probe_models.load_image
    probe_models.load_image = lambda ref: Image.new("RGB", (5, 4))
    try:
        for start in range(0, 40, 4):
            pixels, sizes = cache.get([f"img{i}" for i in range(start, start + 4)])
            assert pixels.shape == (4, 3, 4, 4) and sizes == [(5, 4)] * 4
            cache.get([f"img{i}" for i in range(start, start + 4)])  # the next language: no decode
        assert cache.decoded == 40 and len(cache._entries) <= 8
    finally:
        probe_models.load_image = original
