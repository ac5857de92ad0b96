"""PLAST's training arguments, in LLaVA's argument style.

They are added to LLaVA's ``TrainingArguments`` (a subclass made by ``make_training_arguments``)
because ``train()`` parses exactly three dataclasses; every field carries its help text.
The method options of ``plast_plugin.core.options.SelectionOptions`` appear as ``--plast_<name>``
(``--plast_rule``, ``--plast_statistic``, ...) with the same defaults and help.

Flags that conflict with layer freezing are refused when the arguments are parsed, before the
model is even loaded: ``--lora_enable``, ``--bits 4/8``; the ones only known later
(``--tune_mm_mlp_adapter``, a model argument) are refused when the trainer is built.
``--freeze_backbone`` and ``--freeze_mm_mlp_adapter`` need no refusal: PLAST freezes everything
but the selected layers anyway, after them. ``--mm_projector_lr`` keeps working: its (then
empty) projector parameter groups are dropped before DeepSpeed sees them.
"""
from __future__ import annotations

import dataclasses
import typing
import weakref
from dataclasses import dataclass, field
from typing import Literal, Optional

from plast_plugin.errors import PlastError
from plast_plugin.core.options import SelectionOptions

LAYERS_HELP = (
    "PLAST: which decoder layers to fine-tune; everything else is frozen. 'auto' probes the "
    "loaded model on --plast_probe_data before training, chooses with --plast_rule and writes "
    "output_dir/plast_layers.json (a resumed run reuses that file); a spec such as '0-4', '0,1,2', "
    "'first:5', 'last:5', 'random:5'; or a selection file written by `plast select`. Unset: PLAST is off."
)
RULE_HELP = (
    "PLAST (auto): how --plast_layers auto chooses from the probe's statistics: 'auto' = 'msd-above-mean', "
    "'msd-above:X', 'msd-top:K', 'msd-above-max:F' (see `plast select --help`). Only with --plast_layers auto; "
    "an explicit layer choice ('0-4', 'first:5', ...) goes in --plast_layers."
)

# SelectionOptions fields that PLAST's LLaVA arguments expose under another name or not at all.
_RENAMED = {"rule": "plast_rule", "modules": "plast_modules", "seed": "plast_seed",
            "batch_size": "plast_probe_batch_size"}


@dataclass(repr=False, eq=False)
class PlastArgumentsBase:
    plast_layers: Optional[str] = field(default=None, metadata={"help": LAYERS_HELP})
    plast_probe_data: Optional[str] = field(
        default=None,
        metadata={"help": "PLAST (auto): parallel questions to probe, comma-separated: a .jsonl "
                  "(id, lang, question[, image]) or VLMEvalKit TSVs, one per language. Same input "
                  "as `plast select`."},
    )
    plast_languages: Optional[str] = field(
        default=None,
        metadata={"help": "PLAST (auto): non-pivot languages to compare, e.g. 'zh,pt,ar,tr,ru'. "
                  "Default: every language in --plast_probe_data."},
    )
    plast_pivot: str = field(
        default="en", metadata={"help": "PLAST (auto): the pivot language the others are compared with."}
    )
    plast_probe_samples: Optional[int] = field(
        default=None,
        metadata={"help": "PLAST (auto): use at most this many questions per language. Default: all."},
    )
    plast_allow_selection_change: bool = field(
        default=False,
        metadata={"help": "PLAST: let a resumed run (output_dir has checkpoint-*) train other layers or "
                  "modules than the run it resumes. Off (default): that is refused, since the checkpoint "
                  "already holds the earlier layers' updates. On: plast_training.json keeps the union of "
                  "the layers and the history of selections, so `plast export` writes every trained tensor."},
    )
    plast_short_backward: bool = field(
        default=True,
        metadata={"help": "PLAST, with --gradient_checkpointing: stop backward at the lowest selected layer "
                  "(no input grads on the embeddings, non-reentrant checkpointing, last layer not "
                  "checkpointed). Same gradients, fewer FLOPs (7B, layers 0-4: 0.747 of full instead of "
                  "0.804). False keeps LLaVA's own path (reentrant, input grads)."},
    )


def _selection_option_fields() -> list[tuple[str, type, dataclasses.Field]]:
    hints = typing.get_type_hints(SelectionOptions)
    out = []
    for f in dataclasses.fields(SelectionOptions):
        name = _RENAMED.get(f.name, "plast_" + f.name)
        help_text = f.metadata.get("help", "")
        if f.name == "rule":
            out.append((name, str, field(default=f.default, metadata={"help": RULE_HELP})))
            continue
        if f.name == "modules":
            # Unset (None) means "the selection file's modules, else 'layer'": a file made with
            # --modules mlp must not silently train whole layers.
            out.append((name, Optional[str], field(default=None, metadata={
                "help": "PLAST: " + help_text + " Default: the modules recorded in the selection file "
                "(--plast_layers FILE, or a resumed auto run), else 'layer'; given explicitly, it overrides the file."})))
            continue
        # A Literal option is a plain string flag here: SelectionOptions names the choices when it refuses one.
        kind = str if typing.get_origin(hints[f.name]) is Literal else hints[f.name]
        out.append((name, kind, field(default=f.default, metadata={"help": "PLAST (auto): " + help_text})))
    return out


