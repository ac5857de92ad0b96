"""Patch LLaVA's training module in place: PLAST arguments + freezing when ``LLaVATrainer`` is built.

Three changes to the module object ``llava.train.train`` (official LLaVA or LLaVA-NeXT):

1. ``TrainingArguments`` becomes a subclass with the ``--plast_*`` fields; ``train()`` looks the
   name up when it is called, so ``HfArgumentParser`` accepts the flags.
2. ``LLaVATrainer.__init__`` is wrapped *in place* (rebinding the name to a subclass recurses
   forever: its save methods call ``super(LLaVATrainer, self)``, docs/troubleshooting.md pitfall 1). The wrap runs when
   every ``requires_grad`` change of ``train()`` is done and no optimizer or DeepSpeed engine
   exists yet: it resolves the layers (``auto`` probes the model now), freezes all but them,
   logs the table of trainable parameters, then builds the trainer.
3. ``train`` is wrapped so that, on a rank of a multi-rank gloo run, it waits until the gloo worker
   threads are idle before the interpreter exits (``clean_exit``: otherwise a rank can abort at exit).

Without ``--plast_layers`` training behaves exactly as upstream (3. still applies: it changes no result).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from plast_plugin.llava.arguments import (
    PlastArgumentError,
    check_trainer_arguments,
    make_training_arguments,
    plast_enabled,
    validated_options,
)
from plast_plugin.llava.clean_exit import wrap_train

logger = logging.getLogger("plast_plugin.llava")

TRAINING_RECORD = "plast_training.json"
_PATCHED = "__plast_patched__"


# ----------------------------------------------------------------------------- patching
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
    """Let a resumed run load ``checkpoint-*/rng_state.pth`` with torch's weights-only unpickler.

    transformers 4.37 loads that file with ``torch.load``'s default, which is weights-only since
    torch 2.6, and the file holds numpy's RNG state (a uint32 ndarray), which that unpickler
    refuses. Allow-listing exactly the four numpy globals that array needs makes resume work
    without ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which would turn on full unpickling (and so
    code execution from a crafted checkpoint) for every file a run loads.
    """
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

    def __init__(self, *args, **kwargs):
        training_args = kwargs.get("args")
        if training_args is None and len(args) >= 2:
            training_args = args[1]
        model = kwargs.get("model", args[0] if args else None)
        if training_args is None or not plast_enabled(training_args):
            return original(self, *args, **kwargs)
        report = prepare_plast(model, training_args, tokenizer=kwargs.get("tokenizer"))
        original(self, *args, **kwargs)
        _guard_optimizer(self, report)
        check_supervision(kwargs.get("train_dataset"))

    __init__.__plast_wrapped__ = True
    __init__.__wrapped__ = original
    __init__.__doc__ = original.__doc__
    trainer_cls.__init__ = __init__


# ----------------------------------------------------------------------------- ranks
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else 0


def _barrier() -> None:
    dist = _dist()
    if dist:
        dist.barrier()


def _log(message: str) -> None:
    """Rank 0 prints (LLaVA's rank0_print style; its logging is often silenced)."""
    if _rank() == 0:
        print(f"[plast] {message}", flush=True)
    logger.info(message)


def _is_zero3(model) -> bool:
    try:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            return True
    except Exception:  # pragma: no cover - older transformers
        pass
    return any(hasattr(p, "ds_id") for p in model.parameters())


# ----------------------------------------------------------------------------- main step
def prepare_plast(model, args, tokenizer=None):
    """Resolve the layers, freeze all but them, log and record. Returns the TrainableReport."""
    from plast_plugin.core.freeze import freeze_for_plast, plast_parameter_names
    from plast_plugin.core.model_layout import find_decoder_layers
    from plast_plugin.llava.short_backward import shorten_backward

    options = validated_options(args)  # checked when the arguments were parsed; not again
    check_trainer_arguments(args)
    if model is None:
        raise PlastArgumentError("--plast_layers: LLaVATrainer was built without a model")
    layout = find_decoder_layers(model)  # once; every step below is handed it
    selection = resolve_selection(model, args, tokenizer, layout=layout, options=options)
    layers = list(selection.selected_layers)
    modules = resolve_modules(selection, args)
    selection.options["modules"] = modules
    recorded_layers, recorded_modules, history = check_resume(args, layers, modules)
    _warn_if_layers_arrive_frozen(model, layers, modules, layout)
    report = freeze_for_plast(model, layers, modules, layout=layout)
    if report.trainable_params == 0:
        raise PlastArgumentError(
            f"--plast_layers {args.plast_layers} with --plast_modules {modules} leaves no "
            f"trainable parameter; refusing to train nothing"
        )
    if getattr(args, "mm_projector_lr", None) is not None:
        _log("--mm_projector_lr is set but the projector is frozen by PLAST; its parameter groups are empty and dropped")
    _log("training only decoder layers %s (%s)\n%s" % (layers, modules, report.format_table()))
    _log(shorten_backward(model, args, layout=layout).describe())
    selection.trainable = report.to_dict()
    # The base's values of every tensor the record says was trained, hashed now, before any
    # step: `plast export --merge-into` refuses a base whose tensors differ (another model of
    # the same shapes would otherwise be mixed with this delta without a word).
    fingerprint = base_fingerprint(model, sorted(plast_parameter_names(model, recorded_layers, recorded_modules,
                                                                       layout=layout)))
    if _rank() == 0:
        from plast_plugin.atomic import write_text_atomic
        from plast_plugin.core.selection_file import SELECTION_FILENAME

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        # output_dir/plast_layers.json always names the layers this run trains: a resumed run
        # (--plast_layers auto) and `plast export` read it.
        selection.save(out / SELECTION_FILENAME)
        record = {
            "layers": recorded_layers,
            "modules": recorded_modules,
            "plast_layers": str(args.plast_layers),
            "base_model": getattr(getattr(model, "config", None), "_name_or_path", None),
            "base_fingerprint": fingerprint,
            "trainable": report.to_dict(),
            "trainable_names": report.trainable_names,
            "history": history,
        }
        write_text_atomic(out / TRAINING_RECORD, json.dumps(record, indent=2) + "\n")
    _barrier()
    return report


def _warn_if_layers_arrive_frozen(model, layers, modules, layout) -> None:
    """LLaVA's --freeze_backbone (a model argument, out of the hook's sight) freezes the decoder
    before the trainer is built; PLAST then unfreezes the selected layers. Say so: the flag's
    request is overridden, not honoured."""
    from plast_plugin.core.freeze import plast_parameter_names

    names = set(plast_parameter_names(model, layers, modules, layout=layout))
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
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*")) if out.is_dir() else []
    if not checkpoints:
        return list(layers), modules, [this_run]
    allow = bool(getattr(args, "plast_allow_selection_change", False))
    record_path = out / TRAINING_RECORD
    if not record_path.is_file():
        if not allow:
            raise PlastArgumentError(
                f"output_dir {out} holds {checkpoints[-1]}, which LLaVA's train() resumes from, but no "
                f"{TRAINING_RECORD}: it is not a PLAST run, so what it trained is unknown. Use a new "
                f"--output_dir (or pass --plast_allow_selection_change True to resume anyway)"
            )
        return list(layers), modules, [this_run]
    from plast_plugin.errors import PlastError
    from plast_plugin.json_files import read_json_object

    try:
        previous = read_json_object(record_path)
        before_layers = sorted(int(i) for i in previous["layers"])
        before_modules = str(previous["modules"])
    except PlastError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise PlastArgumentError(f"{record_path}: malformed training record ({err!r}); use a new --output_dir") from None
    history = previous.get("history") or [{"layers": before_layers, "modules": before_modules,
                                           "plast_layers": previous.get("plast_layers")}]
    if before_layers == sorted(layers) and before_modules == modules:
        return list(layers), modules, [*history, this_run]
    if not allow:
        raise PlastArgumentError(
            f"output_dir {out} holds {checkpoints[-1]} of a run that trained layers {before_layers} "
            f"({before_modules}), which train() would resume from; this run selects {sorted(layers)} "
            f"({modules}). Resume with the same selection (--plast_layers {previous.get('plast_layers')}), "
            f"use a new --output_dir, or pass --plast_allow_selection_change True to train both "
            f"(the record then keeps the union)"
        )
    union = sorted(set(before_layers) | set(layers))
    union_modules = modules if modules == before_modules else "layer"
    _log(f"--plast_allow_selection_change: resuming a run that trained {before_layers} ({before_modules}) "
         f"with {sorted(layers)} ({modules}); the record names the union {union} ({union_modules})")
    return union, union_modules, [*history, this_run]


def base_fingerprint(model, names: list[str]) -> dict:
    """SHA-256 (and dtype) of each named parameter as loaded, i.e. the base's values."""
    import contextlib

    from plast_plugin.checkpoints.export import tensor_sha256

    params = dict(model.named_parameters())
    chosen = [params[n] for n in names]
    gather = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for p in chosen):
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(chosen, modifier_rank=None)  # collective: every rank
    with gather:
        tensors = {n: {"dtype": str(params[n].dtype).replace("torch.", ""), "sha256": tensor_sha256(params[n].data)}
                   for n in names} if _rank() == 0 else {}
    return {"method": "sha256 of each trained tensor in the base model, before training", "tensors": tensors}


