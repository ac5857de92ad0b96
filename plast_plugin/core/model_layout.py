"""Where the decoder layers of a supported model live, and how their parameters are named.

PLAST needs the list of decoder layers and, in each layer, the FFN gate projection (whose
activation defines a neuron) and the attention block. The supported families all name these
`mlp.gate_proj`, `mlp.act_fn`, `self_attn`; only the path to the layer list differs, so the
known paths are tried in order. The one owner of the layer-list paths (for built models and
checkpoint tensor names alike), the trainable parts (`MODULE_PARTS`) and their name prefixes.
Vision encoders are never taken for the decoder: their block lists (Qwen-VL's `model.visual.blocks`,
SigLIP's `...vision_tower.encoder.layers`) are on none of these paths, and their blocks have no
`self_attn` (Qwen-VL: `attn`, InternVL: `attention`) or no gated `mlp.gate_proj` (SigLIP, CLIP: fc1/fc2).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal

if TYPE_CHECKING:
    from torch import nn
# torch is imported where a model is inspected, not here: the CLI reads MODULE_CHOICES while it
# builds its parser, before any command needs torch.

from plast_plugin.errors import PlastError

# Path to the decoder layer list, and the families that use it.
KNOWN_LAYER_PATHS: tuple[tuple[str, str], ...] = (
    ("model.layers", "LLaMA/Qwen2/Gemma3 causal LMs and the official LLaVA LlavaLlamaForCausalLM; "
     "Qwen2.5-VL's checkpoint files"),
    ("model.language_model.layers", "transformers LlavaForConditionalGeneration (>= 4.52, incl. 5.x); in 5.x "
     "also LLaVA-NeXT, LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL and InternVL"),
    ("language_model.model.layers", "transformers LlavaForConditionalGeneration (4.37-4.51); the checkpoint "
     "files of llava-hf, LLaVA-OneVision and InternVL"),
    ("model.language_model.model.layers", "wrapped multimodal models"),
    ("layers", "a bare decoder (LlamaModel and alike)"),
)


# What of each selected layer is trained, and the sub-module of a decoder layer each choice
# covers (None: the whole layer, i.e. attention + FFN + norms).
ModuleChoice = Literal["layer", "mlp", "attn"]
MODULE_CHOICES: tuple[str, ...] = typing.get_args(ModuleChoice)
MODULE_PARTS: dict[str, str | None] = {"layer": None, "mlp": "mlp", "attn": "self_attn"}


def layer_prefix(layers_path: str, index: int, modules: str = "layer") -> str:
    """Name prefix of the parameters of `modules` in layer `index`: 'model.layers.3.mlp.'."""
    if modules not in MODULE_CHOICES:
        raise PlastError(f"modules={modules!r} is not one of {', '.join(MODULE_CHOICES)}")
    part = MODULE_PARTS[modules]
    return f"{layers_path}.{index}." + (f"{part}." if part else "")


def layer_index(layers_path: str, name: str) -> int | None:
    """The decoder layer a parameter (or tensor) name belongs to, or None outside the layers."""
    head = layers_path + "."
    if not name.startswith(head):
        return None
    index = name[len(head):].split(".", 1)[0]
    return int(index) if index.isdigit() else None


def layers_path_of_names(names: Iterable[str]) -> str | None:
    """The known layer-list path that tensor names (e.g. a checkpoint file's) use, or None.
    Files may name layers differently from the model in memory (transformers >= 4.52 saves
    llava-hf as 'language_model.model.layers' but builds 'model.language_model.layers')."""
    names = list(names)
    for path, _family in KNOWN_LAYER_PATHS:
        pattern = re.compile(re.escape(path) + r"\.\d+\.")
        if any(pattern.match(n) for n in names):
            return path
    return None


def known_layer_paths() -> str:
    return ", ".join(path for path, _family in KNOWN_LAYER_PATHS)


@dataclass
class DecoderLayout:
    layers: nn.ModuleList
    path: str  # dotted path of the layer list from the model root, e.g. "model.layers"
    backbone: nn.Module  # the module owning `layers` (embeddings, layers, final norm)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def ffn_width(self) -> int:
        return self.layers[0].mlp.gate_proj.out_features

    @property
    def hidden_size(self) -> int:
        return self.layers[0].mlp.gate_proj.in_features

    def parameter_prefix(self, index: int, modules: str = "layer") -> str:
        return layer_prefix(self.path, index, modules)

    def layer_of(self, name: str) -> int | None:
        return layer_index(self.path, name)


def _is_gated_ffn_layer(layer: nn.Module) -> bool:
    from torch import nn

    mlp = getattr(layer, "mlp", None)
    return (
        isinstance(getattr(mlp, "gate_proj", None), nn.Linear)
        and getattr(mlp, "act_fn", None) is not None
        and getattr(layer, "self_attn", None) is not None
    )


def find_decoder_layers(model: nn.Module) -> DecoderLayout:
    """Locate the decoder layers of `model`, or raise naming every path that was tried."""
    from torch import nn

    for path, _family in KNOWN_LAYER_PATHS:
        try:
            layers = model.get_submodule(path)
        except AttributeError:  # no such path in this model
            continue
        if isinstance(layers, nn.ModuleList) and len(layers) > 0 and all(map(_is_gated_ffn_layer, layers)):
            backbone = model.get_submodule(path.rpartition(".")[0])  # "" is the model itself
            return DecoderLayout(layers, path, backbone)
    tried = "; ".join(f"'{path}' ({family})" for path, family in KNOWN_LAYER_PATHS)
    raise PlastError(
        f"{type(model).__name__} is not a supported architecture: PLAST looks for a "
        f"ModuleList of decoder layers, each with `self_attn` and a gated FFN `mlp.gate_proj` + "
        f"`mlp.act_fn`, at one of: {tried}"
    )


def model_architecture(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None) or []
    return architectures[0] if architectures else type(model).__name__
