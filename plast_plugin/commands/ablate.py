"""`plast ablate`: does the selection beat other layer sets of the same trainable budget, on this model,
and how does it compare with LLaVA's own full and LoRA fine-tuning?

Trains the selection and its alternatives for S seeds each through the user's own training command
(LLaVA's train() with the plast plugin): budget-matched first:K, last:K and R random draws of K layers;
rule:<rule>, the layers a statistic rule picks from the selection file's own statistics; full and lora,
LLaVA's whole-model and LoRA (r/alpha of LLaVA-1.5) fine-tuning, never budget-matched. Every run is
scored on held-out data by three measures: the translation loss (the training objective, --heldout); with
--problems, the understanding gap (NLL of an English reference answer given the question in a language,
minus given the English question) and English retention (that NLL given the English question). The
report gives means and 95% intervals over seeds, PLAST minus each alternative paired by seed and
question, and a verdict per measure; with --plast-eval, lmms-eval accuracy per task as well. With
--trainer llava (default) it needs the training environment (the `llava` package); --trainer hf trains
transformers models (llava-hf, LLaVA-NeXT, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL) through the
Hugging Face Trainer path, scripts/train_hf_example.py, in the environment that has their classes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import sys
from pathlib import Path

# The ablation's own modules are plain Python (no torch): imported here; the model side lazily.
from plast_plugin.ablation import report
from plast_plugin.ablation.lmms_scoring import check_arguments, evaluate_run, parse_eval_options
from plast_plugin.ablation.plan import (DEFAULT_ALTERNATIVES, RULE_PREFIX, WHOLE_MODEL, check_budgets, check_seeds,
                                       file_sha256, make_plan, parse_alternatives)
from plast_plugin.ablation.runner import default_env, load_result, prepare_run_folder, run_all
from plast_plugin.atomic import write_text_atomic
from plast_plugin.errors import PlastError

DEFAULT_LAUNCHER = f"{shlex.quote(sys.executable)} -m plast_plugin.llava.train"
# The HF Trainer path's script, beside the package in a checkout (a wheel install has no scripts/).
HF_TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_hf_example.py"
# Decided by the ablation for each run; given in the training arguments they would make runs unequal.
CONTROLLED = {"--plast_layers": "the layers come from the plan (--selection, --alternatives)",
              "--plast_modules": "use plast ablate --modules",
              "--output_dir": "each run trains into OUT/runs/<run>/train",
              "--seed": "the seeds are plast ablate --seeds",
              "--data_seed": "it would give every seed the same data order",
              "--plast_probe_data": "the ablation trains fixed layer sets, it does not probe",
              "--lora_enable": "LoRA is the alternative 'lora' (--alternatives); PLAST's runs train whole layers",
              "--lora_r": "the lora alternative uses LLaVA-1.5's r and alpha",
              "--lora_alpha": "the lora alternative uses LLaVA-1.5's r and alpha"}
# The HF Trainer script's names for what the ablation decides (its layers are the selection file's).
HF_CONTROLLED = {"--selection": CONTROLLED["--plast_layers"], "--output_dir": CONTROLLED["--output_dir"],
                 "--seed": CONTROLLED["--seed"]}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="train the selection and its alternatives over seeds; is PLAST's choice better, by which measure?",
        description=__doc__.split("\n\n")[1] + " Everything after `--` is passed to every training run; the "
        "ablation adds --plast_layers and --plast_modules (not to full and lora runs), LLaVA's LoRA flags (to lora "
        "runs), --output_dir and --seed. A killed ablation continues "
        "when run again with the same arguments.",
        usage="plast ablate --selection FILE --heldout FILE --out DIR [options] -- TRAINING ARGUMENTS",
    )
    parser.add_argument("--selection", required=True, help="the selection file (plast_layers.json) to test; "
                        "the ablation's verdicts are recorded in it")
    parser.add_argument("--heldout", required=True, nargs="+",
                        help="held-out parallel questions (same formats as `plast select --data`), never trained on")
    parser.add_argument("--problems", default=None, nargs="+", metavar="FILE",
                        help="held-out problems for the understanding gap and English retention: parallel questions "
                        "(.jsonl with id, lang, question) whose pivot rows also carry 'answer', the English reference "
                        "answer; from problems never probed or trained on (scripts/demo_assets.py writes one)")
    parser.add_argument("--languages", default=None, help="comma-separated languages to score, e.g. zh,pt,ar,tr,ru "
                        "(default: all in --heldout but the pivot)")
    parser.add_argument("--pivot", default="en", help="target language of the translations (default: en)")
    parser.add_argument("--out", required=True, help="run folder (created; an existing one of the same plan is continued)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per alternative, at least 2 (default: 3)")
    parser.add_argument("--random-draws", type=int, default=3, help="random alternatives R (default: 3)")
    parser.add_argument("--alternatives", default=DEFAULT_ALTERNATIVES,
                        help="comma-separated: first, last, random (budget-matched: as many layers as the selection); "
                        "rule:<rule> (the layers a statistic rule, e.g. rule:msd-top:5, picks from the selection file's "
                        "statistics; budget-matched when it picks as many parameters); full, lora (LLaVA's own "
                        "whole-model and LoRA r=128/alpha=256 fine-tuning: reference rows, never budget-matched) "
                        "(default: %(default)s)")
    parser.add_argument("--modules", default=None, choices=("layer", "mlp", "attn"),
                        help="what of each layer is trained (default: the selection file's, else layer)")
    parser.add_argument("--trainer", choices=("llava", "hf"), default="llava",
                        help="llava: LLaVA's train() with the plugin (training args: LLaVA's); hf: the Hugging Face "
                        "Trainer path for transformers models (training args: scripts/train_hf_example.py's, e.g. "
                        "--model M --data train.json --max-steps 200; layer sets only, not full or lora) "
                        "(default: %(default)s)")
    parser.add_argument("--launcher", default=None, help="command that runs training: for llava LLaVA's train() with "
                        "the plugin, e.g. 'deepspeed --num_gpus 8 llava/train/train_mem.py' "
                        f"(default: {DEFAULT_LAUNCHER}); "
                        "for hf the HF Trainer script, e.g. 'torchrun --nproc_per_node 8 scripts/train_hf_example.py' "
                        "(default: this interpreter on the checkout's scripts/train_hf_example.py)")
    parser.add_argument("--template", default=None, help="human turn of the held-out translation prompts, as "
                        "given to `plast build-data` (default: build-data's default)")
    parser.add_argument("--device", default="auto", help="device for scoring (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="dtype for scoring (default: auto)")
    parser.add_argument("--score-batch-size", type=int, default=16, help="held-out questions per forward pass")
    parser.add_argument("--plast-eval", default=None, metavar="PLAST",
                        help="also score every run on lmms-eval tasks with the eval env's plast (e.g. "
                        ".envs/eval/bin/plast): plast export --to-hf, then plast eval, before the checkpoint goes")
    parser.add_argument("--eval-args", default=None, metavar="ARGS",
                        help="options of every `plast eval` as one string, e.g. \"--benchmarks mmbench_ml --languages "
                        "en,zh\" (not --output or --baseline; a single option is written --eval-args=--option)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every run's trained model "
                        "(default: deleted once scored)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("train_args", nargs="*", metavar="-- TRAINING ARGUMENTS",
                        help="arguments of LLaVA's train() (--trainer hf: of the HF Trainer script), after `--`")
    parser.set_defaults(func=run)


def _refuse(message: str):
    raise PlastError(f"the training arguments after `--`: {message}")


def _refuse_controlled(train_args: list[str], controlled: dict[str, str]) -> None:
    """In any spelling (dashes or underscores): a flag the ablation sets itself is refused."""
    spelled = [a.split("=", 1)[0] for a in train_args if a.startswith("--")]
    given = {"--" + flag[2:].replace("-", "_"): flag for flag in spelled}
    for flag, why in controlled.items():
        if flag in given:
            raise PlastError(f"training argument {given[flag]} is set by plast ablate for each run ({why}); remove it")


def check_hf_training_arguments(train_args: list[str]) -> argparse.Namespace:
    """The HF Trainer script's flags the ablation needs (the model, the length it trains at), in the names the
    LLaVA path's flags have; the controlled ones refused. The rest is left to the script."""
    _refuse_controlled(train_args, HF_CONTROLLED)
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.error = _refuse
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-length", "--max_length", dest="max_length", type=int, default=2048)
    known, _ = parser.parse_known_args(train_args)
    if not known.model:
        raise PlastError("no --model in the training arguments: with --trainer hf give the HF Trainer script's "
                         "arguments after `--`, e.g. plast ablate ... --trainer hf -- --model MODEL --data train.json "
                         "--max-steps 200")
    # version None: scored through the model's own chat template, as the HF Trainer path trains it
    return argparse.Namespace(model_name_or_path=known.model, version=None, model_max_length=known.max_length)


