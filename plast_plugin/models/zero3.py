"""DeepSpeed ZeRO-3 partitions a model's parameters across ranks (a local tensor is an empty
shard): code that reads whole weights before the engine exists gathers them first."""

from __future__ import annotations

import contextlib

from plast_plugin.core import ranks
from plast_plugin.core.training_record import base_fingerprint


def is_zero3(model) -> bool:
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled() or any(hasattr(p, "ds_id") for p in model.parameters())


def gathered(model, names=None):
    """Context in which the named parameters of ``model`` (all when ``names`` is None) are whole.
    Under ZeRO-3 it is a collective: every rank must enter it. Without ZeRO-3 it does nothing."""
    wanted = None if names is None else set(names)
    params = [p for n, p in model.named_parameters() if wanted is None or n in wanted]
    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def gathered_fingerprint(model, names, file_names: dict[str, str] | None = None) -> dict | None:
    """The base fingerprint of ``names`` on rank 0 (None elsewhere), hashed before any step."""
    with gathered(model, names):  # a collective under ZeRO-3: every rank
        return base_fingerprint(model, names, file_names) if ranks.rank() == 0 else None
