"""`plast ablate`: does the selection beat other layer sets of the same trainable budget, on this model?

Trains the selection and equal-budget alternatives (first:K, last:K, R random draws of K layers)
for S seeds each through the user's own training command (LLaVA's train() with the plast
plugin), scores every run on held-out parallel questions (translation loss per language and
question), and reports means and 95% intervals over seeds, the paired difference PLAST minus each
alternative, and a verdict per alternative. With --plast-eval it also scores every run on lmms-eval
tasks through the eval env's `plast eval` (accuracy per task, paired by seed and question). Needs the
training environment (the `llava` package).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from plast_plugin.errors import PlastError

DEFAULT_LAUNCHER = f"{shlex.quote(sys.executable)} -m plast_plugin.llava.train"
# Decided by the ablation for each run; given in the training arguments they would make runs unequal.
CONTROLLED = {"--plast_layers": "the layers come from the plan (--selection, --alternatives)",
              "--plast_modules": "use plast ablate --modules",
              "--output_dir": "each run trains into OUT/runs/<run>/train",
              "--seed": "the seeds are plast ablate --seeds",
              "--data_seed": "it would give every seed the same data order",
              "--plast_probe_data": "the ablation trains fixed layer sets, it does not probe"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="train the selection and equal-budget alternatives over seeds; is PLAST's choice better?",
        description=__doc__.split("\n\n")[1] + " Everything after `--` is passed to every training run "
        "(model, data, steps, learning rate, --deepspeed ...); the ablation adds --plast_layers, "
        "--plast_modules, --output_dir and --seed. A killed ablation continues when run again with the same "
        "arguments.",
        usage="plast ablate --selection FILE --heldout FILE --out DIR [options] -- TRAINING ARGUMENTS",
    )
    parser.add_argument("--selection", required=True, help="the selection file (plast_layers.json) to test; "
                        "the ablation's verdicts are recorded in it")
    parser.add_argument("--heldout", required=True, nargs="+",
                        help="held-out parallel questions (same formats as `plast select --data`), never trained on")
    parser.add_argument("--languages", default=None, help="comma-separated languages to score, e.g. zh,pt,ar,tr,ru "
                        "(default: all in --heldout but the pivot)")
    parser.add_argument("--pivot", default="en", help="target language of the translations (default: en)")
    parser.add_argument("--out", required=True, help="run folder (created; an existing one of the same plan is continued)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per alternative, at least 2 (default: 3)")
    parser.add_argument("--random-draws", type=int, default=3, help="random alternatives R (default: 3)")
    parser.add_argument("--alternatives", default="first,last,random",
                        help="comma-separated subset of first,last,random (default: all three)")
    parser.add_argument("--modules", default=None, choices=("layer", "mlp", "attn"),
                        help="what of each layer is trained (default: the selection file's, else layer)")
    parser.add_argument("--launcher", default=DEFAULT_LAUNCHER,
                        help="command that runs LLaVA's train() with the plugin, e.g. "
                        "'deepspeed --num_gpus 8 llava/train/train_mem.py' (default: %(default)s)")
    parser.add_argument("--template", default=None,
                        help="human turn of the held-out translation prompts, as given to `plast build-data` "
                        "(default: build-data's default)")
    parser.add_argument("--device", default="auto", help="device for scoring (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="dtype for scoring (default: auto)")
    parser.add_argument("--score-batch-size", type=int, default=16, help="held-out questions per forward pass")
    parser.add_argument("--plast-eval", default=None, metavar="PLAST",
                        help="also score every run on lmms-eval tasks: the eval env's plast (e.g. "
                        ".envs/eval/bin/plast), which converts each run's checkpoint (plast export --to-hf) and "
                        "evaluates it (plast eval) before the checkpoint is deleted")
    parser.add_argument("--eval-args", default=None, metavar="ARGS",
                        help="options of every `plast eval`, as one string, e.g. \"--benchmarks mmbench_ml "
                        "--languages en,zh --device cpu\" (not --output or --baseline: set per run; a single option "
                        "is written --eval-args=--option)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every run's trained model (default: deleted once scored)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("train_args", nargs="*", metavar="-- TRAINING ARGUMENTS",
                        help="arguments of LLaVA's train(), after `--`")
    parser.set_defaults(func=run)


def _underscored(flag: str) -> str:
    return "--" + flag[2:].replace("-", "_")


def _flag_value(args: list[str], name: str, default=None):
    """The value of training flag ``name`` (underscore spelling) in either spelling HfArgumentParser
    takes (``--model_max_length`` / ``--model-max-length``), as ``--flag value`` or ``--flag=value``."""
    for i, item in enumerate(args):
        flag, has_value, value = item.partition("=")
        if not flag.startswith("--") or _underscored(flag) != name:
            continue
        if has_value:
            return value
        if i + 1 < len(args):
            return args[i + 1]
    return default


def check_training_arguments(train_args: list[str]) -> str:
    """Refuse flags the ablation sets itself; return --model_name_or_path."""
    # HfArgumentParser takes --output-dir for --output_dir as well: compare the underscore spelling.
    given = {_underscored(a.split("=", 1)[0]): a.split("=", 1)[0] for a in train_args if a.startswith("--")}
    for flag, why in CONTROLLED.items():
        if flag in given:
            raise PlastError(f"training argument {given[flag]} is set by plast ablate for each run ({why}); remove it")
    model = _flag_value(train_args, "--model_name_or_path")
    if not model:
        raise PlastError("no --model_name_or_path in the training arguments: give LLaVA's train() arguments after "
                         "`--`, e.g. plast ablate ... -- --model_name_or_path MODEL --data_path train.json ...")
    return model


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _losses_of(model, tokenizer, questions, args, conv_version: str, max_length: int) -> dict:
    from plast_plugin.data.translation_data import DEFAULT_TEMPLATE
    from plast_plugin.models.translation_loss import translation_losses

    result = translation_losses(model, tokenizer, questions, template=args.template or DEFAULT_TEMPLATE,
                                conv_version=conv_version, batch_size=args.score_batch_size, fast=True,
                                model_max_length=max_length)
    return {lang: {qid: [s, t] for qid, (s, t) in r.per_question.items()} for lang, r in result.items()}


def run(args) -> int:
    import datetime
    import json

    try:
        import llava  # noqa: F401
    except ImportError:
        raise PlastError("plast ablate trains with LLaVA's train() and needs the training environment "
                         "(the `llava` package); run it with that environment's plast") from None
    from plast_plugin.ablation import report
    from plast_plugin.ablation.lmms_scoring import check_arguments, evaluate_run, parse_eval_options
    from plast_plugin.ablation.plan import check_budgets, check_seeds, file_sha256, make_plan, parse_alternatives
    from plast_plugin.ablation.runner import default_env, load_result, prepare_run_folder, run_all
    from plast_plugin.atomic import write_text_atomic
    from plast_plugin.core.freeze import trainable_fraction
    from plast_plugin.core.model_layout import find_decoder_layers
    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.models.loading import load_for_probe
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile

    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    model_path = check_training_arguments(train_args)
    check_seeds(args.seeds)
    alternatives = parse_alternatives(args.alternatives)
    eval_scoring = parse_eval_options(args.plast_eval, args.eval_args)
    if eval_scoring is not None:
        check_arguments(eval_scoring, default_env())
    launcher = shlex.split(args.launcher)
    if not launcher:
        raise PlastError("--launcher is empty; give the command that runs training, e.g. the default")
    selection_path = Path(args.selection)
    if selection_path.is_dir():
        from plast_plugin.core.selection_file import SELECTION_FILENAME

        selection_path = selection_path / SELECTION_FILENAME
    selection = SelectionFile.load(selection_path)
    modules = args.modules or selection.options.get("modules") or "layer"
    languages = parse_language_list(args.languages) if args.languages else None
    heldout = load_parallel_questions(args.heldout, languages=languages, pivot=args.pivot)
    conv_version = _flag_value(train_args, "--version", "v0")  # LLaVA's ModelArguments default
    max_length = int(_flag_value(train_args, "--model_max_length", "512"))  # LLaVA's TrainingArguments default
    out = Path(args.out)

    import transformers

    # LLaVA checkpoints carry their vision tower's weights, which loading lists as "not used"; noise here.
    transformers.logging.set_verbosity_error()
    print(f"loading {model_path} (budgets, identity, untrained score)", flush=True)
    model, tokenizer, _ = load_for_probe(model_path, args.device, args.dtype)
    layout = find_decoder_layers(model)  # once, for the identity check and every budget
    # a selection made for a model of other shapes is refused here; another name or architecture warned
    for warning in selection.check_identity(model, layout=layout, name_or_path=model_path):
        print(f"plast ablate: WARNING: {warning}", file=sys.stderr)
    identity = ModelIdentity.of(model, model_path, layout=layout)
    plan = make_plan(
        model=model_path, num_layers=identity.num_layers, selection=selection.selected_layers, modules=modules,
        seeds=args.seeds, alternatives=alternatives, random_draws=args.random_draws,
        training={"launcher": launcher, "arguments": train_args},
        scoring={"heldout": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.heldout],
                 "languages": list(heldout.other_languages), "pivot": heldout.pivot,
                 "template": args.template, "conv_version": conv_version, "model_max_length": max_length,
                 # only with --plast-eval, so a loss-only plan stays the plan it was
                 **({"eval": eval_scoring.record()} if eval_scoring else {})},
    )
    budgets = {layers: trainable_fraction(model, list(layers), modules, layout=layout).trainable_params
               for layers in {run.layers for run in plan.runs}}
    budget = check_budgets(plan, budgets)
    prepare_run_folder(out, plan)
    print(f"plan: {len(plan.runs)} runs = {len(plan.alternatives)} alternatives x {len(plan.seeds)} seeds, "
          f"{len(selection.selected_layers)} layers ({modules}) = {budget:,} trainable parameters each; {out / 'plan.json'}",
          flush=True)
    base_folder = out / "base"
    base = load_result(base_folder)
    if base is None:
        base = {"run": "base", "losses": _losses_of(model, tokenizer, heldout, args, conv_version, max_length)}
        write_text_atomic(base_folder / "result.json", json.dumps(base, indent=1) + "\n")
    del model
    _release_memory()  # the training runs need the accelerator's memory this process cached

    def write_selection(run, path: Path) -> None:
        SelectionFile(selected_layers=list(run.layers), model=identity, rule=f"plast ablate: {run.alternative}",
                      options={"modules": modules}).save(path)

    def score(train_dir: Path) -> dict:
        trained, trained_tokenizer, _ = load_for_probe(str(train_dir), args.device, args.dtype)
        losses = _losses_of(trained, trained_tokenizer, heldout, args, conv_version, max_length)
        del trained
        _release_memory()
        return losses

    def evaluate(train_dir: Path, folder: Path) -> dict:
        return evaluate_run(eval_scoring, train_dir, folder, default_env(), keep_model=args.keep_checkpoints)

    results = run_all(plan, out, progress=not args.quiet, launcher=launcher, train_args=train_args,
                      write_selection=write_selection, score=score, keep_checkpoints=args.keep_checkpoints,
                      env=default_env(), evaluate=evaluate if eval_scoring is not None else None)
    summary = report.summarize(plan, results, base)
    written = report.write_outputs(summary, out)
    print()
    print(report.format_table(summary))
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    # Reload: the file may have changed while the runs trained; keep everything, add the record.
    selection = SelectionFile.load(selection_path)
    selection.ablation = report.selection_record(summary, out, date)
    selection.save(selection_path)
    print(f"\nwrote {', '.join(str(p) for p in written[:2])} and {len(written) - 2} plots; "
          f"recorded the verdicts in {selection_path}")
    return 0
