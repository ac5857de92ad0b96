"""Tokenizer, image processor, processor and chat template for the tiny vision-language families
(``tiny_models.make_tiny_vlm``), each in the style of the family's published checkpoints, so that
``AutoProcessor.from_pretrained(folder)`` gives what a user's hub id gives: the same special tokens,
the same image-token expansion (Qwen-VL's dynamic resolution, OneVision's anyres, InternVL's tiles
wrapped in ``<img>...</img>``) and a ChatML template that places the image where the family does.

The image and video processors are the classes ``AutoProcessor`` picks for the hub checkpoints (the
torchvision backends: transformers 5 builds none of these processors without torchvision, for their
video processors). Sizes are scaled down to the tiny vision towers (14 or 16 px patches), keeping each
family's resizing rule.
"""

from __future__ import annotations

from pathlib import Path

# ChatML as the Qwen2/2.5-VL, Qwen3-VL, LLaVA-OneVision-hf and InternVL-hf checkpoints render it. Content
# is a string or a list of {"type": "image"} / {"type": "text", "text": ...} parts, in order.
_QWEN_PARTS = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
)
_GENERATION = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
QWEN2_5_VL_CHAT_TEMPLATE = (  # a default system turn when the conversation has none
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n" + _QWEN_PARTS + "<|im_end|>\n{% endfor %}" + _GENERATION
)
QWEN3_VL_CHAT_TEMPLATE = (  # no default system turn
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _QWEN_PARTS + "<|im_end|>\n{% endfor %}"
    + _GENERATION
)
# OneVision-hf: the role, a space, every image first, then each text part after a newline; no newline
# after <|im_end|>. (transformers renders templates with trim_blocks: a newline right after a block tag
# is dropped, so it is written as an expression.)
ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ '\\n' + part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>{% endfor %}" + _GENERATION
)
# InternVL-hf: a system turn, each image as <IMG_CONTEXT> on its own line before the text.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}" + _GENERATION
)

_CHATML = ["<|im_start|>", "<|im_end|>"]
_QWEN_VISION = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_INTERNVL_ROLES = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
# What each family's tokenizer adds to the tiny sentencepiece vocabulary, and where its config reads
# the ids of its image tokens.
SPECIAL_TOKENS = {
    "qwen2_5_vl": (_CHATML + _QWEN_VISION, {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
                                            "vision_start_token_id": "<|vision_start|>",
                                            "vision_end_token_id": "<|vision_end|>"}),
    "qwen3_vl": (_CHATML + _QWEN_VISION, {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
                                          "vision_start_token_id": "<|vision_start|>",
                                          "vision_end_token_id": "<|vision_end|>"}),
    "llava_onevision": (_CHATML + ["<image>", "<video>"], {"image_token_index": "<image>",
                                                           "video_token_index": "<video>"}),
    "internvl": (_CHATML, {"image_token_id": "<IMG_CONTEXT>"}),
}
PAD_TOKEN = "<|endoftext|>"


def save_tiny_tokenizer(family: str, out: Path):
    """The tiny sentencepiece vocabulary with the family's special tokens, ChatML's end of turn as
    EOS, no BOS (Qwen2 tokenizers add none), saved into ``out``. Returns (tokenizer, config ids)."""
    from transformers import AutoTokenizer

    from plast_plugin.testing.tiny_models import train_tiny_sentencepiece

    tokens, config_ids = SPECIAL_TOKENS[family]
    train_tiny_sentencepiece(out, vocab_size=480)  # room below the models' 512 rows for the added tokens
    extra = _INTERNVL_ROLES if family == "internvl" else None  # InternVLProcessor reads these attributes
    tok = AutoTokenizer.from_pretrained(str(out), **({"extra_special_tokens": extra} if extra else {}))
    tok.add_special_tokens({"additional_special_tokens": tokens, "pad_token": PAD_TOKEN, "eos_token": "<|im_end|>"})
    tok.add_bos_token = False
    tok.save_pretrained(str(out))
    ids = {key: tok.convert_tokens_to_ids(token) for key, token in config_ids.items()}
    ids.update(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return tok, ids


def save_tiny_processor(family: str, config, tok, out: Path) -> None:
    """The family's processor (image and video processors, tokenizer) with its chat template."""
    import transformers

    if family in ("qwen2_5_vl", "qwen3_vl"):
        vision = config.vision_config
        factor = vision.patch_size * vision.spatial_merge_size  # sides are rounded to multiples of this
        sizes = dict(patch_size=vision.patch_size, merge_size=vision.spatial_merge_size,
                     temporal_patch_size=vision.temporal_patch_size,
                     size={"shortest_edge": factor * factor, "longest_edge": (4 * factor) ** 2})
        processor_class, video_class, template = (
            (transformers.Qwen2_5_VLProcessor, transformers.Qwen2VLVideoProcessor, QWEN2_5_VL_CHAT_TEMPLATE)
            if family == "qwen2_5_vl" else
            (transformers.Qwen3VLProcessor, transformers.Qwen3VLVideoProcessor, QWEN3_VL_CHAT_TEMPLATE))
        processor = processor_class(image_processor=transformers.Qwen2VLImageProcessor(**sizes), tokenizer=tok,
                                    video_processor=video_class(**sizes), chat_template=template)
    elif family == "llava_onevision":
        vision = config.vision_config
        side = vision.image_size
        image_processor = transformers.LlavaOnevisionImageProcessor(
            size={"height": side, "width": side}, image_grid_pinpoints=config.image_grid_pinpoints)
        processor = transformers.LlavaOnevisionProcessor(
            image_processor=image_processor, tokenizer=tok,
            video_processor=transformers.LlavaOnevisionVideoProcessor(size={"height": side, "width": side}),
            num_image_tokens=(side // vision.patch_size) ** 2,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            chat_template=ONEVISION_CHAT_TEMPLATE)
    elif family == "internvl":
        vision = config.vision_config
        side, patch = vision.image_size[0], vision.patch_size[0]
        image_processor = transformers.GotOcr2ImageProcessor(size={"height": side, "width": side},
                                                             crop_to_patches=True, min_patches=1, max_patches=4)
        processor = transformers.InternVLProcessor(
            image_processor=image_processor, tokenizer=tok,
            video_processor=transformers.InternVLVideoProcessor(size={"height": side, "width": side}),
            image_seq_length=int((side // patch) ** 2 * config.downsample_ratio ** 2),
            chat_template=INTERNVL_CHAT_TEMPLATE)
    else:
        raise ValueError(f"no tiny processor for family {family!r}")
    processor.save_pretrained(str(out))
