"""Where the decoder layers of a supported model live.

PLAST needs three things from a model: its list of decoder layers, and in each layer the FFN
gate projection (whose activation defines a neuron) and the attention block. The supported
families all name these the same way (`mlp.gate_proj`, `mlp.act_fn`, `self_attn`); only the
path to the layer list differs, so the layout is found by trying the known paths in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from plast_plugin.errors import PlastError

# Path to the decoder layer list, and the families that use it.
KNOWN_LAYER_PATHS: tuple[tuple[str, str], ...] = (
    ("model.layers", "LLaMA/Qwen2/Gemma3 causal LMs and the official LLaVA LlavaLlamaForCausalLM"),
    ("model.language_model.layers", "transformers LlavaForConditionalGeneration (>= 4.52, incl. 5.x)"),
    ("language_model.model.layers", "transformers LlavaForConditionalGeneration (4.37-4.51)"),
    ("model.language_model.model.layers", "wrapped multimodal models"),
    ("layers", "a bare decoder (LlamaModel and alike)"),
)


class UnsupportedModelError(PlastError, TypeError):
    pass


@dataclass
class DecoderLayout:
    layers: nn.ModuleList
    path: str  # dotted path of the layer list from the model root, e.g. "model.layers"
    backbone: nn.Module  # the module owning `layers` (embeddings, layers, final norm)
    backbone_path: str

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def ffn_width(self) -> int:
        return self.layers[0].mlp.gate_proj.out_features

    @property
    def hidden_size(self) -> int:
        return self.layers[0].mlp.gate_proj.in_features

    def parameter_prefix(self, index: int) -> str:
        return f"{self.path}.{index}."


def _resolve(root: nn.Module, path: str):
    node = root
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _is_gated_ffn_layer(layer: nn.Module) -> bool:
    mlp = getattr(layer, "mlp", None)
    return (
        isinstance(getattr(mlp, "gate_proj", None), nn.Linear)
        and getattr(mlp, "act_fn", None) is not None
        and getattr(layer, "self_attn", None) is not None
    )


def find_decoder_layers(model: nn.Module) -> DecoderLayout:
    """Locate the decoder layers of `model`, or raise naming every path that was tried."""
    for path, _family in KNOWN_LAYER_PATHS:
        layers = _resolve(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            if all(_is_gated_ffn_layer(layer) for layer in layers):
                backbone_path = path.rsplit(".", 1)[0] if "." in path else ""
                backbone = _resolve(model, backbone_path) if backbone_path else model
                return DecoderLayout(layers, path, backbone, backbone_path)
    tried = "; ".join(f"'{path}' ({family})" for path, family in KNOWN_LAYER_PATHS)
    raise UnsupportedModelError(
        f"{type(model).__name__} is not a supported architecture: PLAST looks for a "
        f"ModuleList of decoder layers, each with `self_attn` and a gated FFN `mlp.gate_proj` + "
        f"`mlp.act_fn`, at one of: {tried}"
    )


def model_architecture(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None) or []
    return architectures[0] if architectures else type(model).__name__
