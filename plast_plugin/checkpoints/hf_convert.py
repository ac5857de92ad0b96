"""Convert an official LLaVA checkpoint (``llava_llama``) to transformers' llava-hf format.

Checkpoints written by the official LLaVA training script (``LlavaLlamaForCausalLM``,
transformers 4.37) do not load in a modern transformers. lmms-eval's ``llava_hf`` model runs
transformers' ``LlavaForConditionalGeneration``; :func:`convert_to_hf` writes that format.
It reads the safetensors / ``.bin`` files directly (no ``llava`` import), so it runs in the
eval env. ``plast export --to-hf`` calls it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from plast_plugin.atomic import check_new_directory, staged_directory
from plast_plugin.checkpoints.llava_text import LLAVA_CHAT_TEMPLATE, split_like_tokenizer_image_token
from plast_plugin.checkpoints.weights import CheckpointWeights
from plast_plugin.errors import PlastError
from plast_plugin.models.model_source import checkpoint_kind, local_dir

__all__ = ["convert_to_hf", "ConversionError", "LLAVA_V1_CHAT_TEMPLATE", "IMAGE_TOKEN"]

IMAGE_TOKEN = "<image>"
# LLaVA-1.5's `llava_v1` conversation (conv_mode vicuna_v1), images first in a user turn:
# "<system> USER: <image>\n<question> ASSISTANT: <answer></s>USER: ..."; see llava_text for the
# rules that let an evaluation protocol lay out another LLaVA prompt through it.
LLAVA_V1_CHAT_TEMPLATE = LLAVA_CHAT_TEMPLATE

_LLAMA_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
    "rope_theta", "rope_scaling", "attention_bias", "attention_dropout", "mlp_bias",
    "pretraining_tp", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
    "initializer_range",
)


class ConversionError(PlastError):
    """The checkpoint cannot be converted; the message says why and what to do."""


def _load_state_dict(folder: Path) -> dict:
    """Every tensor of a checkpoint folder (the conversion rewrites them all)."""
    with CheckpointWeights(folder, ConversionError) as weights:
        return weights.read_all()


def _vision_source(tower: str) -> Path:
    path = Path(tower).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(tower, allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except Exception as exc:
        raise ConversionError(
            f"the vision tower {tower!r} named by the checkpoint is neither a local folder nor "
            f"downloadable here ({exc}); pass --vision-tower <local CLIP folder> (vision_tower= in Python)") from exc


def _vision_weights(state: dict, tower_dir: Path) -> dict:
    """CLIP vision weights keyed as in ``CLIPVisionModel`` (``vision_model.*``)."""
    prefix = "model.vision_tower.vision_tower."
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if inside:
        return inside
    # A CLIP folder holds the text tower too: read only the vision tower's tensors.
    with CheckpointWeights(tower_dir, ConversionError) as clip:
        return clip.read_where(lambda name: name.startswith("vision_model."))


def _projector_keys(cfg: dict) -> dict[str, str]:
    kind = cfg.get("mm_projector_type", "linear")
    if kind != "mlp2x_gelu":
        raise ConversionError(
            f"mm_projector_type {kind!r}: transformers' LlavaForConditionalGeneration has a "
            "two-layer GELU projector, so only 'mlp2x_gelu' (LLaVA-1.5) converts")
    return {"model.mm_projector.0.": "model.multi_modal_projector.linear_1.",
            "model.mm_projector.2.": "model.multi_modal_projector.linear_2."}


def _image_processor(tower_dir: Path, image_size: int, pad: bool):
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    kwargs = {"size": {"shortest_edge": image_size},
              "crop_size": {"height": image_size, "width": image_size}}
    pre = tower_dir / "preprocessor_config.json"
    if pre.is_file():
        src = json.loads(pre.read_text())
        for key in ("size", "crop_size", "image_mean", "image_std", "resample", "rescale_factor",
                    "do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb"):
            if key in src:
                kwargs[key] = src[key]
        if isinstance(kwargs["size"], int):
            kwargs["size"] = {"shortest_edge": kwargs["size"]}
        if isinstance(kwargs["crop_size"], int):
            kwargs["crop_size"] = {"height": kwargs["crop_size"], "width": kwargs["crop_size"]}
    else:
        kwargs.update(image_mean=[0.48145466, 0.4578275, 0.40821073],
                      image_std=[0.26862954, 0.26130258, 0.27577711])
    return LlavaImageProcessorPil(do_pad=pad, **kwargs)


def convert_to_hf(checkpoint_dir, out_dir, *, vision_tower: str | None = None, dtype: str | None = None,
                  pad_vocab_to: int = 64, revision: str | None = None) -> Path:
    """Write the llava-hf (``LlavaForConditionalGeneration``) form of an official LLaVA checkpoint.

    Args:
        checkpoint_dir: folder written by the official LLaVA script (``config.json`` with
            ``model_type: llava_llama``, weights as safetensors or ``pytorch_model*.bin``,
            tokenizer). Vision tower weights are taken from the checkpoint
            (``model.vision_tower.vision_tower.*``) or, when it has none (LLaVA-1.5 releases),
            from the CLIP folder named by ``mm_vision_tower``.
        out_dir: output folder; afterwards ``LlavaForConditionalGeneration.from_pretrained``
            and ``AutoProcessor.from_pretrained`` load it, and lmms-eval runs it with
            ``--model llava_hf --model_args pretrained=<out_dir>,device_map=cpu`` (or ``cuda``).
        vision_tower: local CLIP vision folder overriding ``mm_vision_tower`` (needed offline
            when the checkpoint names a hub id such as ``openai/clip-vit-large-patch14-336``).
        dtype: ``float16`` / ``bfloat16`` / ``float32`` for the written weights (default: keep).
        pad_vocab_to: the embedding and LM-head rows are padded to a multiple of this, as
            transformers' own LLaVA conversion does.

    What it does: maps ``model.layers.*``/``model.embed_tokens``/``model.norm`` to
    ``model.language_model.*``, ``model.mm_projector.{0,2}`` to
    ``model.multi_modal_projector.linear_{1,2}``, the CLIP tower to ``model.vision_tower``;
    adds the ``<image>`` token to the tokenizer (its id becomes ``image_token_index``) and grows
    embeddings / LM head with the mean of the existing rows (logits of the original
    vocabulary are unchanged); sets ``vision_feature_layer`` from ``mm_vision_select_layer``
    and ``vision_feature_select_strategy`` from ``mm_vision_select_feature`` (``patch`` ->
    ``default``, drops CLS); writes a processor that pads images to a square when
    ``image_aspect_ratio`` is ``pad`` (as LLaVA-1.5 does) and a chat template reproducing
    LLaVA-1.5's ``llava_v1`` conversation. Returns ``out_dir``.
    """
    import torch
    from transformers import (AutoTokenizer, CLIPVisionConfig, GenerationConfig, LlamaConfig,
                              LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

    src = local_dir(str(checkpoint_dir), revision)  # a folder, or a hub id's snapshot in the HF cache
    out = Path(out_dir)
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{src}: no config.json; expected an official LLaVA checkpoint folder")
    from plast_plugin.json_files import read_json_object

    cfg = read_json_object(cfg_path, "checkpoint config")
    if checkpoint_kind(cfg) != "official-llava" or "mm_hidden_size" not in cfg:
        raise ConversionError(
            f"{cfg_path}: model_type {cfg.get('model_type')!r} is not an official LLaVA-LLaMA "
            "checkpoint (model_type llava_llama with mm_* fields)")
    if cfg.get("mm_use_im_start_end"):
        raise ConversionError(f"{cfg_path}: mm_use_im_start_end=true has no llava-hf equivalent")
    aspect = cfg.get("image_aspect_ratio", "pad")
    if aspect not in ("pad", "square", None):
        raise ConversionError(
            f"{cfg_path}: image_aspect_ratio {aspect!r} (LLaVA-NeXT style) has no LlavaForConditionalGeneration "
            "equivalent; only LLaVA-1.5's 'pad' (or 'square') converts")
    if src.resolve() == out.resolve():
        raise ConversionError(f"{out}: write the llava-hf copy to a different folder than the checkpoint")
    check_new_directory(out)
    proj_map = _projector_keys(cfg)
    tower_name = vision_tower or cfg.get("mm_vision_tower") or cfg.get("vision_tower")
    if not tower_name:
        raise ConversionError(f"{cfg_path}: no mm_vision_tower; pass --vision-tower <CLIP folder> (vision_tower= in Python)")
    tower_dir = _vision_source(str(tower_name))
    vision_config = CLIPVisionConfig.from_pretrained(str(tower_dir))
    select = cfg.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ConversionError(f"{cfg_path}: mm_vision_select_feature {select!r} is not supported")

    state = _load_state_dict(src)
    vision = _vision_weights(state, tower_dir)
    if not vision:
        raise ConversionError(f"{src}: no vision tower weights in the checkpoint nor in {tower_dir}")

    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():  # it reads the llava_llama config.json, unknown to transformers
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(str(src))
    finally:
        hf_logging.set_verbosity(verbosity)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer = split_like_tokenizer_image_token(tokenizer)  # the prompt's ids as LLaVA's tokenizer_image_token
    image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    embed = state["model.embed_tokens.weight"]
    lm_head = state.get("lm_head.weight", embed)
    old_vocab = embed.shape[0]
    new_vocab = max(old_vocab, len(tokenizer))
    if new_vocab > old_vocab and pad_vocab_to > 1:
        new_vocab = int(math.ceil(new_vocab / pad_vocab_to) * pad_vocab_to)

    def grow(weight):
        if weight.shape[0] == new_vocab:
            return weight
        extra = weight.float().mean(dim=0, keepdim=True).to(weight.dtype).expand(new_vocab - weight.shape[0], -1)
        return torch.cat([weight, extra], dim=0)

    text_kwargs = {k: cfg[k] for k in _LLAMA_KEYS if cfg.get(k) is not None}
    text_kwargs["vocab_size"] = new_vocab
    if tokenizer.pad_token_id is not None:
        text_kwargs["pad_token_id"] = tokenizer.pad_token_id
    text_config = LlamaConfig(**text_kwargs)
    patch = vision_config.patch_size
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_index,
        image_seq_length=(vision_config.image_size // patch) ** 2,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default" if select == "patch" else "full",
        vision_feature_layer=int(cfg.get("mm_vision_select_layer", -2)),
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )
    config.architectures = ["LlavaForConditionalGeneration"]

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    buffers = {n for n, _ in model.named_buffers()}
    wanted = set(model.state_dict()) - buffers

    new_state = {"model.language_model.embed_tokens.weight": grow(embed), "lm_head.weight": grow(lm_head)}
    for key, value in state.items():
        if key.startswith(("model.vision_tower.", "model.embed_tokens.")) or key == "lm_head.weight":
            continue
        if key.endswith("rotary_emb.inv_freq"):
            continue
        mapped = next((new + key[len(old):] for old, new in proj_map.items() if key.startswith(old)), None)
        if mapped is None and key.startswith("model.mm_projector."):
            raise ConversionError(f"{src}: unexpected projector weight {key}")
        if mapped is None and key.startswith("model."):
            mapped = "model.language_model." + key[len("model."):]
        if mapped is None:
            raise ConversionError(f"{src}: weight {key} has no place in LlavaForConditionalGeneration")
        new_state[mapped] = value
    for key, value in vision.items():
        for candidate in (f"model.vision_tower.{key}", f"model.vision_tower.{key.removeprefix('vision_model.')}"):
            if candidate in wanted:
                new_state[candidate] = value
                break
        # weights of the tower LLaVA never uses (e.g. a CLIP head) are dropped
    missing = sorted(wanted - set(new_state))
    extra = sorted(set(new_state) - wanted)
    if missing or extra:
        raise ConversionError(
            f"{src}: weights do not match LlavaForConditionalGeneration: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    target_dtype = getattr(torch, dtype) if dtype else embed.dtype
    new_state = {k: v.to(target_dtype).contiguous() for k, v in new_state.items()}
    model.load_state_dict(new_state, strict=False, assign=True)
    # buffers (rotary frequencies, CLIP position ids) are recomputed outside the meta device
    for name, module in model.named_modules():
        for bname, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:
                module._buffers[bname] = None
    config.dtype = target_dtype
    # Built beside out_dir and renamed into place: a failed conversion leaves no half folder.
    with staged_directory(out, "--out") as stage:
        model.save_pretrained(str(stage), state_dict=new_state, safe_serialization=True)

        processor = LlavaProcessor(
            image_processor=_image_processor(tower_dir, vision_config.image_size,
                                             pad=aspect == "pad"),
            tokenizer=tokenizer,
            patch_size=patch,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            num_additional_image_tokens=1,  # CLIP's CLS token
            chat_template=LLAVA_V1_CHAT_TEMPLATE,
        )
        tokenizer.chat_template = LLAVA_V1_CHAT_TEMPLATE
        processor.save_pretrained(str(stage))
        GenerationConfig(bos_token_id=text_config.bos_token_id, eos_token_id=text_config.eos_token_id,
                         pad_token_id=text_config.pad_token_id).save_pretrained(str(stage))
        (stage / "plast_conversion.json").write_text(json.dumps({
            "source": str(src.resolve()),
            "vision_tower": str(tower_dir),
            "vision_weights_from": "checkpoint" if any(k.startswith("model.vision_tower.vision_tower.") for k in state)
            else str(tower_dir),
            "original_vocab_size": old_vocab,
            "vocab_size": new_vocab,
            "image_token_index": image_token_index,
        }, indent=1))
    return out
