"""Make PLAST's backward pass as short as the selected layers allow (gradient checkpointing on).

With ``--gradient_checkpointing True`` LLaVA's ``train()`` calls ``model.enable_input_require_grads()``
(a hook making the embeddings' output require grad) and the HF Trainer checkpoints every decoder
layer *reentrantly*. Harmless for full fine-tuning or LoRA, wasted work for PLAST:

- the input-grad hook makes backward run down to the embeddings, through every layer below the
  lowest selected one, although nothing there trains;
- reentrant checkpointing cannot do without that hook: when a checkpointed layer's input does not
  require grad, its output does not either, and the trained layers silently get no gradient
  (transformers #21381; docs/troubleshooting.md pitfall 3).

With nothing trainable below the lowest selected layer (always true for PLAST, which freezes the
embeddings, the projector and the vision tower), ``shorten_backward`` instead:

1. removes the input-grad hook, so autograd records no graph below the lowest selected layer;
2. checkpoints with ``use_reentrant=False``, which lets a layer's *parameters* carry the graph,
   so the trained layers get their gradients without input grads; a layer without a graph is
   neither saved nor recomputed, and recomputation stops early once backward has what it needs;
3. does not checkpoint the last decoder layer: its recomputation would run immediately after its
   own forward, at the start of backward, so checkpointing it buys almost no memory (its
   activations then coexist with the loss computation instead) and costs one layer's forward.

At the 7B shape (seq 2048; ``scripts/bench_train.py --count``) PLAST / full FLOPs go from 0.804 to
0.747 for layers 0-4 and to 0.517 for layers 16-20; losses and updated weights equal LLaVA's path
to float rounding. Without checkpointing nothing changes: autograd already stops at the lowest
trainable layer.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

# Names of the forward hooks LLaVA's train() puts on the input embeddings under checkpointing:
# transformers' enable_input_require_grads() and LLaVA's own fallback.
_INPUT_GRAD_HOOK_NAMES = ("make_inputs_require_grads", "make_inputs_require_grad")
_WRAPPED = "__plast_short_backward__"


@dataclass
class ShortBackward:
    """What ``shorten_backward`` did, for the log."""

    applied: bool
    reason: str
    lowest_layer: int | None = None
    input_grad_hooks_removed: int = 0

    def describe(self) -> str:
        if not self.applied:
            return f"backward not shortened: {self.reason}"
        return (f"backward stops at layer {self.lowest_layer} (lowest trained layer): input-grad hook "
                f"removed ({self.input_grad_hooks_removed}), non-reentrant checkpointing, last layer not "
                f"checkpointed; --plast_short_backward False keeps LLaVA's path")


def lowest_trainable_layer(model) -> int | None:
    """Index of the lowest decoder layer with a trainable parameter, or None when a trainable
    parameter lives outside ``layers[lowest:]`` (embeddings, projector, ...): then backward must
    run further down and nothing may be shortened."""
    from plast_plugin.core.model_layout import find_decoder_layers

    layout = find_decoder_layers(model)
    indices = [layout.layer_of(name) for name, param in model.named_parameters() if param.requires_grad]
    return None if None in indices else min(indices, default=None)


def remove_input_grad_hooks(model) -> int:
    """Remove the embeddings' forward hooks that force ``requires_grad`` on their output."""
    hooks = model.get_input_embeddings()._forward_hooks
    found = [key for key, hook in hooks.items() if getattr(hook, "__name__", "") in _INPUT_GRAD_HOOK_NAMES]
    for key in found:
        del hooks[key]
    if found and getattr(model, "_require_grads_hook", None) is not None:
        del model._require_grads_hook  # its handle points at the removed hook
    return len(found)


def shorten_backward(model, training_args) -> ShortBackward:
    """Apply the three changes above to ``model`` if ``training_args`` allow; report what was done.

    Call after freezing and before the Trainer enables checkpointing (it does so in ``train()``
    via ``model.gradient_checkpointing_enable``, which is wrapped here).
    """
    if not getattr(training_args, "plast_short_backward", True):
        return ShortBackward(False, "--plast_short_backward False (LLaVA's path kept)")
    if not getattr(training_args, "gradient_checkpointing", False):
        return ShortBackward(False, "no gradient checkpointing: backward already stops at the lowest trained layer")
    kwargs = dict(getattr(training_args, "gradient_checkpointing_kwargs", None) or {})
    if kwargs.get("use_reentrant") is True:
        # Without input grads reentrant checkpointing would zero every gradient (troubleshooting pitfall 3).
        return ShortBackward(False, "gradient_checkpointing_kwargs asks for use_reentrant=True, which needs input grads")
    lowest = lowest_trainable_layer(model)
    if lowest is None:
        return ShortBackward(False, "a parameter outside the decoder layers trains, so backward must reach it")
    removed = remove_input_grad_hooks(model)
    install_checkpointing(model)
    return ShortBackward(True, "", lowest, removed)


def install_checkpointing(model) -> None:
    """From now on ``model.gradient_checkpointing_enable(...)`` checkpoints non-reentrantly and
    skips the last decoder layer (idempotent; the Trainer calls it at the start of ``train()``)."""
    if getattr(model.gradient_checkpointing_enable, _WRAPPED, False):
        return
    from plast_plugin.core.model_layout import find_decoder_layers

    layout = find_decoder_layers(model)
    original = model.gradient_checkpointing_enable

    def gradient_checkpointing_enable(gradient_checkpointing_kwargs=None):
        kwargs = {**(gradient_checkpointing_kwargs or {}), "use_reentrant": False}
        original(gradient_checkpointing_kwargs=kwargs)
        _skip_last_layer(layout)

    setattr(gradient_checkpointing_enable, _WRAPPED, True)
    gradient_checkpointing_enable.__doc__ = original.__doc__
    model.gradient_checkpointing_enable = gradient_checkpointing_enable
    if layout.backbone.gradient_checkpointing:  # already on: apply the new policy
        model.gradient_checkpointing_enable()


def _skip_last_layer(layout) -> None:
    # gradient_checkpointing_enable sets a fresh checkpoint function on every call: wrap that one.
    checkpoint_func = layout.backbone._gradient_checkpointing_func
    last = layout.layers[-1]

    @functools.wraps(checkpoint_func)
    def checkpoint_except_last(function, *args, **kwargs):
        # The backbone calls this with the layer's bound __call__.
        if getattr(function, "__self__", None) is last:
            return function(*args, **kwargs)
        return checkpoint_func(function, *args, **kwargs)

    layout.backbone._gradient_checkpointing_func = checkpoint_except_last