def check_training_arguments(train_args: list[str]) -> argparse.Namespace:
    """Refuse flags the ablation sets itself; return the training flags as LLaVA's train() reads them:
    its own HfArgumentParser gives LLaVA's defaults and the installed transformers' spellings. Flags it
    does not know are left to the launcher, which may run another training script."""
    # In any spelling: a controlled flag is refused even where this transformers would not take it.
    _refuse_controlled(train_args, CONTROLLED)
    from llava.train import train as llava_train
    from transformers import HfArgumentParser

    from plast_plugin.llava.arguments import make_training_arguments

    parser = HfArgumentParser((llava_train.ModelArguments, llava_train.DataArguments,
                               make_training_arguments(llava_train.TrainingArguments)))
    parser.error = _refuse  # argparse would print its usage and exit
    # --output_dir is required by TrainingArguments and set per run; model_name_or_path starts as None
    # (not LLaVA's facebook/opt-125m default) to tell a missing flag.
    flags, _ = parser.parse_known_args(["--output_dir", "unused", *train_args],
                                       namespace=argparse.Namespace(model_name_or_path=None))
    if not flags.model_name_or_path:
        raise PlastError("no --model_name_or_path in the training arguments: give LLaVA's train() arguments after "
                         "`--`, e.g. plast ablate ... -- --model_name_or_path MODEL --data_path train.json ...")
    return flags


