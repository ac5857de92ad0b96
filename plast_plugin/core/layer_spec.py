"""Parsing of manual layer specs: `0-4`, `1,3,5`, `0-2,7`, and the ablations `first:K`,
`last:K`, `random:K` (seeded). Anything else is an error, never a guess."""

from __future__ import annotations

import random
import re

from plast_plugin.errors import PlastError


_ABLATION = re.compile(r"^(first|last|random):(\d+)$")
_MANUAL_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def is_layer_spec(text: str) -> bool:
    """True when `text` has the shape of a spec (it may still be out of range for a model)."""
    text = str(text).strip().replace(" ", "")
    return bool(_ABLATION.match(text)) or (bool(text) and all(_MANUAL_ITEM.match(item) for item in text.split(",")))


def parse_layer_spec(spec: str, num_layers: int, *, seed: int = 0) -> list[int]:
    """Sorted, unique layer indices that `spec` names for a model with `num_layers` layers."""
    if num_layers <= 0:
        raise PlastError(f"model has {num_layers} decoder layers; cannot select from it")
    text = str(spec).strip().replace(" ", "")
    ablation = _ABLATION.match(text)
    if ablation:
        kind, k = ablation.group(1), int(ablation.group(2))
        if not 1 <= k <= num_layers:
            raise PlastError(f"layer spec {spec!r}: K must be between 1 and {num_layers}")
        if kind == "first":
            return list(range(k))
        if kind == "last":
            return list(range(num_layers - k, num_layers))
        return sorted(random.Random(seed).sample(range(num_layers), k))
    if not text:
        raise PlastError("empty layer spec; give e.g. '0-4', '1,3,5', 'first:5' or 'auto'")
    layers: set[int] = set()
    for item in text.split(","):
        match = _MANUAL_ITEM.match(item)
        if not match:
            raise PlastError(
                f"malformed layer spec {spec!r} at {item!r}: use ranges and lists such as "
                f"'0-4', '1,3,5', '0-2,7', or 'first:K', 'last:K', 'random:K'"
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise PlastError(f"layer spec {spec!r}: range {item!r} runs backwards")
        if end >= num_layers:
            raise PlastError(
                f"layer spec {spec!r} names layer {end}, but the model has {num_layers} "
                f"decoder layers (valid: 0-{num_layers - 1})"
            )
        layers.update(range(start, end + 1))
    return sorted(layers)


def consecutive_runs(layers: list[int]) -> list[list[int]]:
    """[0,1,2,5,7,8] -> [[0,1,2], [5], [7,8]]: the sorted, unique layers in runs of consecutive indices."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return runs


def format_layer_spec(layers: list[int]) -> str:
    """[0,1,2,5] -> '0-2,5': the inverse of the manual form, how `plast ablate` names its layer sets."""
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in consecutive_runs(layers))
