"""`run_selection`: probe -> statistics -> rule -> selection file. Plain torch; the model
family adapters are duck-typed, so this works for LLaVA and plain LMs alike."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.core.freeze import trainable_fraction
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import ParallelQuestions
from plast_plugin.core.probe import ProbeCounts, run_probe
from plast_plugin.models.probe_inputs import make_batches, pad_batch, split_pivot
from plast_plugin.models.probe_models import family_for
from plast_plugin.core.selection import select_layers
from plast_plugin.core.selection_file import PLOT_FILENAME, SELECTION_FILENAME, ModelIdentity, SelectionFile
from plast_plugin.core.statistics import compute_statistics, pivot_halves


def _use_images(options: SelectionOptions, questions: ParallelQuestions, family) -> bool:
    complete = len(questions.images) == len(questions.ids) and len(questions.ids) > 0
    if options.images == "off":
        return False
    if options.images == "on" or options.positions == "image":
        if not complete:
            raise PlastError(
                f"images are required (images={options.images!r}, positions={options.positions!r}) but only "
                f"{len(questions.images)} of {len(questions.ids)} questions have one"
            )
        if not family.supports_images:
            raise PlastError(f"this model ({family.name}) has no vision tower; use images='off'")
        return True
    return complete and family.supports_images


class BelowNoiseFloorWarning(UserWarning):
    """A selected layer's MSD is below its noise floor."""


