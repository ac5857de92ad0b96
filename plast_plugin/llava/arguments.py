"""PLAST's training arguments, added to LLaVA's ``TrainingArguments`` (``train()`` parses exactly
three dataclasses). ``SelectionOptions`` fields appear as ``--plast_<name>`` with the same defaults.

LLaVA flags that train what PLAST freezes are refused when the arguments are parsed, before the
model is loaded, or, for model arguments ``train()`` copies in later (``--tune_mm_mlp_adapter``),
when the trainer is built. ``--freeze_backbone`` / ``--freeze_mm_mlp_adapter`` need no refusal
(PLAST freezes after them); ``--mm_projector_lr``'s then empty parameter groups are dropped.
"""
from __future__ import annotations

import dataclasses
import typing
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
        # A Literal option is a plain string flag here: SelectionOptions names the choices when it refuses one.
        kind = str if typing.get_origin(hints[f.name]) is Literal else hints[f.name]
        default, help_text = f.default, "PLAST (auto): " + f.metadata.get("help", "")
        if f.name == "rule":
            help_text = RULE_HELP
        elif f.name == "modules":
            # Unset (None) means "the selection file's modules, else 'layer'": a file made with
            # --modules mlp must not silently train whole layers.
            kind, default = Optional[str], None
            help_text = ("PLAST: " + f.metadata.get("help", "") + " Default: the modules recorded in the selection "
                         "file (--plast_layers FILE, or a resumed auto run), else 'layer'; given explicitly, it "
                         "overrides the file.")
        name = _RENAMED.get(f.name, "plast_" + f.name)
        out.append((name, kind, field(default=default, metadata={"help": help_text})))
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

# LLaVA flags that train (or quantize) what PLAST freezes: (flag, conflicts(value), why and fix).
# tune_mm_mlp_adapter is a model argument, present only once train() has copied it into args.
_LLAVA_CONFLICTS = (
    ("lora_enable", bool, "PLAST fine-tunes whole decoder layers, LoRA adds adapters to all of them. "
                          "Drop --lora_enable (or drop --plast_layers for LoRA)."),
    ("bits", lambda bits: bits in (4, 8), "quantized weights cannot be fine-tuned directly. "
                                          "Use --bits 16 (the default) with bf16/fp16."),
    ("unfreeze_mm_vision_tower", bool, "PLAST keeps the vision tower frozen. Drop --unfreeze_mm_vision_tower."),
    ("mm_tunable_parts", bool, "PLAST decides what is trained (only the selected layers). Drop --mm_tunable_parts."),
    ("tune_mm_mlp_adapter", bool, "it trains (and saves) only the projector. Drop --tune_mm_mlp_adapter; "
                                  "PLAST starts from a finished LLaVA checkpoint."),
)


def plast_enabled(args) -> bool:
    # `is not None`, not truthiness: `--plast_layers ""` (an unset shell variable) must be refused,
    # not read as "PLAST off", which would silently fine-tune the whole model.
    return getattr(args, "plast_layers", None) is not None


def selection_options(args) -> SelectionOptions:
    """The ``SelectionOptions`` that ``--plast_*`` flags describe (unset --plast_modules: 'layer'),
    validated as they are built; an invalid flag is one PlastError naming it."""
    values = {f.name: getattr(args, _RENAMED.get(f.name, "plast_" + f.name))
              for f in dataclasses.fields(SelectionOptions)}
    try:
        return SelectionOptions(**{**values, "modules": values["modules"] or "layer"})
    except PlastError as err:
        raise PlastError(f"PLAST option: {err} (flags are named --plast_<option>)") from None