def resolve_selection(model, args, tokenizer=None, *, layout=None, options=None):
    """The ``SelectionFile`` for ``--plast_layers`` (auto, spec, or file); writes it to output_dir.
    ``layout``: the model's decoder layout; ``options``: the validated --plast_* options."""
    from plast_plugin.core.layer_spec import is_layer_spec, parse_layer_spec
    from plast_plugin.core.model_layout import find_decoder_layers
    from plast_plugin.core.selection_file import SELECTION_FILENAME, ModelIdentity, SelectionFile

    layout = layout or find_decoder_layers(model)

    value = str(args.plast_layers).strip()
    name = getattr(getattr(model, "config", None), "_name_or_path", None)
    saved = Path(args.output_dir) / SELECTION_FILENAME
    if value == "auto":
        if saved.exists():
            selection = SelectionFile.load(saved)
            selection.check_model(model, layout=layout)
            _log(f"resumed run: reusing the layers selected before, {selection.selected_layers}, from {saved}")
            return selection
        selection = run_auto_selection(model, args, tokenizer, layout=layout, options=options)
        return selection
    if os.path.exists(value):
        selection = SelectionFile.load(value)
        for warning in selection.check_identity(model, layout=layout, name_or_path=name):
            _log(f"WARNING: {value}: {warning}")
        _log(f"layers {selection.selected_layers} from selection file {value}"
             f" (modules {selection.options.get('modules', 'layer')!r})")
    elif is_layer_spec(value):
        layers = parse_layer_spec(value, layout.num_layers, seed=args.plast_seed)
        selection = SelectionFile(selected_layers=layers, model=ModelIdentity.of(model, name, layout=layout),
                                  rule=value,
                                  options={"modules": getattr(args, "plast_modules", None) or "layer"})
    else:
        raise PlastArgumentError(
            f"--plast_layers {value!r} is neither 'auto', a layer spec ('0-4', '1,3', 'first:K', "
            f"'last:K', 'random:K') nor an existing selection file"
        )
    return selection


