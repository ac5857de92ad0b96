"""Selection rules: from per-layer MSD (or a manual spec) to the set of layers to train."""

from __future__ import annotations

import re

import torch

from .layer_spec import LayerSpecError, is_layer_spec, parse_layer_spec

STATISTIC_RULES = ("auto", "msd-above-mean", "msd-above:X", "msd-top:K", "msd-above-max:F")
_NUMBER = r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def is_statistic_rule(rule: str) -> bool:
    return rule in ("auto", "msd-above-mean") or bool(
        re.fullmatch(rf"msd-(above|top|above-max):{_NUMBER}", rule)
    )


def check_rule(rule: str, num_layers: int, seed: int = 0) -> None:
    """Raise a clear error for a rule that is neither a statistic rule nor a valid spec."""
    if is_statistic_rule(rule):
        return
    if is_layer_spec(rule) or rule[:1].isdigit():  # digits: meant as a spec; say what is wrong in it
        parse_layer_spec(rule, num_layers, seed=seed)
        return
    raise LayerSpecError(
        f"unknown selection rule {rule!r}; use one of {', '.join(STATISTIC_RULES)} or a layer spec "
        f"('0-4', '1,3,5', 'first:K', 'last:K', 'random:K')"
    )


def select_by_statistic(msd: torch.Tensor, rule: str) -> list[int]:
    values = msd.double()
    if rule in ("auto", "msd-above-mean"):
        chosen = values > values.mean()
    else:
        kind, value = rule.split(":", 1)
        number = float(value)
        if kind == "msd-above":
            chosen = values > number
        elif kind == "msd-above-max":
            chosen = values >= number * values.max()
        else:
            k = int(number)
            if not 1 <= k <= len(values):
                raise LayerSpecError(f"rule {rule!r}: K must be between 1 and {len(values)}")
            chosen = torch.zeros_like(values, dtype=torch.bool)
            chosen[torch.topk(values, k).indices] = True
    return [i for i, c in enumerate(chosen.tolist()) if c]


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
            raise ValueError(f"rule {rule!r} needs layer statistics")
        layers = select_by_statistic(msd, rule)
        if contiguous_shallow:
            layers = keep_contiguous_shallow_block(layers)
    else:
        # A spec is the user's explicit choice: taken exactly, never trimmed.
        layers = parse_layer_spec(rule, num_layers, seed=seed)
    if not layers:
        raise ValueError(f"rule {rule!r} selected no layer; refusing to train nothing")
    return layers
