"""Tiny, deterministic, locally built models for tests and demos (no Hugging Face hub).

Everything here is built from a seed in a few seconds on CPU:

- ``train_tiny_sentencepiece``: a LLaMA sentencepiece tokenizer trained on a few dozen
  multilingual lines (byte fallback, so any text tokenizes).
- ``make_tiny_llama``: a random ``LlamaForCausalLM`` saved as safetensors with that tokenizer.
- ``make_tiny_clip_vision``: a random ``CLIPVisionModel`` (28 px images, 14 px patches) and its
  ``CLIPImageProcessor``.
- ``make_tiny_llava``: an *official-format* LLaVA checkpoint (``model_type llava_llama``) that
  LLaVA's ``train()`` and ``load_pretrained_model`` accept.
- ``make_tiny_llava_hf``: transformers' own ``LlavaForConditionalGeneration`` (llava-hf format)
  with tokenizer, image processor, processor and chat template, in either transformers line.
- ``make_tiny_llava_next_hf``: transformers' ``LlavaNextForConditionalGeneration`` (LLaVA-NeXT,
  anyres tiling), transformers >= 4.39 (the eval env).
- ``make_tiny_vlm``: a random Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision or InternVL (transformers 5
  classes, the eval env) from tiny vision + text configs: weights and config only.
- ``build_llava_from_llama``: puts an existing LLaMA checkpoint (e.g. SmolLM2) into such a
  LLaVA with a given vision tower and a fresh projector.

Weights of the vision tower are rounded to float16-representable values: LLaVA's ``train()``
casts the tower to fp16/bf16, and tests compare saved tensors bit for bit.
Importing ``llava`` only works in the training env, so those imports stay inside functions.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = [
    "TOKENIZER_TEXT",
    "train_tiny_sentencepiece",
    "make_tiny_llama",
    "make_tiny_clip_vision",
    "make_tiny_llava",
    "make_tiny_llava_hf",
    "make_tiny_llava_next_hf",
    "make_tiny_vlm",
    "VLM_FAMILIES",
    "build_llava_from_llama",
]

# A few dozen lines in the project's languages (en zh pt ar tr ru) + some filler English, enough
# for sentencepiece to learn a vocabulary of a few hundred pieces next to the 256 byte pieces.
TOKENIZER_TEXT = [
    "What is the color of the car in the picture?",
    "How many people are standing next to the table?",
    "Which animal is sitting on the red chair?",
    "Translate the following question from Chinese to English.",
    "Translate the following question from Portuguese to English.",
    "Translate the following question from Arabic to English.",
    "Translate the following question from Turkish to English.",
    "Translate the following question from Russian to English.",
    "Answer with the option's letter from the given choices directly.",
    "A. yes B. no C. maybe D. none of the above",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "There are three apples and two oranges in the basket on the kitchen table.",
    "图片中汽车是什么颜色？",
    "桌子旁边站着多少人？",
    "哪只动物坐在红色的椅子上？",
    "请直接用给定选项中的选项字母回答。",
    "这是一只猫，它在花园里玩耍。",
    "Qual é a cor do carro na imagem?",
    "Quantas pessoas estão ao lado da mesa?",
    "Qual animal está sentado na cadeira vermelha?",
    "Responda diretamente com a letra da opção das escolhas dadas.",
    "ما هو لون السيارة في الصورة؟",
    "كم عدد الأشخاص الذين يقفون بجانب الطاولة؟",
    "أي حيوان يجلس على الكرسي الأحمر؟",
    "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
    "Resimdeki arabanın rengi nedir?",
    "Masanın yanında kaç kişi duruyor?",
    "Kırmızı sandalyede hangi hayvan oturuyor?",
    "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
    "Какого цвета машина на картинке?",
    "Сколько человек стоит рядом со столом?",
    "Какое животное сидит на красном стуле?",
    "Ответьте буквой варианта из предложенных вариантов напрямую.",
    "USER: <image> What is shown here? ASSISTANT: A cat on a sofa.",
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
]


def _filler_lines(n: int = 200) -> list[str]:
    """Deterministic extra English so the trainer can fill a vocabulary of a few hundred."""
    words = (
        "image picture photo question answer option letter color number person people "
        "animal table chair window river mountain street building music science history "
        "language translation english chinese arabic russian turkish portuguese sentence "
        "word model layer neuron activation train evaluate benchmark small large left right "
        "above below inside outside before after morning evening weather water bread coffee "
        "rocket astronaut camera horse bicycle train station market garden flower tree"
    ).split()
    lines = []
    for i in range(n):
        lines.append(" ".join(words[(i * 7 + k * 13) % len(words)] for k in range(9)) + ".")
    return lines


def train_tiny_sentencepiece(out_dir, vocab_size: int = 512):
    """Train a tiny LLaMA sentencepiece tokenizer and save it as a tokenizer dir.

    Returns the directory (``tokenizer.model`` + tokenizer configs; ``tokenizer.json`` too
    when the installed transformers can convert it). Loads with ``AutoTokenizer`` in
    transformers 4.37 (slow and fast) and 5.x.
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "_spm_corpus.txt"
    corpus.write_text("\n".join(TOKENIZER_TEXT * 3 + _filler_lines()) + "\n", encoding="utf-8")
    prefix = out / "_spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        split_digits=True,
        num_threads=1,
        minloglevel=2,
        seed_sentencepiece_size=100000,
        # The corpus is tiny; keep it deterministic.
        shuffle_input_sentence=False,
    )
    import shutil

    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        # transformers 5 has no slow tokenizer: LlamaTokenizer(vocab_file=...) ignores the
        # sentencepiece model and encodes everything to []. Let from_pretrained convert it.
        shutil.copyfile(str(prefix) + ".model", out / "tokenizer.model")
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": True,
        }))
        tok = transformers.AutoTokenizer.from_pretrained(str(out))
        if not tok("check", add_special_tokens=False)["input_ids"]:
            raise RuntimeError("the tiny tokenizer encodes text to nothing (protobuf too old for transformers?)")
    else:
        tok = LlamaTokenizer(vocab_file=str(prefix) + ".model", legacy=True)
    tok.save_pretrained(str(out))
    try:  # also write tokenizer.json so fast-only loaders (transformers 5.x) are happy
        from transformers import LlamaTokenizerFast

        LlamaTokenizerFast.from_pretrained(str(out), legacy=True).save_pretrained(str(out))
    except Exception:  # pragma: no cover - conversion needs protobuf/sentencepiece
        pass
    for f in (corpus, Path(str(prefix) + ".model"), Path(str(prefix) + ".vocab")):
        if f.exists():
            f.unlink()
    return out


