"""The probe's reference count, for tests: run the model's own forward once and add, per decoder layer, how
often each FFN gate unit is positive at the positions marked ``counted``, read by a forward hook on the
layer's ``mlp.gate_proj`` (the LLaMA / Qwen2 FFN's activation input the probe thresholds)."""
from __future__ import annotations

from typing import Callable

import torch


def add_gate_counts(layers, counted: torch.Tensor, counts: torch.Tensor, forward: Callable[[], object]) -> None:
    """``counts[layer] += (gate_proj output > 0)`` summed over the ``counted`` positions of one ``forward()``."""
    def hook_for(index):
        def count(_module, _inputs, out):
            counts[index] += (out[0][counted] > 0).sum(0)  # returns None: the output is kept
        return count

    handles = [layer.mlp.gate_proj.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
