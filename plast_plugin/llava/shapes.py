"""The official LLaVA module tree at a given shape, built without weights or hub access.

``build_llava(shape, device)`` constructs LLaVA's own ``LlavaLlamaForCausalLM`` (language model,
``mlp2x_gelu`` projector) with a ``CLIPVisionModel`` tower from configs alone:

- ``device="meta"``: no memory at all, for counting FLOPs and parameters of the 7B shape on a
  laptop (``plast_plugin.llava.cost_model``);
- ``device="cuda"``: random weights created directly on the GPU in the requested dtype, for the
  GPU benchmark (no 2 x 27 GB of safetensors through the CPU, no fp32 copy).

LLaVA's ``CLIPVisionTower`` reads its config with ``CLIPVisionConfig.from_pretrained(name)`` and
its weights with ``CLIPVisionModel.from_pretrained`` in ``load_model()``. Here the config is
written to a temporary directory (so the tower's own constructor runs, offline), and
``load_model()`` is replaced by building ``CLIPVisionModel(config)`` on the target device: no
weight file and no hub is ever read.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ClipShape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    image_size: int
    patch_size: int

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def config_dict(self) -> dict:
        # openai/clip-vit-large-patch14-336's vision config, with these sizes.
        return {
            "model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"],
            "hidden_size": self.hidden, "intermediate_size": self.ffn, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "image_size": self.image_size, "patch_size": self.patch_size,
            "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 768,
            "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
        }


@dataclass(frozen=True)
class LlavaShape:
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    clip: ClipShape = field(repr=False)
    max_positions: int = 4096

    @property
    def image_tokens(self) -> int:
        return self.clip.image_tokens


CLIP_L_336 = ClipShape(layers=24, hidden=1024, ffn=4096, heads=16, image_size=336, patch_size=14)

SHAPES = {
    # liuhaotian/llava-v1.5-7b: Vicuna-7B (LLaMA-2 7B) + CLIP ViT-L/14-336 (576 image tokens).
    "llava7b": LlavaShape("llava7b", layers=32, hidden=4096, ffn=11008, heads=32, kv_heads=32, vocab=32000,
                          clip=CLIP_L_336),
    # liuhaotian/llava-v1.5-13b.
    "llava13b": LlavaShape("llava13b", layers=40, hidden=5120, ffn=13824, heads=40, kv_heads=40, vocab=32000,
                           clip=CLIP_L_336),
    # Same depth as 7B (so the 7B layer selections apply) at a width that runs on a CPU in seconds.
    "tiny": LlavaShape("tiny", layers=32, hidden=64, ffn=172, heads=4, kv_heads=4, vocab=512,
                       clip=ClipShape(layers=2, hidden=32, ffn=64, heads=2, image_size=56, patch_size=14),
                       max_positions=2048),
}


def get_shape(name: str) -> LlavaShape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}") from None


def llava_config(shape: LlavaShape, vision_tower: str, attn_implementation: str = "eager"):
    """LLaVA-1.5's config (``model_type llava_llama``) at ``shape``; ``vision_tower`` = a CLIP config dir."""
    from llava.model.language_model.llava_llama import LlavaConfig

    config = LlavaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, use_cache=False,
        mm_vision_tower=vision_tower, mm_hidden_size=shape.clip.hidden, mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_patch_merge_type="flat",
        mm_use_im_start_end=False, mm_use_im_patch_token=False, image_aspect_ratio="pad", use_mm_proj=True,
    )
    config._attn_implementation = attn_implementation
    return config


def build_llava(shape: LlavaShape | str, device="meta", dtype=None, attn_implementation: str = "eager"):
    """LLaVA's ``LlavaLlamaForCausalLM`` at ``shape`` on ``device``, vision tower attached and frozen
    (as ``train()`` leaves it); random weights (none at all on ``meta``). ``model.train()`` mode."""
    import torch
    from transformers import CLIPVisionModel

    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM

    if isinstance(shape, str):
        shape = get_shape(shape)
    dtype = dtype or torch.float32
    previous_dtype = torch.get_default_dtype()
    with tempfile.TemporaryDirectory(prefix="plast_clip_config_") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(shape.clip.config_dict()))
        config = llava_config(shape, tmp, attn_implementation)
        torch.set_default_dtype(dtype)  # parameters are created in dtype: no fp32 copy on the GPU
        try:
            with torch.device(device):
                model = LlavaLlamaForCausalLM(config)
                tower = model.get_model().get_vision_tower()
                clip_config = tower.cfg_only  # CLIP keeps its eager attention (no sdpa in 4.37)
                # What CLIPVisionTower.load_model() does, minus reading weights from a file/hub.
                tower.vision_tower = CLIPVisionModel(clip_config)
                tower.vision_tower.requires_grad_(False)
                tower.is_loaded = True
        finally:
            torch.set_default_dtype(previous_dtype)
    model.config.mm_vision_tower = "openai/clip-vit-large-patch14-336" if shape.clip == CLIP_L_336 else "random"
    model.train()
    return model


def multimodal_inputs(model, batch: int, seq: int, device="meta", seed: int = 0):
    """A LLaVA-1.5 training batch of ``seq`` tokens per sample: one image (its ``image_tokens``
    features) then ``seq - image_tokens`` text tokens, loss on the text.

    Returns ``(images, input_ids, labels)`` as LLaVA's ``prepare_inputs_labels_for_multimodal``
    would see them after splicing, and ``embed(model, images, input_ids)`` builds the spliced
    ``inputs_embeds`` the same way (image features from ``encode_images``, text from
    ``embed_tokens``); the splice itself is data-dependent indexing, which the meta device cannot run.
    """
    import torch

    from llava.constants import IGNORE_INDEX

    tower = model.get_model().get_vision_tower()
    image_tokens = tower.num_patches
    if seq <= image_tokens:
        raise ValueError(f"seq {seq} must exceed the {image_tokens} image tokens")
    size = tower.config.image_size
    dtype = next(model.parameters()).dtype
    if str(device) == "meta":
        images = torch.empty(batch, 3, size, size, device=device, dtype=dtype)
        input_ids = torch.empty(batch, seq - image_tokens, device=device, dtype=torch.long)
        labels = torch.empty(batch, seq, device=device, dtype=torch.long)
        return images, input_ids, labels
    gen = torch.Generator(device="cpu").manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device=device, dtype=dtype)
    input_ids = torch.randint(3, model.config.vocab_size, (batch, seq - image_tokens), generator=gen).to(device)
    labels = torch.cat([torch.full((batch, image_tokens), IGNORE_INDEX), input_ids.cpu()], dim=1).to(device)
    return images, input_ids, labels


def embed(model, images, input_ids):
    """``inputs_embeds`` [batch, image_tokens + text, d]: image features first, then the text."""
    import torch

    image_features = model.encode_images(images)
    text = model.get_model().embed_tokens(input_ids)
    return torch.cat([image_features.to(text.dtype), text], dim=1)
