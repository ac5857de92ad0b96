"""Convert an official LLaVA checkpoint (``llava_llama``) to transformers' llava-hf format.

Checkpoints of the official LLaVA training script (transformers 4.37) do not load in a modern
transformers, whose ``LlavaForConditionalGeneration`` lmms-eval's ``llava_hf`` model runs.
:func:`convert_to_hf` (``plast export --to-hf``) reads the weight files directly (no ``llava``
import, so it runs in the eval env), renames the tensors, adds the ``<image>`` token (new
embedding rows are the mean of the existing ones, so the original vocabulary's logits are
unchanged) and writes a processor that pads images to a square as LLaVA-1.5 does, with its chat
template.
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
from plast_plugin.models.model_source import checkpoint_kind, local_dir, read_config

IMAGE_TOKEN = "<image>"

_LLAMA_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
    "rope_theta", "rope_scaling", "attention_bias", "attention_dropout", "mlp_bias",
    "pretraining_tp", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
    "initializer_range",
)


def _vision_source(tower: str) -> Path:
    path = Path(tower).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(tower, allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except Exception as exc:
        raise PlastError(
            f"the vision tower {tower!r} named by the checkpoint is neither a local folder nor "
            f"downloadable here ({exc}); pass --vision-tower <local CLIP folder> (vision_tower= in Python)") from exc


def _vision_weights(state: dict, tower_dir: Path) -> tuple[dict, str]:
    """CLIP vision weights keyed as in ``CLIPVisionModel`` (``vision_model.*``), and where from."""
    prefix = "model.vision_tower.vision_tower."
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if inside:
        return inside, "checkpoint"
    # A CLIP folder holds the text tower too: read only the vision tower's tensors.
    with CheckpointWeights(tower_dir) as clip:
        return clip.read_where(lambda name: name.startswith("vision_model.")), str(tower_dir)


def _projector_keys(cfg: dict) -> dict[str, str]:
    kind = cfg.get("mm_projector_type", "linear")
    if kind != "mlp2x_gelu":
        raise PlastError(
            f"mm_projector_type {kind!r}: transformers' LlavaForConditionalGeneration has a "
            "two-layer GELU projector, so only 'mlp2x_gelu' (LLaVA-1.5) converts")
    return {"model.mm_projector.0.": "model.multi_modal_projector.linear_1.",
            "model.mm_projector.2.": "model.multi_modal_projector.linear_2."}


def _image_processor(tower_dir: Path, image_size: int, pad: bool):
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    kwargs = {"size": {"shortest_edge": image_size},
              "crop_size": {"height": image_size, "width": image_size}}
    pre = tower_dir / "preprocessor_config.json"
    if pre.is_file():
        src = json.loads(pre.read_text())
        keys = ("size", "crop_size", "image_mean", "image_std", "resample", "rescale_factor",
                "do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb")
        kwargs.update({key: src[key] for key in keys if key in src})
        if isinstance(kwargs["size"], int):
            kwargs["size"] = {"shortest_edge": kwargs["size"]}
        if isinstance(kwargs["crop_size"], int):
            kwargs["crop_size"] = {"height": kwargs["crop_size"], "width": kwargs["crop_size"]}
    else:
        kwargs.update(image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)  # CLIP's, as LLaVA's tower
    return LlavaImageProcessorPil(do_pad=pad, **kwargs)


def require_current_llava_layout() -> None:
    """The converter writes transformers' current llava-hf layout (``model.language_model.*``,
    from the ``LlavaModel`` refactor on); the training env's older transformers cannot build it and
    would end in a dump of mismatched parameter names. Say where to run it instead."""
    import transformers

    if not hasattr(transformers, "LlavaModel"):
        raise PlastError(
            f"plast export --to-hf needs the eval env's transformers (this one is {transformers.__version__}, "
            "which has the old llava-hf layout: the training env); run it there, e.g. "
            ".envs/eval/bin/plast export CHECKPOINT --to-hf --out DIR")


def convert_to_hf(checkpoint_dir, out_dir, *, vision_tower: str | None = None, dtype: str | None = None,
                  pad_vocab_to: int = 64, revision: str | None = None) -> Path:
    """Write the llava-hf form of an official LLaVA checkpoint into ``out_dir`` (returned), which
    lmms-eval runs with ``--model llava_hf --model_args pretrained=<out_dir>``.

    The vision tower's weights come from the checkpoint or, when it has none (LLaVA-1.5 releases),
    from the CLIP folder named by ``mm_vision_tower``; ``vision_tower`` overrides that folder
    (needed offline when the checkpoint names a hub id). ``dtype`` (``float16`` / ``bfloat16`` /
    ``float32``) converts the written weights (default: keep); the embedding and LM-head rows are
    padded to a multiple of ``pad_vocab_to``, as transformers' own LLaVA conversion does.
    """
    require_current_llava_layout()
    import torch
    from transformers import CLIPVisionConfig

    src = local_dir(str(checkpoint_dir), revision)  # a folder, or a hub id's snapshot in the HF cache
    out = Path(out_dir)
    cfg, cfg_path = _checked_config(src, out)
    proj_map = _projector_keys(cfg)
    tower_name = vision_tower or cfg.get("mm_vision_tower") or cfg.get("vision_tower")
    if not tower_name:
        raise PlastError(f"{cfg_path}: no mm_vision_tower; pass --vision-tower <CLIP folder> (vision_tower= in Python)")
    tower_dir = _vision_source(str(tower_name))
    vision_config = CLIPVisionConfig.from_pretrained(str(tower_dir))
    select = cfg.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise PlastError(f"{cfg_path}: mm_vision_select_feature {select!r} is not supported")

    with CheckpointWeights(src) as weights:
        state = weights.read_all()
    vision, vision_from = _vision_weights(state, tower_dir)
    if not vision:
        raise PlastError(f"{src}: no vision tower weights in the checkpoint nor in {tower_dir}")
    tokenizer = _tokenizer_with_image_token(src)
    embed = state["model.embed_tokens.weight"]
    new_vocab = _vocab_size(embed.shape[0], len(tokenizer), pad_vocab_to)
    config = _llava_config(cfg, vision_config, tokenizer, new_vocab, select)
    target_dtype = getattr(torch, dtype) if dtype else embed.dtype
    model, new_state = _converted_model(config, state, vision, proj_map, src, new_vocab, target_dtype)
    # Built beside out_dir and renamed into place: a failed conversion leaves no half folder.
    with staged_directory(out, "--out") as stage:
        model.save_pretrained(str(stage), state_dict=new_state, safe_serialization=True)
        _save_processor(stage, tokenizer, config, tower_dir, pad=cfg.get("image_aspect_ratio", "pad") == "pad")
        (stage / "plast_conversion.json").write_text(json.dumps({
            "source": str(src.resolve()),
            "vision_tower": str(tower_dir),
            "vision_weights_from": vision_from,
            "original_vocab_size": embed.shape[0],
            "vocab_size": new_vocab,
            "image_token_index": config.image_token_index,
        }, indent=1))
    return out


def _checked_config(src: Path, out: Path) -> tuple[dict, Path]:
    """The checkpoint's config, refused unless it is an official LLaVA-1.5 that converts, and ``out``
    checked to be a new folder apart from the checkpoint."""
    cfg_path = src / "config.json"
    cfg = read_config(str(src))  # refuses a folder without config.json
    if checkpoint_kind(cfg) != "official-llava" or "mm_hidden_size" not in cfg:
        raise PlastError(
            f"{cfg_path}: model_type {cfg.get('model_type')!r} is not an official LLaVA-LLaMA "
            "checkpoint (model_type llava_llama with mm_* fields)")
    if cfg.get("mm_use_im_start_end"):
        raise PlastError(f"{cfg_path}: mm_use_im_start_end=true has no llava-hf equivalent")
    aspect = cfg.get("image_aspect_ratio", "pad")
    if aspect not in ("pad", "square", None):
        raise PlastError(
            f"{cfg_path}: image_aspect_ratio {aspect!r} (LLaVA-NeXT style) has no LlavaForConditionalGeneration "
            "equivalent; only LLaVA-1.5's 'pad' (or 'square') converts")
    if src.resolve() == out.resolve():
        raise PlastError(f"{out}: write the llava-hf copy to a different folder than the checkpoint")
    check_new_directory(out)
    return cfg, cfg_path


def _tokenizer_with_image_token(src: Path):
    """The checkpoint's tokenizer with the ``<image>`` token and a pad token added where missing."""
    from transformers import AutoTokenizer
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
    return split_like_tokenizer_image_token(tokenizer)  # the prompt's ids as LLaVA's tokenizer_image_token


