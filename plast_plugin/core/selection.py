"""Selection rules: from per-layer MSD (or a manual spec) to the set of layers to train."""

from __future__ import annotations

import math

import torch

from plast_plugin.errors import PlastError
from plast_plugin.core.layer_spec import consecutive_runs, parse_layer_spec
from plast_plugin.core.options import SelectionOptions
from plast_plugin.core.rule import SelectionRule

# "Keep only the shallow block" has one default: the options'.
DEFAULT_CONTIGUOUS_SHALLOW: bool = SelectionOptions.__dataclass_fields__["contiguous_shallow"].default


def check_rule(rule: str | SelectionRule, num_layers: int, seed: int = 0) -> SelectionRule:
    """The parsed rule, checked against a model of ``num_layers`` decoder layers."""
    parsed = SelectionRule.parse(rule)
    parsed.check(num_layers, seed)
    return parsed


def select_by_statistic(msd: torch.Tensor, rule: str | SelectionRule) -> list[int]:
    """Layers the rule picks. Undefined MSD (NaN: a statistic with nothing to compare, e.g. an
    empty activated set) is excluded: it neither counts in the mean nor can be chosen."""
    rule = SelectionRule.parse(rule)
    if not rule.needs_statistics:
        raise PlastError(f"rule {rule.text!r} is a layer spec; it chooses no layers from statistics")
    rule.check(len(msd))
    values = msd.double()
    defined = ~torch.isnan(values)
    if not bool(defined.any()):
        raise PlastError(
            f"rule {rule.text!r}: the statistic is undefined in every layer (no activated neurons to compare); "
            f"probe more questions, or use another --activated-set / --statistic"
        )
    if rule.kind == "msd-above-mean":
        chosen = values > values[defined].mean()
    elif rule.kind == "msd-above":
        chosen = values > rule.number
    elif rule.kind == "msd-above-max":
        chosen = values >= rule.number * values[defined].max()
    else:
        k = rule.top_k
        if k > int(defined.sum()):
            raise PlastError(f"rule {rule.text!r}: only {int(defined.sum())} layers have a defined MSD")
        chosen = torch.zeros_like(values, dtype=torch.bool)
        chosen[torch.topk(torch.where(defined, values, torch.full_like(values, -math.inf)), k).indices] = True
    return [i for i, c in enumerate((chosen & defined).tolist()) if c]


def keep_contiguous_shallow_block(layers: list[int]) -> list[int]:
    """[1,2,3,7,9] -> [1,2,3]: the run of consecutive layers starting at the shallowest."""
    runs = consecutive_runs(layers)
    return runs[0] if runs else []


def select_layers(msd: torch.Tensor | None, rule: str | SelectionRule, num_layers: int, *, seed: int = 0,
                  contiguous_shallow: bool = DEFAULT_CONTIGUOUS_SHALLOW) -> list[int]:
    """The layers `rule` selects (a string is parsed here; pass options.selection_rule to skip that)."""
    rule = check_rule(rule, num_layers, seed)
    if rule.needs_statistics:
        if msd is None:
            raise PlastError(f"rule {rule.text!r} needs layer statistics")
        layers = select_by_statistic(msd, rule)
        if contiguous_shallow:
            layers = keep_contiguous_shallow_block(layers)
    else:
        # A spec is the user's explicit choice: taken exactly, never trimmed.
        layers = parse_layer_spec(rule.text, num_layers, seed=seed)
    if not layers:
        raise PlastError(f"rule {rule.text!r} selected no layer; refusing to train nothing (try another rule)")
    return layers