def _llama_config_kwargs(num_layers, hidden, intermediate, heads, kv_heads, vocab_size, max_pos):
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_pos,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        hidden_act="silu",
    )


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def _random_init_(model, seed: int, std: float = 0.05) -> None:
    """Deterministic, non-degenerate init that does not depend on transformers' init code."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1 and ("norm" in name or "layernorm" in name or name.endswith("ln.weight")):
                p.fill_(1.0)
            elif p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def _round_fp16_(model) -> None:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))


def make_tiny_llama(out_dir, num_layers: int = 4, hidden: int = 64, intermediate: int = 128,
                    seed: int = 0, heads: int = 4, kv_heads: int | None = None,
                    tokenizer_dir=None, max_position_embeddings: int = 512):
    """Save a random ``LlamaForCausalLM`` (safetensors) plus a tiny tokenizer into ``out_dir``."""
    import transformers
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is None:
        train_tiny_sentencepiece(out)
    else:
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    vocab = len(tok)
    cfg = LlamaConfig(**_llama_config_kwargs(num_layers, hidden, intermediate, heads,
                                             kv_heads or heads, vocab, max_position_embeddings))
    _seeded(seed)
    model = LlamaForCausalLM(cfg)
    _random_init_(model, seed)
    model.save_pretrained(str(out), safe_serialization=True)
    del transformers
    return out


def make_tiny_clip_vision(out_dir, seed: int = 0, image_size: int = 28, patch_size: int = 14,
                          hidden: int = 32, num_layers: int = 2):
    """Save a random ``CLIPVisionModel`` + ``CLIPImageProcessor`` into ``out_dir``."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden,
    )
    _seeded(seed)
    model = CLIPVisionModel(cfg)
    _random_init_(model, seed + 1)
    _round_fp16_(model)
    model.save_pretrained(str(out), safe_serialization=True)
    proc = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        do_resize=True,
    )
    proc.save_pretrained(str(out))
    return out


def _llava_fields(vision_tower_dir, mm_hidden_size: int) -> dict:
    """The ``mm_*`` config fields an official LLaVA-1.5 checkpoint carries."""
    return dict(
        mm_vision_tower=str(vision_tower_dir),
        mm_hidden_size=mm_hidden_size,
        mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_patch_merge_type="flat",
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        image_aspect_ratio="pad",
        use_mm_proj=True,
        tune_mm_mlp_adapter=False,
        freeze_mm_mlp_adapter=False,
        tokenizer_padding_side="right",
        tokenizer_model_max_length=2048,
    )


