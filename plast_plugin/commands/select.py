"""`plast select`: probe a model on parallel questions, write plast_layers.json + plot."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from plast_plugin.core.options import SelectionOptions

DATA_HELP = ("parallel questions: a .jsonl (id, lang, question[, image]) or VLMEvalKit .tsv files, "
             "one per language ('mmmb_cn.tsv' or 'zh=path.tsv')")


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per SelectionOptions field, with the field's help text and default."""
    for field in dataclasses.fields(SelectionOptions):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['help']} (default: {field.default})"
        how = ({"action": argparse.BooleanOptionalAction} if field.type in (bool, "bool")
               else {"type": int if field.type in (int, "int") else str})
        parser.add_argument(flag, dest=field.name, default=field.default, help=help_text, **how)


def options_from_args(args: argparse.Namespace) -> SelectionOptions:
    return SelectionOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SelectionOptions)})


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "select",
        help="probe a model on parallel questions and choose its language-specific layers",
        description="Probe MODEL on parallel multilingual questions, compute per-layer statistics, choose "
        "layers, and write OUT/plast_layers.json and OUT/plast_layers.png. Under torchrun each rank probes "
        "a shard and the counts are summed.",
    )
    parser.add_argument("--model", required=True,
                        help="model directory or hub name (official LLaVA, llava-hf, LLaVA-NeXT-hf; Qwen2.5-VL, "
                        "Qwen3-VL, LLaVA-OneVision-hf, InternVL-hf with their processor; or a causal LM)")
    parser.add_argument("--revision", default=None,
                        help="hub branch, tag or commit of --model (default: main); ignored for a local folder")
    parser.add_argument("--data", required=True, nargs="+", help=DATA_HELP)
    parser.add_argument("--languages", default=None, help="comma-separated codes, e.g. zh,pt,ar,tr,ru (default: all in the data)")
    parser.add_argument("--pivot", default="en", help="the reference language (default: en)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--max-samples", type=int, default=None, help="use the first N questions of each language")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    parser.add_argument("--no-plot", action="store_true", help="write only the JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_option_flags(parser)
    parser.set_defaults(func=run)


def _init_distributed(device: str) -> str:
    """Under torchrun: join the process group, one device per local rank (the device returned)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch
    import torch.distributed as dist

    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return device if use_cuda else "cpu"


def format_table(selection) -> str:
    languages = list(selection.layers[0].overlap) if selection.layers else []
    header = f"{'layer':>5} " + " ".join(f"{'R_' + lang:>7}" for lang in languages) + f" {'noise':>7} {'MSD':>10}  selected"
    lines = [header]
    for record in selection.layers:
        mark = "  <==" if record.layer in selection.selected_layers else ""
        lines.append(
            f"{record.layer:>5} " + " ".join(f"{record.overlap[lang]:>7.3f}" for lang in languages)
            + f" {record.noise_overlap:>7.3f} {record.msd:>10.3e}{mark}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from plast_plugin.core import ranks
    from plast_plugin.errors import PlastError
    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.models.loading import load_for_probe
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.pipeline import run_selection, write_selection

    options = options_from_args(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before the probe, not after it
        raise PlastError(f"--out {out} is an existing file; give a folder for plast_layers.json and the plot")
    languages = parse_language_list(args.languages) if args.languages else None
    # Data errors surface before the model is loaded.
    questions = load_parallel_questions(args.data, languages, args.pivot, args.max_samples)
    device = _init_distributed(args.device)
    model, tokenizer, image_processor = load_for_probe(args.model, device, args.dtype, revision=args.revision)
    selection = run_selection(model, tokenizer, questions, options, image_processor=image_processor,
                              name_or_path=args.model, progress=not args.quiet)
    if ranks.rank() != 0:
        return 0
    path = write_selection(selection, args.out, plot=not args.no_plot)
    print(format_table(selection))
    trainable = selection.trainable
    print(f"languages: {', '.join(questions.other_languages)} vs pivot {questions.pivot}; "
          f"{len(questions.ids)} questions each")
    print(f"selected layers ({selection.rule}): {selection.selected_layers} -> "
          f"{trainable['trainable_params']:,} of {trainable['total_params']:,} parameters "
          f"({100 * trainable['fraction']:.2f}%, modules={trainable['modules']})")
    print(f"wrote {path}" + ("" if args.no_plot else f" and {path.parent / 'plast_layers.png'}"))
    return 0