def run_auto_selection(model, args, tokenizer, *, layout=None, options=None):
    """Probe the loaded model on the parallel questions (all ranks), write JSON + plot (rank 0)."""
    import contextlib

    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.pipeline import run_selection, write_selection

    if tokenizer is None:
        raise PlastArgumentError("--plast_layers auto needs the tokenizer passed to LLaVATrainer")
    sources = [s.strip() for s in str(args.plast_probe_data).split(",") if s.strip()]
    languages = parse_language_list(args.plast_languages) if args.plast_languages else None
    questions = load_parallel_questions(sources, languages=languages, pivot=args.plast_pivot,
                                        max_samples=args.plast_probe_samples)
    options = options or validated_options(args)
    image_processor = None
    try:
        tower = model.get_vision_tower()
        image_processor = getattr(tower, "image_processor", None) if tower is not None else None
    except Exception:
        pass
    zero3 = _is_zero3(model)
    device = getattr(args, "device", None)
    if not zero3 and device is not None:
        model.to(device)  # the Trainer / DeepSpeed engine would move it there anyway
    gather = contextlib.nullcontext()
    if zero3:
        import deepspeed

        # Weights are partitioned before the trainer exists (docs/troubleshooting.md pitfall 5):
        # gather them for the probe.
        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    _log(f"--plast_layers auto: probing {len(questions.ids)} questions x {len(questions.languages)} "
         f"languages ({', '.join(questions.languages)}){' with ZeRO-3 parameters gathered' if zero3 else ''}")
    was_training = model.training
    model.eval()
    try:
        with gather:
            selection = run_selection(model, tokenizer, questions, options, image_processor=image_processor,
                                      name_or_path=getattr(model.config, "_name_or_path", None),
                                      progress=_rank() == 0, layout=layout)
    finally:
        model.train(was_training)
    if _rank() == 0:
        write_selection(selection, args.output_dir)
        _log(f"--plast_layers auto selected layers {selection.selected_layers}; written to {args.output_dir}")
    _barrier()
    return selection