PlastArguments = dataclasses.make_dataclass(
    "PlastArguments",
    _selection_option_fields(),
    bases=(PlastArgumentsBase,),
    repr=False,
    eq=False,
)
PlastArguments.__module__ = __name__
PlastArguments.__doc__ = "Every PLAST flag of LLaVA training (mixin for LLaVA's TrainingArguments)."

_DEFAULT_RULE = SelectionOptions.__dataclass_fields__["rule"].default


class PlastArgumentError(PlastError):
    """A flag combination PLAST refuses; the message names the flag and the fix."""


def plast_enabled(args) -> bool:
    # `is not None`, not truthiness: `--plast_layers ""` (an unset shell variable) must be refused,
    # not read as "PLAST off", which would silently fine-tune the whole model.
    return getattr(args, "plast_layers", None) is not None


def _flag_values(args) -> dict:
    values = {}
    for f in dataclasses.fields(SelectionOptions):
        values[f.name] = getattr(args, _RENAMED.get(f.name, "plast_" + f.name))
    if values["modules"] is None:
        values["modules"] = "layer"
    return values


# args object -> (the PLAST flags it had when validated, the SelectionOptions they make). Kept
# beside the arguments, not on them: the Trainer pickles them into training_args.bin, which must
# load where PLAST is not installed.
_VALIDATED: dict[int, tuple[tuple, SelectionOptions]] = {}


def _plast_flags(args) -> tuple:
    return tuple((f.name, getattr(args, f.name, None)) for f in dataclasses.fields(PlastArguments))


def _remember(args, options: SelectionOptions) -> None:
    key = id(args)
    if key not in _VALIDATED:
        try:
            weakref.finalize(args, _VALIDATED.pop, key, None)
        except TypeError:  # not weak-referenceable: nothing to remember it by
            return
    _VALIDATED[key] = (_plast_flags(args), options)


def validated_options(args) -> SelectionOptions:
    """The ``SelectionOptions`` of already validated arguments (LLaVA's ``TrainingArguments`` are
    validated in ``__post_init__``); validates them first when they were not, or changed since."""
    known = _VALIDATED.get(id(args))
    if known is None or known[0] != _plast_flags(args):
        check_plast_arguments(args)
        known = _VALIDATED.get(id(args))
    return known[1] if known is not None else selection_options(args)


def selection_options(args) -> SelectionOptions:
    """The ``SelectionOptions`` that ``--plast_*`` flags describe (unset --plast_modules: 'layer'),
    validated as they are built; an invalid flag is one PlastArgumentError naming it."""
    try:
        return SelectionOptions(**_flag_values(args))
    except ValueError as err:
        raise PlastArgumentError(f"PLAST option: {err} (flags are named --plast_<option>)") from None


