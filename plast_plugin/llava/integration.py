"""Patch LLaVA's training module ``llava.train.train`` in place (official LLaVA or LLaVA-NeXT).

1. ``TrainingArguments`` becomes a subclass with the ``--plast_*`` fields (``train()`` looks the
   name up when called, so ``HfArgumentParser`` accepts the flags).
2. ``LLaVATrainer.__init__`` is wrapped in place (a subclass would recurse: its save methods call
   ``super(LLaVATrainer, self)``, docs/troubleshooting.md pitfall 1). It runs after every
   ``requires_grad`` change of ``train()`` and before any optimizer exists: resolve the layers,
   freeze all but them, log, then build the trainer.
3. ``train`` waits for idle gloo worker threads before exit on multi-rank gloo runs (``clean_exit``).

Without ``--plast_layers`` training behaves exactly as upstream.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from plast_plugin.core import ranks
from plast_plugin.core.freeze import freeze_for_plast, plast_parameter_names
from plast_plugin.core.layer_spec import is_layer_spec, parse_layer_spec
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.selection_file import SELECTION_FILENAME, ModelIdentity, SelectionFile
from plast_plugin.core.training_record import TRAINING_RECORD, TrainingRecord, check_optimizer, write_records
from plast_plugin.llava.arguments import (
    check_plast_arguments,
    make_training_arguments,
    plast_enabled,
    probe_questions_of,
    selection_options,
)
from plast_plugin.llava.clean_exit import wrap_train
from plast_plugin.llava.short_backward import shorten_backward
from plast_plugin.models.zero3 import gathered, gathered_fingerprint, is_zero3
from plast_plugin.errors import PlastError

logger = logging.getLogger("plast_plugin.llava")

_PATCHED = "__plast_patched__"


def patch_llava_train_module(module) -> None:
    """Add PLAST to a ``llava.train.train`` module object. Idempotent; all or nothing."""
    if getattr(module, _PATCHED, False):
        return
    base_args = getattr(module, "TrainingArguments", None)
    trainer_cls = getattr(module, "LLaVATrainer", None)
    if base_args is None or trainer_cls is None:
        # Not the module we know: change nothing, so --plast_layers stays an unknown flag
        # (HfArgumentParser refuses it) instead of silently training everything.
        logger.warning("plast-plugin: %s has no TrainingArguments/LLaVATrainer; PLAST not added",
                       getattr(module, "__name__", module))
        return
    new_args = make_training_arguments(base_args)
    wrap_trainer_init(trainer_cls)
    allow_rng_state_loading()
    wrap_train(module)  # with or without --plast_layers: multi-rank runs exit cleanly
    module.TrainingArguments = new_args
    setattr(module, _PATCHED, True)


def allow_rng_state_loading() -> None:
    """Let a resumed run load ``checkpoint-*/rng_state.pth`` (numpy's RNG state) under the
    weights-only ``torch.load`` default of torch >= 2.6, by allow-listing the four numpy globals it
    needs rather than ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (full unpickling of every file)."""
    import numpy as np
    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4: nothing is weights-only by default
        return
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy.core (1.x) / numpy._core (2.x) .multiarray._reconstruct
    add_safe_globals([reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))])


def wrap_trainer_init(trainer_cls) -> None:
    """Wrap ``trainer_cls.__init__`` in place (idempotent)."""
    original = trainer_cls.__init__
    if getattr(original, "__plast_wrapped__", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        training_args = kwargs.get("args")
        if training_args is None and len(args) >= 2:
            training_args = args[1]
        model = kwargs.get("model", args[0] if args else None)
        if training_args is None or not plast_enabled(training_args):
            return original(self, *args, **kwargs)
        report = prepare_plast(model, training_args, tokenizer=kwargs.get("tokenizer"))
        original(self, *args, **kwargs)
        _guard_optimizer(self, report.trainable_names)
        check_supervision(kwargs.get("train_dataset"))

    __init__.__plast_wrapped__ = True
    trainer_cls.__init__ = __init__


def _log(message: str) -> None:
    """Rank 0 prints (LLaVA's rank0_print style; its logging is often silenced)."""
    if ranks.rank() == 0:
        print(f"[plast] {message}", flush=True)
    logger.info(message)


def prepare_plast(model, args, tokenizer=None):
    """Resolve the layers, freeze all but them, log and record. Returns the TrainableReport."""
    check_plast_arguments(args)  # again: train() copies model arguments in after parsing
    selection = resolve_selection(model, args, tokenizer)
    layers = list(selection.selected_layers)
    modules = resolve_modules(selection, args)
    selection.options["modules"] = modules
    recorded_layers, recorded_modules, history = check_resume(args, layers, modules)
    _warn_if_layers_arrive_frozen(model, layers, modules)
    report = freeze_for_plast(model, layers, modules)  # refuses a choice that leaves nothing to train
    if getattr(args, "mm_projector_lr", None) is not None:
        _log("--mm_projector_lr is set but the projector is frozen by PLAST; its parameter groups are empty and dropped")
    _log("training only decoder layers %s (%s)\n%s" % (layers, modules, report.format_table()))
    _log(shorten_backward(model, args).describe())
    # The base's values of every recorded tensor, hashed before any step: `plast export
    # --merge-into` refuses a base of the same shapes whose tensors differ.
    fingerprint = gathered_fingerprint(model, plast_parameter_names(model, recorded_layers, recorded_modules))
    if ranks.rank() == 0:  # the selection always names the layers this run trains: a resumed auto run reads it
        write_records(Path(args.output_dir), model, selection, report, layers=recorded_layers,
                      modules=recorded_modules, plast_layers=str(args.plast_layers),
                      base_fingerprint=fingerprint, history=history)
    ranks.barrier()
    return report


def _warn_if_layers_arrive_frozen(model, layers, modules) -> None:
    """LLaVA's --freeze_backbone (a model argument, out of the hook's sight) freezes the decoder
    before the trainer is built; PLAST then unfreezes the selected layers. Say so: the flag's
    request is overridden, not honoured."""
    from plast_plugin.core.freeze import plast_parameter_names

    names = set(plast_parameter_names(model, layers, modules))
    if names and not any(p.requires_grad for n, p in model.named_parameters() if n in names):
        _log(f"WARNING: the decoder arrived frozen (--freeze_backbone True): --plast_layers overrides it and "
             f"trains layers {layers} ({modules}); drop --freeze_backbone, PLAST freezes everything else itself")


def resolve_modules(selection, args) -> str:
    """What of each layer is trained: --plast_modules when given, else the selection file's."""
    explicit = getattr(args, "plast_modules", None)
    recorded = (selection.options or {}).get("modules")
    if explicit is None:
        return recorded or "layer"
    if recorded and recorded != explicit:
        _log(f"--plast_modules {explicit} overrides the selection file's modules {recorded!r}")
    return explicit


def check_resume(args, layers: list[int], modules: str) -> tuple[list[int], str, list[dict]]:
    """(layers, modules) the training record must name, and the history of selections.

    LLaVA's train() resumes whenever output_dir holds checkpoint-*; the checkpoint then already
    carries the earlier run's updates. Training other layers on top is refused unless
    --plast_allow_selection_change is set; then the record names the union (all layers that
    differ from the base), so an export holds every trained tensor.
    """
    out = Path(args.output_dir)
    this_run = {"layers": list(layers), "modules": modules, "plast_layers": str(args.plast_layers)}
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    if not checkpoints:
        return list(layers), modules, [this_run]
    allow = bool(getattr(args, "plast_allow_selection_change", False))
    record_path = out / TRAINING_RECORD
    if not record_path.is_file():
        if not allow:
            raise PlastError(
                f"output_dir {out} holds {checkpoints[-1]}, which LLaVA's train() resumes from, but no "
                f"{TRAINING_RECORD}: it is not a PLAST run, so what it trained is unknown. Use a new "
                f"--output_dir (or pass --plast_allow_selection_change True to resume anyway)"
            )
        return list(layers), modules, [this_run]
    previous = TrainingRecord.load(record_path)
    before_layers, before_modules = sorted(previous.layers), previous.modules
    history = previous.history or [{"layers": before_layers, "modules": before_modules,
                                    "plast_layers": previous.plast_layers}]
    if before_layers == sorted(layers) and before_modules == modules:
        return list(layers), modules, [*history, this_run]
    if not allow:
        raise PlastError(
            f"output_dir {out} holds {checkpoints[-1]} of a run that trained layers {before_layers} "
            f"({before_modules}), which train() would resume from; this run selects {sorted(layers)} "
            f"({modules}). Resume with the same selection (--plast_layers {previous.plast_layers}), "
            f"use a new --output_dir, or pass --plast_allow_selection_change True to train both "
            f"(the record then keeps the union)"
        )
    union = sorted(set(before_layers) | set(layers))
    union_modules = modules if modules == before_modules else "layer"
    _log(f"--plast_allow_selection_change: resuming a run that trained {before_layers} ({before_modules}) "
         f"with {sorted(layers)} ({modules}); the record names the union {union} ({union_modules})")
    return union, union_modules, [*history, this_run]


def resolve_selection(model, args, tokenizer=None):
    """The ``SelectionFile`` for ``--plast_layers`` (auto, spec, or file); writes it to output_dir."""
    value = str(args.plast_layers).strip()
    name = getattr(getattr(model, "config", None), "_name_or_path", None)
    saved = Path(args.output_dir) / SELECTION_FILENAME
    if value == "auto":
        if saved.exists():
            selection = SelectionFile.load(saved)
            selection.check_model(model)
            _log(f"resumed run: reusing the layers selected before, {selection.selected_layers}, from {saved}")
            return selection
        return run_auto_selection(model, args, tokenizer)
    if os.path.exists(value):
        selection = SelectionFile.load(value)
        for warning in selection.check_identity(model, name_or_path=name):
            _log(f"WARNING: {value}: {warning}")
        _log(f"layers {selection.selected_layers} from selection file {value}"
             f" (modules {selection.options.get('modules', 'layer')!r})")
    elif is_layer_spec(value):
        layers = parse_layer_spec(value, find_decoder_layers(model).num_layers, seed=args.plast_seed)
        selection = SelectionFile(selected_layers=layers, model=ModelIdentity.of(model, name),
                                  rule=value,
                                  options={"modules": getattr(args, "plast_modules", None) or "layer"})
    else:
        raise PlastError(
            f"--plast_layers {value!r} is neither 'auto', a layer spec ('0-4', '1,3', 'first:K', "
            f"'last:K', 'random:K') nor an existing selection file"
        )
    return selection


def run_auto_selection(model, args, tokenizer):
    """Probe the loaded model on the parallel questions (all ranks), write JSON + plot (rank 0)."""
    from plast_plugin.pipeline import run_selection, write_selection

    if tokenizer is None:
        raise PlastError("--plast_layers auto needs the tokenizer passed to LLaVATrainer")
    questions = probe_questions_of(args)
    options = selection_options(args)
    zero3 = is_zero3(model)
    if not zero3:
        model.to(args.device)  # the Trainer / DeepSpeed engine would move it there anyway
    _log(f"--plast_layers auto: probing {len(questions.ids)} questions x {len(questions.languages)} "
         f"languages ({', '.join(questions.languages)}){' with ZeRO-3 parameters gathered' if zero3 else ''}")
    # Under ZeRO-3 the weights are partitioned before the trainer exists (docs/troubleshooting.md
    # pitfall 5): gathered for the probe, which puts the model in eval mode while it runs.
    with gathered(model):
        selection = run_selection(model, tokenizer, questions, options,
                                  name_or_path=getattr(model.config, "_name_or_path", None),
                                  progress=ranks.rank() == 0)
    if ranks.rank() == 0:
        write_selection(selection, args.output_dir)
        _log(f"--plast_layers auto selected layers {selection.selected_layers}; written to {args.output_dir}")
    ranks.barrier()
    return selection


def check_supervision(dataset, samples: int = 8, ignore_index: int = -100) -> None:
    """Refuse to train when LLaVA's preprocessing masked every label of the first samples.

    LLaVA's ``preprocess_v1``/``preprocess_mpt`` assume a LLaMA-like tokenizer (a BOS token and a
    single-token ``</s>``); with another tokenizer they print "tokenization mismatch" and mask the
    whole sample, and training then runs with loss 0 and changes nothing.
    """
    try:
        count = min(len(dataset), samples)
    except TypeError:  # no dataset, or an iterable one: nothing cheap to check
        return
    for index in range(count):
        item = dataset[index]
        labels = item.get("labels") if isinstance(item, dict) else None
        if labels is None or int((labels != ignore_index).sum()) > 0:
            return
    if count:
        raise PlastError(
            f"PLAST: LLaVA's preprocessing left no supervised token in the first {count} training samples "
            f"(see 'tokenization mismatch' above): the tokenizer does not fit --version. Training would "
            f"change nothing. Use a LLaMA/Vicuna tokenizer with --version v1 (or fix the conversation template)."
        )


def _guard_optimizer(trainer, expected_names) -> None:
    """Drop the empty parameter groups LLaVA's grouping leaves (docs/troubleshooting.md pitfall 4),
    then check that the optimizer holds only PLAST's parameters."""
    original = trainer.create_optimizer

    def create_optimizer():
        optimizer = original()
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if len(g["params"]) > 0]
        check_optimizer(trainer.model, optimizer, expected_names)
        return optimizer

    trainer.create_optimizer = create_optimizer