def saved_params_outside_vision(train_dir: Path) -> int:
    """What LLaVA's full (stage-2) fine-tuning trains: every parameter it saved but the vision tower's,
    counted from the weight files' headers (a tied embedding is saved, and counted, once)."""
    from plast_plugin.checkpoints.weights import count_elements, weight_files

    return count_elements(weight_files(train_dir), keep=lambda name: "vision_tower" not in name)


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _heldout_scorer(args, flags):
    """model, tokenizer -> {"losses": {language: {question id: [nll sum, tokens]}}, and with --problems
    "answers": the same for the reference answers, the pivot included}, with the runs' template and length;
    also returns the held-out questions. A bad --heldout or --problems file is refused here, before training."""
    from plast_plugin.data.languages import parse_language_list
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.data.parallel_problems import load_parallel_problems
    from plast_plugin.data.translation_data import DEFAULT_TEMPLATE
    from plast_plugin.models.translation_loss import answer_losses, translation_losses

    languages = parse_language_list(args.languages) if args.languages else None
    heldout = load_parallel_questions(args.heldout, languages=languages, pivot=args.pivot)
    problems = (load_parallel_problems(args.problems, languages=heldout.languages, pivot=args.pivot)
                if args.problems else None)
    options = {"conv_version": flags.version, "batch_size": args.score_batch_size, "fast": True,
               "model_max_length": flags.model_max_length}

    def per_question(result) -> dict:
        return {lang: {qid: [s, t] for qid, (s, t) in r.per_question.items()} for lang, r in result.items()}

    def measures(model, tokenizer) -> dict:
        out = {"losses": per_question(translation_losses(model, tokenizer, heldout,
                                                         template=args.template or DEFAULT_TEMPLATE, **options))}
        if problems is not None:
            out["answers"] = per_question(answer_losses(model, tokenizer, problems, **options))
        return out

    return heldout, measures


def _rule_layers(alternatives: list[str], selection, num_layers: int) -> dict[str, list[int]]:
    """The layers each rule:<rule> alternative picks from the selection file's MSD, contiguous or not."""
    import torch

    from plast_plugin.core.selection import select_layers

    msd = torch.tensor([record.msd for record in selection.layers], dtype=torch.float64)
    return {alt: select_layers(msd, alt[len(RULE_PREFIX):], num_layers, contiguous_shallow=False)
            for alt in alternatives if alt.startswith(RULE_PREFIX)}