def check_plast_arguments(args) -> None:
    """Validate the PLAST flags and refuse conflicting LLaVA flags (``__post_init__`` calls it). The
    result is remembered, so ``validated_options`` does not check the same flags again. No-op when
    PLAST is off."""
    if not plast_enabled(args):
        return
    layers = str(args.plast_layers).strip()
    if not layers:
        raise PlastArgumentError(
            f"--plast_layers is empty ({args.plast_layers!r}; an unset shell variable?): give 'auto', a layer "
            f"spec such as '0-4', or a selection file; drop the flag only to fine-tune without PLAST"
        )
    if layers == "auto" and not args.plast_probe_data:
        raise PlastArgumentError(
            "--plast_layers auto needs --plast_probe_data (parallel questions, e.g. a .jsonl with "
            "id, lang, question), or run `plast select` first and pass the selection file to --plast_layers"
        )
    if getattr(args, "lora_enable", False):
        raise PlastArgumentError(
            "--lora_enable conflicts with --plast_layers: PLAST fine-tunes whole decoder layers, LoRA "
            "adds adapters to all of them. Drop --lora_enable (or drop --plast_layers for LoRA)."
        )
    if getattr(args, "bits", 16) in (4, 8):
        raise PlastArgumentError(
            f"--bits {args.bits} conflicts with --plast_layers: quantized weights cannot be fine-tuned "
            f"directly. Use --bits 16 (the default) with bf16/fp16."
        )
    if getattr(args, "unfreeze_mm_vision_tower", False):
        raise PlastArgumentError(
            "--unfreeze_mm_vision_tower conflicts with --plast_layers: PLAST keeps the vision tower "
            "frozen. Drop --unfreeze_mm_vision_tower."
        )
    if getattr(args, "mm_tunable_parts", None):
        raise PlastArgumentError(
            "--mm_tunable_parts conflicts with --plast_layers: PLAST decides what is trained (only the "
            "selected layers). Drop --mm_tunable_parts."
        )
    if args.plast_probe_samples is not None and args.plast_probe_samples < 1:
        raise PlastArgumentError(f"--plast_probe_samples must be positive, got {args.plast_probe_samples}")
    if args.plast_languages:
        from plast_plugin.data.languages import parse_language_list

        try:
            parse_language_list(args.plast_languages)
        except ValueError as err:
            raise PlastArgumentError(f"--plast_languages: {err}") from None
    options = selection_options(args)
    # One meaning each: --plast_layers says which layers (auto, a spec, a file); --plast_rule says
    # how `auto` chooses from the probe's statistics. No combination may probe and then ignore it.
    rule = options.selection_rule
    if layers == "auto" and rule.is_spec:
        raise PlastArgumentError(
            f"--plast_layers auto with --plast_rule {rule.text}: that rule is a layer spec, so the probe would "
            f"run and its result be ignored. An explicit layer choice goes in --plast_layers: use "
            f"--plast_layers {rule.text} and drop --plast_rule (or keep --plast_layers auto with a statistic "
            f"rule: auto, msd-above:X, msd-top:K, msd-above-max:F)"
        )
    if layers != "auto" and rule.text != _DEFAULT_RULE:
        raise PlastArgumentError(
            f"--plast_rule {rule.text} with --plast_layers {layers}: the rule chooses from the statistics that "
            f"only --plast_layers auto computes, so here it would be ignored. Drop --plast_rule (or use "
            f"--plast_layers auto --plast_probe_data ... to select with it)"
        )
    if layers == "auto":
        _check_probe_data(args)
    _remember(args, options)


def _check_probe_data(args) -> None:
    """Read --plast_probe_data now, as the probe will: data without the pivot (or not parallel) is
    refused before the model is loaded and DeepSpeed started (minutes at 7B), not after. A resumed
    run reuses output_dir's selection file and never reads it."""
    from pathlib import Path

    from plast_plugin.core.selection_file import SELECTION_FILENAME
    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.data.parallel_data import load_parallel_questions

    if getattr(args, "output_dir", None) and (Path(args.output_dir) / SELECTION_FILENAME).exists():
        return
    sources = [s.strip() for s in str(args.plast_probe_data).split(",") if s.strip()]
    languages = parse_language_list(args.plast_languages) if args.plast_languages else None
    try:
        load_parallel_questions(sources, languages=languages, pivot=args.plast_pivot,
                                max_samples=args.plast_probe_samples)
    except PlastError as err:
        # the data layer names `plast select`'s --pivot; here the flag is --plast_pivot
        raise PlastArgumentError(f"--plast_probe_data: {str(err).replace('--pivot', '--plast_pivot')}") from None


def check_trainer_arguments(args) -> None:
    """Refusals only possible once ``train()`` has copied model arguments into ``args``."""
    if getattr(args, "tune_mm_mlp_adapter", False):
        raise PlastArgumentError(
            "--tune_mm_mlp_adapter conflicts with --plast_layers: it trains (and saves) only the "
            "projector. Drop --tune_mm_mlp_adapter; PLAST starts from a finished LLaVA checkpoint."
        )


_CLASS_CACHE: dict[type, type] = {}


def make_training_arguments(base: type) -> type:
    """``base`` (LLaVA's TrainingArguments) plus the PLAST fields, validated in ``__post_init__``.

    The class keeps the name and module of ``base``'s module attribute (``llava.train.train.
    TrainingArguments``) so the Trainer can pickle it into ``training_args.bin``
    (docs/troubleshooting.md pitfall 2), and so that file also loads where PLAST is not installed.
    """
    if getattr(base, "__plast__", False):
        return base
    if base in _CLASS_CACHE:
        return _CLASS_CACHE[base]

    def __post_init__(self):
        base.__post_init__(self)
        check_plast_arguments(self)

    namespace = {"__post_init__": __post_init__, "__plast__": True, "__module__": base.__module__,
                 "__qualname__": base.__qualname__,
                 "__doc__": (base.__doc__ or "") + "\n\nWith PLAST's --plast_* flags."}
    # PLAST first: its fields all have defaults and must come after output_dir.
    cls = type(base.__name__, (PlastArguments, base), namespace)
    cls = dataclass(cls, repr=False, eq=False)
    _CLASS_CACHE[base] = cls
    return cls