def _save_llava(model, out: Path, tokenizer_src) -> None:
    from transformers import AutoTokenizer

    # Official LLaVA checkpoints contain the vision tower weights too.
    tower = model.get_model().get_vision_tower()
    if not tower.is_loaded:
        tower.load_model()
    model.config.use_cache = True
    model.save_pretrained(str(out), safe_serialization=True)
    # Slow files (LLaVA's train() loads use_fast=False) and tokenizer.json, whichever exist.
    saved = False
    for use_fast in (False, True):
        try:
            AutoTokenizer.from_pretrained(str(tokenizer_src), use_fast=use_fast).save_pretrained(str(out))
            saved = True
        except Exception:  # e.g. a tokenizer.json-only checkpoint has no slow tokenizer
            continue
    if not saved:
        raise RuntimeError(f"cannot load a tokenizer from {tokenizer_src}")


# A LLaVA-1.5-style (vicuna) chat template over the processor's message format (content: a string, or
# a list of {"type": "image"} / {"type": "text", "text": ...}), like the llava-hf checkpoints ship.
TINY_LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %} {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
# Tiny CLIP tower of the llava-hf builders: 28 px images, 14 px patches.
_TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    image_size=28, patch_size=14, projection_dim=32)
# LLaVA-NeXT's anyres grid for the tiny tower: 1x2, 2x1 and 2x2 tiles of 28 px.
TINY_NEXT_GRID = [[28, 56], [56, 28], [56, 56]]