def _vocab_size(old_vocab: int, tokens: int, pad_vocab_to: int) -> int:
    """Rows of the converted embedding: room for every token, padded to a multiple when it grows."""
    new_vocab = max(old_vocab, tokens)
    if new_vocab > old_vocab and pad_vocab_to > 1:
        new_vocab = int(math.ceil(new_vocab / pad_vocab_to) * pad_vocab_to)
    return new_vocab


def _grow(weight, rows: int):
    """``weight`` with rows appended up to ``rows``, each the mean of the existing ones."""
    import torch

    if weight.shape[0] == rows:
        return weight
    extra = weight.float().mean(dim=0, keepdim=True).to(weight.dtype).expand(rows - weight.shape[0], -1)
    return torch.cat([weight, extra], dim=0)


def _llava_config(cfg: dict, vision_config, tokenizer, vocab: int, select: str):
    from transformers import LlamaConfig, LlavaConfig

    text_kwargs = {k: cfg[k] for k in _LLAMA_KEYS if cfg.get(k) is not None}
    text_kwargs["vocab_size"] = vocab
    if tokenizer.pad_token_id is not None:
        text_kwargs["pad_token_id"] = tokenizer.pad_token_id
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=LlamaConfig(**text_kwargs),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default" if select == "patch" else "full",
        vision_feature_layer=int(cfg.get("mm_vision_select_layer", -2)),
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def _renamed_weights(state: dict, vision: dict, proj_map: dict, src: Path, wanted: set, vocab: int) -> dict:
    """The checkpoint's tensors under LlavaForConditionalGeneration's names; refused unless they are
    exactly the ``wanted`` ones."""
    embed = state["model.embed_tokens.weight"]
    lm_head = state.get("lm_head.weight", embed)
    new_state = {"model.language_model.embed_tokens.weight": _grow(embed, vocab), "lm_head.weight": _grow(lm_head, vocab)}
    for key, value in state.items():
        if (key.startswith(("model.vision_tower.", "model.embed_tokens.")) or key == "lm_head.weight"
                or key.endswith("rotary_emb.inv_freq")):  # placed separately, or recomputed
            continue
        mapped = next((new + key[len(old):] for old, new in proj_map.items() if key.startswith(old)), None)
        if mapped is None and key.startswith("model.mm_projector."):
            raise PlastError(f"{src}: unexpected projector weight {key}")
        if mapped is None and key.startswith("model."):
            mapped = "model.language_model." + key[len("model."):]
        if mapped is None:
            raise PlastError(f"{src}: weight {key} has no place in LlavaForConditionalGeneration")
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
        raise PlastError(
            f"{src}: weights do not match LlavaForConditionalGeneration: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    return new_state


def _converted_model(config, state: dict, vision: dict, proj_map: dict, src: Path, vocab: int, dtype):
    """The LlavaForConditionalGeneration holding the renamed tensors in ``dtype``, and those tensors."""
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    wanted = set(model.state_dict()) - {n for n, _ in model.named_buffers()}
    new_state = _renamed_weights(state, vision, proj_map, src, wanted, vocab)
    new_state = {k: v.to(dtype).contiguous() for k, v in new_state.items()}
    model.load_state_dict(new_state, strict=False, assign=True)
    # buffers (rotary frequencies, CLIP position ids) are recomputed outside the meta device
    for module in model.modules():
        for bname, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:
                module._buffers[bname] = None
    config.dtype = dtype
    return model, new_state


def _save_processor(stage: Path, tokenizer, config, tower_dir: Path, pad: bool) -> None:
    """The processor (images padded to a square for LLaVA-1.5's 'pad'), LLaVA-1.5's chat template
    and the generation config."""
    from transformers import GenerationConfig, LlavaProcessor

    processor = LlavaProcessor(
        image_processor=_image_processor(tower_dir, config.vision_config.image_size, pad=pad),
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    processor.save_pretrained(str(stage))
    text = config.text_config
    GenerationConfig(bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id,
                     pad_token_id=text.pad_token_id).save_pretrained(str(stage))
