"""Selection rules: from per-layer MSD (or a manual spec) to the set of layers to train."""

from __future__ import annotations

import math
import re

import torch

from plast_plugin.errors import PlastError
from plast_plugin.core.layer_spec import LayerSpecError, is_layer_spec, parse_layer_spec

STATISTIC_RULES = ("auto", "msd-above-mean", "msd-above:X", "msd-top:K", "msd-above-max:F")
_NUMBER = r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def is_statistic_rule(rule: str) -> bool:
    return rule in ("auto", "msd-above-mean") or bool(
        re.fullmatch(rf"msd-(above|top|above-max):{_NUMBER}", rule)
    )


def check_rule(rule: str, num_layers: int | None = None, seed: int = 0) -> None:
    """Raise a clear error for a rule that is neither a valid statistic rule nor a valid spec.
    Without ``num_layers`` only what needs no model is checked (the shape, K whole, F in (0, 1])."""
    rule = str(rule)
    if is_statistic_rule(rule):
        _check_rule_parameter(rule, num_layers)
        return
    if is_layer_spec(rule) or rule[:1].isdigit():  # digits: meant as a spec; say what is wrong in it
        parse_layer_spec(rule, num_layers if num_layers is not None else 10**9, seed=seed)
        return
    raise LayerSpecError(
        f"unknown selection rule {rule!r}; use one of {', '.join(STATISTIC_RULES)} or a layer spec "
        f"('0-4', '1,3,5', 'first:K', 'last:K', 'random:K')"
    )


def _check_rule_parameter(rule: str, num_layers: int | None) -> None:
    if ":" not in rule:
        return
    kind, value = rule.split(":", 1)
    number = float(value)
    if kind == "msd-top":
        if not re.fullmatch(r"\d+", value) or int(value) < 1:
            raise LayerSpecError(f"rule {rule!r}: K must be a whole number of layers, at least 1 (e.g. 'msd-top:3')")
        if num_layers is not None and int(value) > num_layers:
            raise LayerSpecError(f"rule {rule!r}: K must be between 1 and {num_layers}, the model's layer count")
    elif kind == "msd-above-max" and not 0.0 < number <= 1.0:
        raise LayerSpecError(f"rule {rule!r}: F is a fraction of the largest MSD, 0 < F <= 1 (e.g. 'msd-above-max:0.5')")


def select_by_statistic(msd: torch.Tensor, rule: str) -> list[int]:
    """Layers the rule picks. Undefined MSD (NaN: a statistic with nothing to compare, e.g. an
    empty activated set) is excluded: it neither counts in the mean nor can be chosen."""
    _check_rule_parameter(rule, len(msd))
    values = msd.double()
    defined = ~torch.isnan(values)
    if not bool(defined.any()):
        raise PlastError(
            f"rule {rule!r}: the statistic is undefined in every layer (no activated neurons to compare); "
            f"probe more questions, or use another --activated-set / --statistic"
        )
    if rule in ("auto", "msd-above-mean"):
        chosen = values > values[defined].mean()
    else:
        kind, value = rule.split(":", 1)
        number = float(value)
        if kind == "msd-above":
            chosen = values > number
        elif kind == "msd-above-max":
            chosen = values >= number * values[defined].max()
        else:
            k = int(value)
            if k > int(defined.sum()):
                raise LayerSpecError(f"rule {rule!r}: only {int(defined.sum())} layers have a defined MSD")
            chosen = torch.zeros_like(values, dtype=torch.bool)
            chosen[torch.topk(torch.where(defined, values, torch.full_like(values, -math.inf)), k).indices] = True
    return [i for i, c in enumerate((chosen & defined).tolist()) if c]


def keep_contiguous_shallow_block(layers: list[int]) -> list[int]:
    """[1,2,3,7,9] -> [1,2,3]: the run of consecutive layers starting at the shallowest."""
    if not layers:
        return []
    ordered = sorted(layers)
    block = [ordered[0]]
    for layer in ordered[1:]:
        if layer != block[-1] + 1:
            break
        block.append(layer)
    return block


def select_layers(msd: torch.Tensor | None, rule: str, num_layers: int, *, seed: int = 0,
                  contiguous_shallow: bool = False) -> list[int]:
    check_rule(rule, num_layers, seed)
    if is_statistic_rule(rule):
        if msd is None:
            raise PlastError(f"rule {rule!r} needs layer statistics")
        layers = select_by_statistic(msd, rule)
        if contiguous_shallow:
            layers = keep_contiguous_shallow_block(layers)
    else:
        # A spec is the user's explicit choice: taken exactly, never trimmed.
        layers = parse_layer_spec(rule, num_layers, seed=seed)
    if not layers:
        raise PlastError(f"rule {rule!r} selected no layer; refusing to train nothing (try another rule)")
    return layers