def check_plast_arguments(args) -> None:
    """Validate the PLAST flags and refuse conflicting LLaVA flags (``__post_init__`` calls it, and
    the trainer hook again). No-op when PLAST is off."""
    if not plast_enabled(args):
        return
    layers = str(args.plast_layers).strip()
    if not layers:
        raise PlastError(
            f"--plast_layers is empty ({args.plast_layers!r}; an unset shell variable?): give 'auto', a layer "
            f"spec such as '0-4', or a selection file; drop the flag only to fine-tune without PLAST"
        )
    if layers == "auto" and not args.plast_probe_data:
        raise PlastError(
            "--plast_layers auto needs --plast_probe_data (parallel questions, e.g. a .jsonl with "
            "id, lang, question), or run `plast select` first and pass the selection file to --plast_layers"
        )
    for flag, conflicts, why in _LLAVA_CONFLICTS:
        value = getattr(args, flag, None)
        if conflicts(value):
            shown = f"--bits {value}" if flag == "bits" else f"--{flag}"
            raise PlastError(f"{shown} conflicts with --plast_layers: {why}")
    if args.plast_probe_samples is not None and args.plast_probe_samples < 1:
        raise PlastError(f"--plast_probe_samples must be positive, got {args.plast_probe_samples}")
    if args.plast_languages:
        from plast_plugin.data.languages import parse_language_list

        try:
            parse_language_list(args.plast_languages)
        except PlastError as err:
            raise PlastError(f"--plast_languages: {err}") from None
    options = selection_options(args)
    # One meaning each: --plast_layers says which layers (auto, a spec, a file); --plast_rule says
    # how `auto` chooses from the probe's statistics. No combination may probe and then ignore it.
    rule = options.selection_rule
    if layers == "auto" and rule.is_spec:
        raise PlastError(
            f"--plast_layers auto with --plast_rule {rule.text}: that rule is a layer spec, so the probe would "
            f"run and its result be ignored. An explicit layer choice goes in --plast_layers: use "
            f"--plast_layers {rule.text} and drop --plast_rule (or keep --plast_layers auto with a statistic "
            f"rule: auto, msd-above:X, msd-top:K, msd-above-max:F)"
        )
    if layers != "auto" and rule.text != SelectionOptions.rule:
        raise PlastError(
            f"--plast_rule {rule.text} with --plast_layers {layers}: the rule chooses from the statistics that "
            f"only --plast_layers auto computes, so here it would be ignored. Drop --plast_rule (or use "
            f"--plast_layers auto --plast_probe_data ... to select with it)"
        )
    if layers == "auto":
        _check_probe_data(args)


def _check_probe_data(args) -> None:
    """Read --plast_probe_data now, as the probe will: data without the pivot (or not parallel) is
    refused before the model is loaded and DeepSpeed started (minutes at 7B), not after. A resumed
    run reuses output_dir's selection file and never reads it."""
    from pathlib import Path

    from plast_plugin.core.selection_file import SELECTION_FILENAME

    if getattr(args, "output_dir", None) and (Path(args.output_dir) / SELECTION_FILENAME).exists():
        return
    probe_questions_of(args)


def probe_questions_of(args):
    """The parallel questions --plast_probe_data, --plast_languages, --plast_pivot and
    --plast_probe_samples describe; bad data is one PlastError naming the flags."""
    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.data.parallel_data import load_parallel_questions

    sources = [s.strip() for s in str(args.plast_probe_data).split(",") if s.strip()]
    languages = parse_language_list(args.plast_languages) if args.plast_languages else None
    try:
        return load_parallel_questions(sources, languages=languages, pivot=args.plast_pivot,
                                       max_samples=args.plast_probe_samples)
    except PlastError as err:
        # the data layer names `plast select`'s --pivot; here the flag is --plast_pivot
        raise PlastError(f"--plast_probe_data: {str(err).replace('--pivot', '--plast_pivot')}") from None


def make_training_arguments(base: type) -> type:
    """``base`` (LLaVA's TrainingArguments) plus the PLAST fields, validated in ``__post_init__``.

    The class keeps the name and module of ``base``'s module attribute (``llava.train.train.
    TrainingArguments``) so the Trainer can pickle it into ``training_args.bin``
    (docs/troubleshooting.md pitfall 2), and so that file also loads where PLAST is not installed.
    """
    if getattr(base, "__plast__", False):
        return base

    def __post_init__(self):
        base.__post_init__(self)
        check_plast_arguments(self)

    namespace = {"__post_init__": __post_init__, "__plast__": True, "__module__": base.__module__,
                 "__qualname__": base.__qualname__,
                 "__doc__": (base.__doc__ or "") + "\n\nWith PLAST's --plast_* flags."}
    # PLAST first: its fields all have defaults and must come after output_dir.
    return dataclass(type(base.__name__, (PlastArguments, base), namespace), repr=False, eq=False)