def _plan_on_the_model(args, flags, training: dict, selection, modules: str, alternatives: list[str], eval_scoring,
                       heldout, measures, load_model):
    """Load the model once: check the selection was made for it, plan the runs at one budget, create the
    run folder and score the untrained model. Returns the plan, the model's identity and the base result."""
    import transformers

    from plast_plugin.core.freeze import trainable_fraction
    from plast_plugin.core.selection_file import ModelIdentity

    model_path, out = flags.model_name_or_path, Path(args.out)
    # LLaVA checkpoints carry their vision tower's weights, which loading lists as "not used"; noise here.
    transformers.logging.set_verbosity_error()
    print(f"loading {model_path} (budgets, identity, untrained score)", flush=True)
    model, tokenizer = load_model(model_path)
    # a selection made for a model of other shapes is refused here; another name or architecture warned
    for warning in selection.check_identity(model, name_or_path=model_path):
        print(f"plast ablate: WARNING: {warning}", file=sys.stderr)
    identity = ModelIdentity.of(model, model_path)
    plan = make_plan(
        model=model_path, num_layers=identity.num_layers, selection=selection.selected_layers, modules=modules,
        seeds=args.seeds, alternatives=alternatives, random_draws=args.random_draws,
        rule_layers=_rule_layers(alternatives, selection, identity.num_layers), training=training,
        scoring={"heldout": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.heldout],
                 "languages": list(heldout.other_languages), "pivot": heldout.pivot,
                 "template": args.template, "conv_version": flags.version, "model_max_length": flags.model_max_length,
                 # only with --problems, so a plan without them stays the plan it was
                 **({"problems": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.problems]}
                    if args.problems else {}),
                 # only with --plast-eval, so a loss-only plan stays the plan it was
                 **({"eval": eval_scoring} if eval_scoring else {})},
    )
    budget = check_budgets(plan, {run.name: trainable_fraction(model, list(run.layers), modules).trainable_params
                                  for run in plan.runs if not run.whole_model})
    prepare_run_folder(out, plan)
    print(f"plan: {len(plan.runs)} runs = {len(plan.alternatives)} alternatives x {len(plan.seeds)} seeds, "
          f"{len(selection.selected_layers)} layers ({modules}) = {budget:,} trainable parameters each; {out / 'plan.json'}",
          flush=True)
    for alt in plan.alternatives:
        if alt in WHOLE_MODEL or alt in plan.unmatched:
            what = plan.unmatched.get(alt)
            print(f"  {alt}: NOT budget-matched ({f'{what:,} trainable parameters' if what else 'counted once trained'}): "
                  f"a reference row, not an equal-budget comparison", flush=True)
    base = load_result(out / "base")
    if base is None:
        base = {"run": "base", **measures(model, tokenizer)}
        write_text_atomic(out / "base" / "result.json", json.dumps(base, indent=1) + "\n")
    del model
    _release_memory()  # the training runs need the accelerator's memory this process cached
    return plan, identity, base


def _report(plan, results, base, selection_path: Path, out: Path) -> None:
    """Print and write the tables and plots, and record the verdicts in the selection file."""
    from plast_plugin.core.selection_file import SelectionFile

    summary = report.summarize(plan, results, base)
    written = report.write_outputs(summary, out)
    print("\n" + report.format_table(summary))
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    # Reload: the file may have changed while the runs trained; keep everything, add the record.
    selection = SelectionFile.load(selection_path)
    selection.ablation = report.selection_record(summary, out, date)
    selection.save(selection_path)
    print(f"\nwrote {', '.join(str(p) for p in written[:2])} and {len(written) - 2} plots; "
          f"recorded the verdicts in {selection_path}")


def _load_hf(path: str, device: str, dtype: str):
    """A transformers vision-language model and its processor (which holds the chat template), for scoring:
    the model as `plast select` loads it; the families' loader already returns their processor, llava-hf's
    only its image processor."""
    from transformers import AutoProcessor

    from plast_plugin.models.loading import load_for_probe

    model, _, loaded = load_for_probe(path, device, dtype)
    has_template = callable(getattr(loaded, "apply_chat_template", None))
    return model, loaded if has_template else AutoProcessor.from_pretrained(path)