def _tiny_image_tokenizer(out: Path):
    from transformers import AutoTokenizer

    train_tiny_sentencepiece(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = TINY_LLAVA_CHAT_TEMPLATE
    tok.save_pretrained(str(out))
    return tok


def _save_tiny_processor(processor_cls, out: Path, image_processor, tok) -> None:
    """The processor (text + image), with the chat template where this transformers keeps it there."""
    import inspect

    accepted = inspect.signature(processor_cls.__init__).parameters
    extra = {k: v for k, v in dict(patch_size=_TINY_VISION["patch_size"], vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1, chat_template=TINY_LLAVA_CHAT_TEMPLATE).items()
             if k in accepted}
    processor_cls(image_processor=image_processor, tokenizer=tok, **extra).save_pretrained(str(out))


def make_tiny_llava_hf(out_dir, num_layers: int = 3, hidden: int = 64, intermediate: int = 128,
                       seed: int = 0):
    """Save a random llava-hf ``LlavaForConditionalGeneration`` with its tokenizer (``<image>``
    added, a LLaVA-1.5-style chat template), CLIP image processor and processor into ``out_dir``
    (what ``llava-hf/...`` hub ids hold)."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _tiny_image_tokenizer(out)
    text = LlamaConfig(**_llama_config_kwargs(num_layers, hidden, intermediate, 4, 4, len(tok), 512))
    config = LlavaConfig(vision_config=CLIPVisionConfig(**_TINY_VISION), text_config=text,
                         image_token_index=tok.convert_tokens_to_ids("<image>"))
    _seeded(seed)
    model = LlavaForConditionalGeneration(config)
    _random_init_(model, seed)
    model.save_pretrained(str(out), safe_serialization=True)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    image_processor.save_pretrained(str(out))
    _save_tiny_processor(LlavaProcessor, out, image_processor, tok)
    return out


def make_tiny_llava_next_hf(out_dir, num_layers: int = 3, hidden: int = 64, intermediate: int = 128,
                            seed: int = 0):
    """Save a random LLaVA-NeXT ``LlavaNextForConditionalGeneration`` (anyres tiling over
    ``TINY_NEXT_GRID``) with tokenizer, image processor and processor into ``out_dir``, like
    ``llava-hf/llava-v1.6-*-hf``. Needs a transformers with LLaVA-NeXT (>= 4.39: the eval env)."""
    import transformers
    from transformers import CLIPVisionConfig, LlamaConfig

    if not hasattr(transformers, "LlavaNextForConditionalGeneration"):
        raise RuntimeError(f"transformers {transformers.__version__} has no LLaVA-NeXT (added in 4.39)")
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor

    try:  # the default backend needs torchvision; the PIL one is what loads without it
        from transformers.models.llava_next.image_processing_pil_llava_next import (
            LlavaNextImageProcessorPil as ImageProcessor)
    except ImportError:  # transformers < 5: one (PIL) implementation
        from transformers import LlavaNextImageProcessor as ImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _tiny_image_tokenizer(out)
    text = LlamaConfig(**_llama_config_kwargs(num_layers, hidden, intermediate, 4, 4, len(tok), 512))
    config = LlavaNextConfig(vision_config=CLIPVisionConfig(**_TINY_VISION), text_config=text,
                             image_token_index=tok.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=TINY_NEXT_GRID)
    _seeded(seed)
    model = LlavaNextForConditionalGeneration(config)
    _random_init_(model, seed)
    model.save_pretrained(str(out), safe_serialization=True)
    image_processor = ImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                     image_grid_pinpoints=TINY_NEXT_GRID)
    image_processor.save_pretrained(str(out))
    _save_tiny_processor(LlavaNextProcessor, out, image_processor, tok)
    return out


# The transformers 5 vision-language families, by model_type: their class and tiny vision + text
# configs (a 2-block vision encoder, a Qwen2-like decoder of 64 wide layers, a 512-token vocabulary;
# the special tokens' ids come from the tokenizer ``make_tiny_vlm`` saves). mrope sections sum to
# head_dim / 2 = 8.
_TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=512, bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=512)
VLM_FAMILIES = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLConfig", dict(
        text_config=dict(_TINY_TEXT, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=28, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2))),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLConfig", dict(
        text_config=dict(_TINY_TEXT, head_dim=16, rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3],
                                                                "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           deepstack_visual_indexes=[1], patch_size=16, num_position_embeddings=64))),
    "llava_onevision": ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionConfig", dict(
        text_config=dict(_TINY_TEXT, model_type="qwen2"),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14),
        image_grid_pinpoints=[[28, 28], [28, 56], [56, 28]])),
    "internvl": ("InternVLForConditionalGeneration", "InternVLConfig", dict(
        text_config=dict(_TINY_TEXT, model_type="qwen2"),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=[28, 28], patch_size=[14, 14]))),
}


def make_tiny_vlm(family: str, out_dir, num_layers: int = 3, seed: int = 0):
    """Save a random ``family`` model (a ``VLM_FAMILIES`` key) with ``num_layers`` decoder layers into
    ``out_dir``, with what its hub checkpoints hold beside the weights: tokenizer (the family's special
    tokens), PIL image processor, processor and chat template (``tiny_vlm_processors``). Needs
    transformers 5 (the eval env)."""
    import copy

    import transformers

    from plast_plugin.testing.tiny_vlm_processors import save_tiny_processor, save_tiny_tokenizer

    if family not in VLM_FAMILIES:
        raise ValueError(f"family {family!r}: use one of {', '.join(VLM_FAMILIES)}")
    model_class, config_class, kwargs = VLM_FAMILIES[family]
    if not hasattr(transformers, model_class):
        raise RuntimeError(f"transformers {transformers.__version__} has no {model_class}")
    kwargs = copy.deepcopy(kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok, token_ids = save_tiny_tokenizer(family, out)
    kwargs["text_config"]["num_hidden_layers"] = num_layers
    kwargs["text_config"].update({k: token_ids.pop(k) for k in ("pad_token_id", "eos_token_id", "bos_token_id")})
    config = getattr(transformers, config_class)(**kwargs, **token_ids)
    _seeded(seed)
    model = getattr(transformers, model_class)(config)
    _random_init_(model, seed)
    model.save_pretrained(str(out), safe_serialization=True)
    save_tiny_processor(family, config, tok, out)
    return out


def make_tiny_llava(out_dir, num_layers: int = 4, hidden: int = 64, intermediate: int = 128,
                    seed: int = 0, vision_tower_dir=None, heads: int = 4):
    """Save an official-format tiny LLaVA (``model_type llava_llama``) into ``out_dir``.

    The vision tower is built (or reused) under ``vision_tower_dir`` (default:
    ``<out_dir>_clip``) and referenced by absolute path in ``mm_vision_tower``. Needs the
    ``llava`` package (training env).
    """
    out = Path(out_dir).resolve()
    vt = Path(vision_tower_dir).resolve() if vision_tower_dir else out.parent / (out.name + "_clip")
    if not (vt / "config.json").exists():
        make_tiny_clip_vision(vt, seed=seed)
    llama_dir = out.parent / (out.name + "_llama_tmp")
    make_tiny_llama(llama_dir, num_layers=num_layers, hidden=hidden,
                    intermediate=intermediate, seed=seed, heads=heads)
    try:
        build_llava_from_llama(llama_dir, vt, out, seed=seed)
    finally:
        import shutil

        shutil.rmtree(llama_dir, ignore_errors=True)
    return out


def fit_tokenizer_to_llava_v1(tokenizer) -> list[str]:
    """Make a fast (e.g. GPT-2 BPE) tokenizer behave as LLaVA's ``preprocess_v1`` assumes of
    LLaMA's: a BOS token first, and ``</s>`` (the vicuna_v1 separator) as one token. Without
    this LLaVA masks every label ("tokenization mismatch") and training learns nothing.
    Returns what was changed; may add one token (resize the embeddings after)."""
    changes = []
    if len(tokenizer("</s>", add_special_tokens=False).input_ids) != 1:
        tokenizer.add_special_tokens({"additional_special_tokens": ["</s>"]})
        changes.append("added </s> as one special token")
    ids = tokenizer("a").input_ids
    if tokenizer.bos_token_id is None or not ids or ids[0] != tokenizer.bos_token_id:
        from tokenizers.processors import TemplateProcessing

        if tokenizer.bos_token is None or not getattr(tokenizer, "is_fast", False):
            raise ValueError("cannot make this tokenizer add a BOS token (needs a fast tokenizer with bos_token)")
        bos = tokenizer.bos_token
        tokenizer._tokenizer.post_processor = TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.bos_token_id)])
        changes.append(f"prepends BOS {bos!r}")
    return changes


def build_llava_from_llama(llama_dir, vision_tower_dir, out_dir, seed: int = 0, dtype=None,
                           fit_llava_v1_tokenizer: bool = False):
    """Put a LLaMA checkpoint into an official-format LLaVA with a fresh ``mlp2x_gelu`` projector.

    The language model's weights are copied unchanged (its text behaviour is the same); the
    projector is random from ``seed``; the vision tower comes from ``vision_tower_dir``.
    ``fit_llava_v1_tokenizer``: for a non-LLaMA tokenizer (SmolLM2's GPT-2 BPE) that LLaVA's
    ``train()`` with ``--version v1`` would otherwise fully mask, see ``fit_tokenizer_to_llava_v1``;
    a token added there gets an embedding row (the mean of the others).
    """
    import torch
    from transformers import CLIPVisionConfig, LlamaForCausalLM

    from llava.model.language_model.llava_llama import LlavaConfig, LlavaLlamaForCausalLM

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    vt = Path(vision_tower_dir).resolve()
    llama = LlamaForCausalLM.from_pretrained(str(llama_dir), torch_dtype=dtype or torch.float32)
    cfg_dict = llama.config.to_dict()
    for k in ("architectures", "model_type", "transformers_version", "_name_or_path",
              "torch_dtype", "_attn_implementation", "_commit_hash"):
        cfg_dict.pop(k, None)
    vcfg = CLIPVisionConfig.from_pretrained(str(vt))
    cfg_dict.update(_llava_fields(vt, vcfg.hidden_size))
    config = LlavaConfig(**cfg_dict)
    config.architectures = ["LlavaLlamaForCausalLM"]
    _seeded(seed)
    model = LlavaLlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(llama.state_dict(), strict=False)
    bad = [k for k in missing if "mm_projector" not in k and "vision_tower" not in k]
    if bad or unexpected:
        raise RuntimeError(f"LLaMA -> LLaVA copy failed: missing {bad}, unexpected {unexpected}")
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, p in sorted(model.get_model().mm_projector.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * (0.02 if p.ndim > 1 else 0.0))
    model.to(dtype or torch.float32)
    tokenizer_src, changes = llama_dir, []
    if fit_llava_v1_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(llama_dir), use_fast=True)
        changes = fit_tokenizer_to_llava_v1(tokenizer)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            old = model.get_input_embeddings().weight.shape[0]
            model.resize_token_embeddings(len(tokenizer))
            with torch.no_grad():
                for matrix in {id(m): m for m in (model.get_input_embeddings().weight,
                                                  model.get_output_embeddings().weight)}.values():
                    matrix[old:] = matrix[:old].mean(0, keepdim=True)
        tokenizer_src = out / "_fitted_tokenizer"
        tokenizer.save_pretrained(str(tokenizer_src))
    _save_llava(model, out, tokenizer_src)
    if fit_llava_v1_tokenizer:
        import shutil

        shutil.rmtree(tokenizer_src, ignore_errors=True)
    (out / "plast_tiny_origin.json").write_text(json.dumps(
        {"llama": str(Path(llama_dir).resolve()), "vision_tower": str(vt), "seed": seed,
         "tokenizer_changes": changes}, indent=1))
    return out


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join("/tmp", "plast_tiny_llava")
    print(make_tiny_llava(target))
