"""Partial freezing: only the selected decoder layers stay trainable.

Everything else (vision tower, projector, embeddings, LM head, other layers) is frozen. Counts
use `ds_numel` when present, because under DeepSpeed ZeRO-3 a parameter's local tensor is an
empty partition and `numel()` would report 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from torch import nn

from plast_plugin.errors import PlastError
from plast_plugin.core.model_layout import find_decoder_layers


def parameter_count(param: nn.Parameter) -> int:
    return int(getattr(param, "ds_numel", None) or param.numel())


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, correct under ZeRO-3 partitioning."""
    counts = [(parameter_count(p), p.requires_grad) for p in model.parameters()]
    return sum(n for n, trains in counts if trains), sum(n for n, _ in counts)


def plast_parameter_names(model: nn.Module, layers: Iterable[int], modules: str = "layer") -> set[str]:
    """Names (as in `model.named_parameters()`) of the parameters PLAST trains."""
    layout = find_decoder_layers(model)
    wanted = sorted(set(layers))
    out_of_range = [i for i in wanted if not 0 <= i < layout.num_layers]
    if out_of_range:
        raise PlastError(
            f"layers {out_of_range} do not exist: the model has {layout.num_layers} decoder layers "
            f"(valid: 0-{layout.num_layers - 1})"
        )
    if not wanted:
        raise PlastError("no layers selected: refusing to freeze the whole model")
    prefixes = tuple(layout.parameter_prefix(i, modules) for i in wanted)
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


@dataclass
class TrainableReport:
    layers: list[int]
    modules: str
    trainable_params: int
    total_params: int
    per_layer: dict[int, int] = field(default_factory=dict)
    trainable_names: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def format_table(self) -> str:
        lines = [f"PLAST trainable parameters (modules={self.modules})", f"{'layer':>7} {'params':>14}"]
        lines += [f"{layer:>7} {count:>14,}" for layer, count in sorted(self.per_layer.items())]
        lines.append(
            f"{'total':>7} {self.trainable_params:>14,} of {self.total_params:,} "
            f"({100 * self.fraction:.2f}%)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"layers": self.layers, "modules": self.modules, "trainable_params": self.trainable_params,
                "total_params": self.total_params, "fraction": self.fraction}


def trainable_fraction(model: nn.Module, layers: Sequence[int], modules: str = "layer") -> TrainableReport:
    """What `freeze_for_plast` would report, without changing `requires_grad`."""
    layout = find_decoder_layers(model)
    names = plast_parameter_names(model, layers, modules)
    total = trainable = 0
    per_layer: dict[int, int] = {}
    for name, param in model.named_parameters():
        n = parameter_count(param)
        total += n
        if name in names:
            trainable += n
            index = layout.layer_of(name)
            per_layer[index] = per_layer.get(index, 0) + n
    return TrainableReport(sorted(set(layers)), modules, trainable, total, per_layer, sorted(names))


def freeze_for_plast(model: nn.Module, layers: Sequence[int], modules: str = "layer") -> TrainableReport:
    """Freeze every parameter of `model` except those of the selected layers' `modules`."""
    report = trainable_fraction(model, layers, modules)
    names = set(report.trainable_names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    return report