# ----------------------------------------------------------------------------- data
def check_supervision(dataset, samples: int = 8, ignore_index: int = -100) -> None:
    """Refuse to train when LLaVA's preprocessing masked every label of the first samples.

    LLaVA's ``preprocess_v1``/``preprocess_mpt`` assume a LLaMA-like tokenizer (a BOS token and a
    single-token ``</s>``); with another tokenizer they print "tokenization mismatch" and mask the
    whole sample, and training then runs with loss 0 and changes nothing.
    """
    if dataset is None:
        return
    try:
        count = min(len(dataset), samples)
    except TypeError:  # an iterable dataset: nothing cheap to check
        return
    if count == 0:
        return
    for index in range(count):
        item = dataset[index]
        labels = item.get("labels") if isinstance(item, dict) else None
        if labels is None or int((labels != ignore_index).sum()) > 0:
            return
    raise PlastArgumentError(
        f"PLAST: LLaVA's preprocessing left no supervised token in the first {count} training samples "
        f"(see 'tokenization mismatch' above): the tokenizer does not fit --version. Training would "
        f"change nothing. Use a LLaMA/Vicuna tokenizer with --version v1 (or fix the conversation template)."
    )


# ----------------------------------------------------------------------------- optimizer
def _guard_optimizer(trainer, report) -> None:
    """Drop empty parameter groups (docs/troubleshooting.md pitfall 4) and check the optimizer
    holds only PLAST params."""
    original = trainer.create_optimizer
    if getattr(original, "__plast_wrapped__", False):
        return
    expected = set(report.trainable_names)

    def create_optimizer():
        optimizer = original()
        groups = [g for g in optimizer.param_groups if len(g["params"]) > 0]
        if len(groups) != len(optimizer.param_groups):
            optimizer.param_groups[:] = groups
        names = {id(p): n for n, p in trainer.model.named_parameters()}
        held = {names.get(id(p), "?") for g in optimizer.param_groups for p in g["params"]}
        if held != expected:
            extra, missing = sorted(held - expected)[:5], sorted(expected - held)[:5]
            raise RuntimeError(
                f"PLAST: the optimizer does not hold exactly the selected parameters "
                f"(extra {extra}, missing {missing}); refusing to train"
            )
        return optimizer

    create_optimizer.__plast_wrapped__ = True
    trainer.create_optimizer = create_optimizer
