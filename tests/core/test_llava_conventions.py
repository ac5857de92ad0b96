"""The probe feeds a LLaVA model what LLaVA itself feeds it: the conversation template's prompt
(``conv_templates[...]`` + ``tokenizer_image_token``) and ``process_images``' pixels
(``image_aspect_ratio pad``: padded to a square with the processor's mean colour, not cropped).
The official LLaVA code lives in the training env; elsewhere this file is skipped."""

from __future__ import annotations

import unicodedata

import pytest
import torch

from plast_plugin.models.probe_inputs import QUESTION, conversation_text, encode_prompt
from plast_plugin.models.probe_models import family_for, llava_pixel_values

pytest.importorskip("llava", reason="the official LLaVA code (llava-torch) is installed in the training env only")

QUESTIONS = [
    "What is the color of the car in the picture?",
    "图片中汽车是什么颜色？",
    "Какого цвета машина на картинке?",
    "user",  # also a word of the system prompt
    "a",
]


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from plast_plugin.models.loading import load_for_probe
    from plast_plugin.testing.tiny_models import make_tiny_llava

    out = tmp_path_factory.mktemp("tiny_llava_conv")
    make_tiny_llava(out)
    return load_for_probe(str(out), "cpu", "fp32")


def _llava_prompt(question: str, template: str, with_image: bool) -> str:
    from llava.conversation import conv_templates

    conv = conv_templates[template].copy()
    conv.append_message(conv.roles[0], f"<image>\n{question}" if with_image else question)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


@pytest.mark.parametrize("template", ["v1", "vicuna_v1", "llava_v1"])
@pytest.mark.parametrize("with_image", [True, False])
def test_probe_prompt_is_llavas_conversation(tiny_llava, template, with_image):
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token

    _, tokenizer, _ = tiny_llava
    for question in QUESTIONS:
        expected_text = _llava_prompt(question, template, with_image)
        assert conversation_text(question, template, with_image) == expected_text
        encoded = encode_prompt(tokenizer, question, prompt="llava", max_question_tokens=512,
                                image_ids=[IMAGE_TOKEN_INDEX] if with_image else None, group=0,
                                conv_template=template)
        assert encoded.input_ids == list(tokenizer_image_token(expected_text, tokenizer, IMAGE_TOKEN_INDEX)), question
        counted = [i for i, k in zip(encoded.input_ids, encoded.kinds) if k == QUESTION]
        # the tiny sentencepiece model normalises (NFKC: "？" -> "?") like LLaMA's
        assert tokenizer.decode(counted).strip() == unicodedata.normalize("NFKC", question)


def test_default_template_is_v1_the_curious_user():
    from llava.conversation import conv_templates, conv_vicuna_v1

    from plast_plugin.core.options import SelectionOptions

    assert SelectionOptions().conv_template == "v1" and conv_templates["v1"] is conv_vicuna_v1
    assert "curious user" in conversation_text("q")


def _images():
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    out = []
    for h, w in ((30, 50), (50, 30), (40, 40)):
        arr = (torch.rand((h, w, 3), generator=gen) * 255).to(torch.uint8).numpy()
        out.append(Image.fromarray(arr))
    return out


def test_probe_pixels_are_llavas_process_images(tiny_llava):
    from llava.mm_utils import process_images

    model, _, processor = tiny_llava
    assert model.config.image_aspect_ratio == "pad"
    images = _images()
    expected = process_images(images, processor, model.config)
    ours = llava_pixel_values(images, processor, model.config.image_aspect_ratio)
    assert torch.equal(ours, expected)
    # a centre crop (what the probe did before) loses the sides of a wide image: not the same input
    cropped = processor.preprocess(images, return_tensors="pt")["pixel_values"]
    assert not torch.equal(cropped[0], expected[0])


def test_the_probe_feeds_those_pixels_to_the_model(tiny_llava, tmp_path):
    """The official-LLaVA family hands prepare_inputs_labels_for_multimodal process_images' pixels."""
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import process_images

    from plast_plugin.core.model_layout import find_decoder_layers
    from plast_plugin.models.probe_inputs import pad_batch

    model, tokenizer, processor = tiny_llava
    images = _images()[:2]
    paths = []
    for n, image in enumerate(images):
        paths.append(str(tmp_path / f"{n}.png"))
        image.save(paths[-1])
    family = family_for(model, find_decoder_layers(model), processor)
    prompts = [encode_prompt(tokenizer, "What is it?", prompt="llava", max_question_tokens=64,
                             image_ids=[IMAGE_TOKEN_INDEX], group=0, image=p) for p in paths]
    seen = []
    original = model.prepare_inputs_labels_for_multimodal

    def spy(*args, **kwargs):
        seen.append(args[5])
        return original(*args, **kwargs)

    model.prepare_inputs_labels_for_multimodal = spy
    try:
        family.run(pad_batch(prompts, "question", tokenizer.pad_token_id or 0), "question", lambda mask: None)
    finally:
        del model.prepare_inputs_labels_for_multimodal
    assert torch.equal(seen[0], process_images(images, processor, model.config))