def max_positions(model) -> int | None:
    """The longest sequence the model's positions cover (None when the config does not say)."""
    config = getattr(model, "config", None)
    for candidate in (config, getattr(config, "text_config", None)):
        value = getattr(candidate, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _question_token_budget(model, tokenizer, options: SelectionOptions, image_ids, family) -> tuple[int, int | None]:
    """(question tokens allowed, the model's position limit): max_question_tokens, lowered so that
    the whole prompt (system text, image features, suffix) fits the model's positions."""
    limit = max_positions(model)
    if limit is None:
        return options.max_question_tokens, None
    around = len(family.encode(tokenizer, "", prompt=options.prompt, conv_template=options.conv_template,
                               max_question_tokens=0, image_ids=image_ids, group=0))
    if image_ids is not None and family.name == "llava":
        # The official LLaVA's one image id becomes the vision tower's patch features.
        tower = model.get_vision_tower()
        around += int(getattr(tower, "num_patches", 0) or 0) - 1
    budget = limit - around
    if budget < 1:
        raise PlastError(
            f"the prompt around the question ({around} positions with options prompt={options.prompt!r}) "
            f"already fills the model's {limit} positions; use prompt='plain' or images='off'"
        )
    return min(options.max_question_tokens, budget), limit


# Questions per probe forward when the options leave it open (batch_size 0): a GPU has room for
# far more than a CPU thread can use well.
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 8, 32


def default_batch_size(device) -> int:
    return GPU_BATCH_SIZE if getattr(device, "type", str(device)).startswith("cuda") else CPU_BATCH_SIZE


@dataclass
class ProbeResult:
    counts: ProbeCounts
    groups: list[str]  # names of the first axis of counts: languages, then the pivot halves
    images_used: bool


def probe_questions(model, tokenizer, questions: ParallelQuestions, options: SelectionOptions, *,
                    image_processor=None, progress: bool = True, padding_side: str = "right") -> ProbeResult:
    """Activation counts of every language (and both pivot halves) over `questions`."""
    layout = find_decoder_layers(model)
    family = family_for(model, layout, image_processor)
    with_images = _use_images(options, questions, family)
    image_ids = family.image_ids() if with_images else None

    groups = [*questions.other_languages, *pivot_halves(questions.pivot)]
    halves = split_pivot(len(questions.ids), options.seed)
    question_limit, positions_limit = _question_token_budget(model, tokenizer, options, image_ids, family)
    prompts = []
    for lang in [*questions.other_languages, questions.pivot]:
        for position, qid in enumerate(questions.ids):
            group = groups.index(lang) if lang != questions.pivot else len(groups) - 2 + halves[position]
            prompts.append(family.encode(
                tokenizer, questions.question(qid, lang), prompt=options.prompt, conv_template=options.conv_template,
                max_question_tokens=question_limit, image_ids=image_ids, group=group,
                image=questions.image(qid) if with_images else None, question_index=position,
            ))
    if question_limit < options.max_question_tokens:
        clipped = sum(1 for p in prompts if p.question_tokens > question_limit)
        if clipped:
            warnings.warn(
                f"{clipped} question(s) do not fit the model's {positions_limit} positions together with the "
                f"prompt around them: clipped to {question_limit} question tokens (max_question_tokens is "
                f"{options.max_question_tokens})", UserWarning, stacklevel=2)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    batch_size = options.batch_size or default_batch_size(family.device)
    batches = [pad_batch(chunk, options.positions, pad_id, padding_side)
               for chunk in make_batches(prompts, batch_size)]
    counts = run_probe(family, layout, batches, len(groups), positions=options.positions, progress=progress)
    return ProbeResult(counts, groups, with_images)


def run_selection(model, tokenizer, questions: ParallelQuestions, options: SelectionOptions | None = None, *,
                  image_processor=None, name_or_path: str | None = None, progress: bool = True,
                  padding_side: str = "right") -> SelectionFile:
    """Probe, statistics, rule: the selection file for `model`."""
    options = options or SelectionOptions()  # valid by construction; its rule parsed once
    rule = options.selection_rule
    num_layers = find_decoder_layers(model).num_layers
    rule.check(num_layers, options.seed)  # fail before the expensive part
    probed = probe_questions(model, tokenizer, questions, options, image_processor=image_processor,
                             progress=progress, padding_side=padding_side)
    counts, groups, with_images = probed.counts, probed.groups, probed.images_used

    stats = compute_statistics(counts.counts, counts.tokens, groups, questions.pivot, options)
    selected = select_layers(stats.msd if rule.needs_statistics else None, rule,
                             num_layers, seed=options.seed, contiguous_shallow=options.contiguous_shallow)
    trainable = trainable_fraction(model, selected, options.modules)
    data = questions.describe()
    if stats.undefined:
        excluded = [layer for layer in stats.undefined if math.isnan(float(stats.msd[layer]))]
        data["empty_activated_sets"] = {str(layer): groups for layer, groups in stats.undefined.items()}
        data["undefined_msd_layers"] = excluded
        if rule.needs_statistics:
            warnings.warn(
                "no activated neuron (empty activated set, overlap undefined) in " + "; ".join(
                    f"layer {layer} for {', '.join(groups)}" for layer, groups in stats.undefined.items())
                + (f". MSD ({options.statistic}) is undefined in layer(s) {excluded}: the rule excluded them"
                   if excluded else f". MSD ({options.statistic}) stays defined there")
                + " (marked in the selection file)", UserWarning, stacklevel=2)
    _mark_below_noise_floor(selected, stats, data)
    data["images_used"] = with_images
    data["tokens_counted"] = {g: int(t) for g, t in zip(groups, counts.tokens.tolist())}
    return SelectionFile(
        selected_layers=selected,
        model=ModelIdentity.of(model, name_or_path),
        rule=options.rule,
        options=options.to_dict(),
        data=data,
        layers=stats.per_layer_records(),
        trainable=trainable.to_dict(),
    )


def _mark_below_noise_floor(selected, stats, data: dict) -> None:
    """A selected layer whose MSD is below its own noise floor (the pivot against itself) differs
    between languages less than the pivot's two halves do: warn, and record it in the file."""
    below = [{"layer": layer, "msd": float(stats.msd[layer]), "noise_msd": float(stats.noise_msd[layer])}
             for layer in selected if float(stats.msd[layer]) < float(stats.noise_msd[layer])]
    if below:
        data["selected_below_noise_floor"] = below
        warnings.warn(
            "selected layer(s) whose MSD is below their own noise floor (pivot vs pivot): " + "; ".join(
                f"layer {b['layer']} MSD {b['msd']:.3g} < noise {b['noise_msd']:.3g}" for b in below)
            + ". Their language difference is not distinguishable from sampling noise: more probe questions, "
            "or another rule, may choose better (marked in the selection file as data.selected_below_noise_floor)",
            BelowNoiseFloorWarning, stacklevel=3)


def write_selection(selection: SelectionFile, out_dir: str | os.PathLike, *, plot: bool = True) -> Path:
    """Write `plast_layers.json` (and the plot) into `out_dir`. The plot is rendered first, so a
    failure leaves no selection file behind. The two cannot be replaced in one step, so an earlier
    plot is removed before the JSON changes and the new one put in place after it: a run killed at
    any point leaves a JSON with its own plot or with none, never beside another selection's plot."""
    from plast_plugin.atomic import atomic_output_file
    from plast_plugin.plot import plot_selection

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PlastError(f"--out {out_dir} is an existing file; give a folder for {SELECTION_FILENAME} and the plot")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not plot:
        (out_dir / PLOT_FILENAME).unlink(missing_ok=True)  # it would show another selection
        return selection.save(out_dir / SELECTION_FILENAME)
    with atomic_output_file(out_dir / PLOT_FILENAME) as tmp:
        plot_selection(selection, tmp)
        (out_dir / PLOT_FILENAME).unlink(missing_ok=True)
        path = selection.save(out_dir / SELECTION_FILENAME)
    return path