def _trainer_setup(args, train_args: list[str]):
    """The training flags, the launcher and the model loader of the chosen trainer, checked before anything."""
    if args.trainer == "hf":
        flags = check_hf_training_arguments(train_args)
        if args.launcher is None and not HF_TRAIN_SCRIPT.exists():
            raise PlastError(f"--trainer hf: no {HF_TRAIN_SCRIPT} beside this installation (a wheel install has no "
                             "scripts/); give --launcher 'python path/to/train_hf_example.py'")
        launcher = args.launcher or f"{shlex.quote(sys.executable)} {shlex.quote(str(HF_TRAIN_SCRIPT))}"
        return flags, launcher, lambda path: _load_hf(path, args.device, args.dtype)
    try:
        import llava  # noqa: F401
    except ImportError:
        raise PlastError("plast ablate trains with LLaVA's train() and needs the training environment "
                         "(the `llava` package); run it with that environment's plast, or give --trainer hf for a "
                         "transformers model trained through the HF Trainer path") from None
    from plast_plugin.models.loading import load_for_probe

    flags = check_training_arguments(train_args)
    return flags, args.launcher or DEFAULT_LAUNCHER, lambda path: load_for_probe(path, args.device, args.dtype)[:2]


def run(args) -> int:
    from plast_plugin.core.selection_file import SELECTION_FILENAME, SelectionFile

    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else list(args.train_args)
    flags, launcher, load_model = _trainer_setup(args, train_args)
    check_seeds(args.seeds)
    selection_path = Path(args.selection)
    if selection_path.is_dir():
        selection_path = selection_path / SELECTION_FILENAME
    selection = SelectionFile.load(selection_path)
    alternatives = parse_alternatives(args.alternatives, statistics=any(
        not math.isnan(record.msd) for record in selection.layers))
    whole = [alt for alt in alternatives if alt in WHOLE_MODEL]
    if args.trainer == "hf" and whole:
        raise PlastError(f"--alternatives {','.join(whole)} with --trainer hf: full and lora are LLaVA's own "
                         "fine-tuning (its train()); the HF Trainer path ablates layer sets: first, last, random, "
                         "rule:<rule>")
    eval_scoring = parse_eval_options(args.plast_eval, args.eval_args)
    if eval_scoring is not None and "lora" in alternatives:
        raise PlastError("--plast-eval with the lora alternative: a LoRA run's folder holds LLaVA's adapter, which "
                         "plast export --to-hf does not convert; drop lora from --alternatives or drop --plast-eval")
    if eval_scoring is not None:
        check_arguments(eval_scoring, default_env())
    launcher = shlex.split(launcher)
    if not launcher:
        raise PlastError("--launcher is empty; give the command that runs training, e.g. the default")
    modules = args.modules or selection.options.get("modules") or "layer"
    heldout, measures = _heldout_scorer(args, flags)
    # "trainer" only for the HF path, so a LLaVA plan stays the plan it was
    training = {"launcher": launcher, "arguments": train_args, **({"trainer": "hf"} if args.trainer == "hf" else {})}
    plan, identity, base = _plan_on_the_model(args, flags, training, selection, modules, alternatives, eval_scoring,
                                              heldout, measures, load_model)

    def write_selection(run, path: Path) -> None:
        SelectionFile(selected_layers=list(run.layers), model=identity, rule=f"plast ablate: {run.alternative}",
                      options={"modules": modules}).save(path)

    def score(run, train_dir: Path) -> dict:
        if run.alternative == "lora":  # scored as LLaVA serves it: merged into the base by LLaVA's own loader
            from plast_plugin.llava.lora import load_merged_lora

            trained, trained_tokenizer = load_merged_lora(train_dir, flags.model_name_or_path, args.device, args.dtype)
        else:
            trained, trained_tokenizer = load_model(str(train_dir))
        result = measures(trained, trained_tokenizer)
        del trained
        _release_memory()
        return result

    def whole_model_params(run, train_dir: Path) -> int:
        from plast_plugin.llava.lora import lora_trainable_params

        return lora_trainable_params(train_dir) if run.alternative == "lora" else saved_params_outside_vision(train_dir)

    def evaluate(train_dir: Path, folder: Path) -> dict:
        return evaluate_run(eval_scoring, train_dir, folder, default_env(), keep_model=args.keep_checkpoints,
                            convert=args.trainer == "llava")

    results = run_all(plan, Path(args.out), progress=not args.quiet, launcher=launcher, train_args=train_args,
                      write_selection=write_selection, score=score, whole_model_params=whole_model_params,
                      keep_checkpoints=args.keep_checkpoints,
                      env=default_env(), evaluate=evaluate if eval_scoring is not None else None)
    _report(plan, results, base, selection_path, Path(args.out))
    return 0
