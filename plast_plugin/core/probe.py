"""The probe: streamed counts of activated FFN neurons per group, layer and neuron.

A forward hook on each decoder layer's `mlp.gate_proj` sees the gate pre-activation z of every
token. A neuron is activated on a token when act_fn(z) > 0; for SiLU/GELU/ReLU that is z > 0,
so the hook skips recomputing the activation. Only the counted positions are kept, summed into
an int64 [groups, layers, neurons] tensor on the model's device: nothing per token is stored,
so memory does not grow with the number of questions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from plast_plugin.core import ranks
from plast_plugin.core.model_layout import DecoderLayout

def _is_sign_preserving(act_fn: nn.Module) -> bool:
    """Whether act(z) > 0 exactly when z > 0."""
    name = type(act_fn).__name__.lower()
    return isinstance(act_fn, (nn.SiLU, nn.GELU, nn.ReLU)) or any(k in name for k in ("silu", "swish", "gelu", "relu"))


@dataclass
class ProbeCounts:
    counts: torch.Tensor  # int64 [groups, layers, neurons]
    tokens: torch.Tensor  # int64 [groups]


class ActivationCounter:
    """Context manager: while active, every forward through the layers adds to the counts the
    positions set by `set_batch`."""

    def __init__(self, layout: DecoderLayout, num_groups: int, device: torch.device):
        self.layout = layout
        self.counts = torch.zeros((num_groups, layout.num_layers, layout.ffn_width), dtype=torch.long, device=device)
        self.tokens = torch.zeros(num_groups, dtype=torch.long, device=device)
        self._selected: list[tuple[int, torch.Tensor]] = []
        self._handles: list = []

    def set_batch(self, count_mask: torch.Tensor, groups: torch.Tensor) -> None:
        """count_mask [B, T] over the sequence the decoder sees; groups [B]."""
        device = self.counts.device
        count_mask, groups = count_mask.to(device), groups.to(device)
        self._selected = []
        for group in torch.unique(groups).tolist():
            rows = (groups == group).view(-1, 1)
            flat = torch.nonzero((count_mask & rows).reshape(-1)).view(-1)
            self._selected.append((group, flat))
            self.tokens[group] += flat.numel()

    def _hook(self, index: int, act_fn: nn.Module):
        exact = _is_sign_preserving(act_fn)

        def hook(_module, _inputs, output):
            flat = output.reshape(-1, output.shape[-1])
            for group, positions in self._selected:
                picked = flat.index_select(0, positions)
                if not exact:
                    picked = act_fn(picked)
                self.counts[group, index] += (picked > 0).sum(0)

        return hook

    def __enter__(self) -> "ActivationCounter":
        for index, layer in enumerate(self.layout.layers):
            self._handles.append(layer.mlp.gate_proj.register_forward_hook(self._hook(index, layer.mlp.act_fn)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def run_probe(family, layout: DecoderLayout, batches: list, num_groups: int, *, positions: str,
              progress: bool = True, description: str = "probing") -> ProbeCounts:
    """Run `batches` (PaddedBatch) through the model and count. Under torch.distributed each rank
    takes every world_size-th batch and the counts are summed over ranks, so the result equals
    a single-process run."""
    rank, world = ranks.rank(), ranks.world_size()
    mine = batches[rank::world]
    model = family.model
    was_training = model.training
    model.eval()
    counter = ActivationCounter(layout, num_groups, family.device)
    try:
        with torch.no_grad(), counter:
            for batch in tqdm(mine, desc=description, unit="batch", disable=not progress or rank != 0):
                # The family calls back with the counted positions of the sequence the decoder
                # will see (known only after image expansion), right before running it.
                family.run(batch, positions, lambda mask, groups=batch.groups: counter.set_batch(mask, groups))
    finally:
        model.train(was_training)
    if world > 1:
        dist.all_reduce(counter.counts)
        dist.all_reduce(counter.tokens)
    return ProbeCounts(counter.counts.cpu(), counter.tokens.cpu())
