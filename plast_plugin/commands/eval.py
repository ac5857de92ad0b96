"""`plast eval`: run Parrot's MMMB / multilingual MMBench through lmms-eval and check the result.

lmms-eval 0.7.3 finds external tasks only through ``--include_path`` (its ``LMMS_EVAL_PLUGINS``
route appends the path after the task index is built), and its CLI exits 0 even when an
evaluation failed. So this command passes the plugin's task folder, runs ``python -m lmms_eval``
in this interpreter (the eval env), then reads the results file: no scores, exit 1. Settings reach
the tasks as ``PLAST_*`` environment variables (a task YAML cannot take run-time options).
``--baseline CKPT`` converts the official checkpoint with the same converter as the tuned model,
evaluates both alike, and runs ``plast compare`` on the two.

The vision-language families transformers 5 ships run through lmms-eval 0.7.3's own class for each
(:data:`FAMILY_CLASSES`): the task's text in one user turn that the model's own chat template lays
out (the ``model`` chat layout, :mod:`plast_plugin.eval.prompts`); their baseline is the same
family's model, evaluated alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.data.languages import PARROT_LANGUAGES

SHOWN_METRICS = ("acc", "circular_acc", "acc_exact", "circular_acc_exact")
# lmms-eval 0.7.3's class for each vision-language family transformers 5 ships (checkpoint kinds of
# plast_plugin.models.model_source); its llava_hf loads LLaVA-OneVision-hf too.
FAMILY_CLASSES = {"qwen2.5-vl": "qwen2_5_vl", "qwen3-vl": "qwen3_vl", "internvl-hf": "internvl_hf",
                  "llava-onevision-hf": "llava_hf"}
# The lmms-eval classes this command places on a device (their defaults are cuda and device_map
# "auto", after which the Qwen classes move inputs to "cuda" even on a machine without one).
DEVICE_CLASSES = ("llava_hf", "qwen2_5_vl", "qwen3_vl", "internvl_hf")
# lmms-eval's Qwen classes hand images to qwen_vl_utils.process_vision_info, which imports torchvision.
QWEN_VL_UTILS_CLASSES = ("qwen2_5_vl", "qwen3_vl")
JUDGE_FAILURE_LOG = "plast_judge_failures.jsonl"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a llava-hf model on MMMB / multilingual MMBench (Parrot) with lmms-eval",
        description="Runs `python -m lmms_eval` with the plugin's tasks (--include_path), then checks "
        "that results were written. Tasks: mmmb_<lang> (group mmmb) and mmbench_ml_<lang> (group "
        f"mmbench_ml, Parrot's multilingual MMBench-dev, circular scoring), lang in {' '.join(PARROT_LANGUAGES)}. "
        "Official LLaVA checkpoints must first be converted: plast export CKPT --to-hf --out DIR.",
    )
    parser.add_argument("pretrained", nargs="?", default=None,
                        help="model folder or hub id, passed as pretrained=... (a llava-hf model for llava_hf)")
    parser.add_argument("--benchmarks", default="mmmb,mmbench_ml",
                        help="comma list of mmmb, mmbench_ml (default: both)")
    parser.add_argument("--languages", default=",".join(PARROT_LANGUAGES),
                        help="comma list of language codes (cn is accepted for zh; default: all six)")
    parser.add_argument("--parrot-dir", default=None,
                        help="local folder with Parrot's TSVs (sets PLAST_PARROT_DIR; default: that "
                        "variable, else download from the HF dataset AIDC-AI/Parrot-dataset)")
    parser.add_argument("--protocol", choices=("vlmevalkit", "parrot"), default=None,
                        help="prompt protocol: 'vlmevalkit' (default; the token ids VLMEvalKit's LLaVA class "
                        "feeds LLaVA-1.5, as behind the published LLaVA-1.5 rows) or 'parrot' (Parrot's class's "
                        "per-language instructions, image first, in LLaVA's own turns); sets PLAST_EVAL_PROTOCOL "
                        "(default: that variable, else vlmevalkit). See docs/evaluation.md")
    parser.add_argument("--parrot-md5", default=None, metavar="SPEC",
                        help="accept data other than the published files: '<task>=<md5>,...' pins other "
                        "files, 'any' checks nothing (recorded either way); sets PLAST_PARROT_MD5")
    parser.add_argument("--parrot-revision", default=None,
                        help="revision of AIDC-AI/Parrot-dataset to download (sets PLAST_PARROT_REVISION)")
    parser.add_argument("--baseline", default=None, metavar="CKPT",
                        help="also evaluate this official LLaVA checkpoint (folder or hub id, e.g. "
                        "liuhaotian/llava-v1.5-7b), converted with the same converter as the model, and "
                        "compare: OUTPUT/baseline, OUTPUT/model, OUTPUT/compare. For a Qwen2.5-VL, Qwen3-VL, "
                        "InternVL or LLaVA-OneVision model: a model of the same family (folder or hub id, "
                        "e.g. the one it was tuned from), evaluated alike")
    parser.add_argument("--output", default=None, help="lmms-eval --output_path (default: runs/eval/<time>)")
    parser.add_argument("--model", default="llava_hf",
                        help="lmms-eval model name (default: llava_hf, which also loads LLaVA-OneVision-hf); "
                        "qwen2_5_vl, qwen3_vl, internvl_hf for those families")
    parser.add_argument("--model-args", default="",
                        help="extra lmms-eval model args, e.g. 'dtype=bfloat16' (comma separated)")
    parser.add_argument("--device", default=None,
                        help="device / device_map for llava_hf, qwen2_5_vl, qwen3_vl, internvl_hf "
                        "(default: cuda if available, else cpu)")
    parser.add_argument("--limit", type=int, default=None,
                        help="the first N questions of each task (testing only): MMBench keeps each question's "
                        "rotated copies, so circular groups stay whole (unlike lmms-eval's own --limit, which "
                        "cuts rows); sets PLAST_EVAL_LIMIT")
    parser.add_argument("--dry-run", action="store_true", help="print the lmms-eval command and exit")
    parser.add_argument("--show-prompts", type=int, default=None, metavar="N",
                        help="print, for the first N rows of each task, the exact text and token ids the model "
                        "receives under the protocol (llava_hf, qwen2_5_vl, qwen3_vl, internvl_hf: through the "
                        "model's processor and chat template), and exit")
    parser.add_argument("--lmms-eval-args", default="",
                        help="more lmms-eval options as one string, e.g. '--verbosity DEBUG --seed 1'")
    parser.set_defaults(func=run)


def _benchmarks_and_languages(benchmarks: str, languages: str) -> tuple[list[str], list[str]]:
    """The --benchmarks and --languages lists, checked; language codes normalised, order kept."""
    from plast_plugin.eval.parrot_data import BENCHMARKS, parrot_language

    benches = [b.strip() for b in benchmarks.split(",") if b.strip()]
    unknown = [b for b in benches if b not in BENCHMARKS]
    if unknown or not benches:
        raise PlastError(f"unknown benchmark(s) {unknown or benchmarks!r}; use {', '.join(BENCHMARKS)}")
    try:
        langs = list(dict.fromkeys(parrot_language(item) for item in languages.split(",") if item.strip()))
    except PlastError as err:
        raise PlastError(f"--languages: {err}") from None
    if not langs:
        raise PlastError("no languages given")
    return benches, langs


def task_list(benchmarks: str, languages: str) -> list[str]:
    """Group names where all six languages are asked for, else the single tasks."""
    benches, langs = _benchmarks_and_languages(benchmarks, languages)
    if set(langs) == set(PARROT_LANGUAGES):
        return benches
    return [f"{b}_{lang}" for b in benches for lang in langs]


def build_command(args, output: Path, pretrained: str | None) -> list[str]:
    from plast_plugin.eval import tasks_dir

    model_args = []
    if pretrained:
        model_args.append(f"pretrained={pretrained}")
    if args.model in DEVICE_CLASSES:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_args += [f"device_map={device}", f"device={device}"]
    if args.model_args:
        model_args.append(args.model_args)
    cmd = [sys.executable, "-m", "lmms_eval", "--model", args.model,
           "--tasks", ",".join(task_list(args.benchmarks, args.languages)),
           "--include_path", str(tasks_dir()), "--output_path", str(output),
           "--batch_size", "1", "--log_samples"]
    if model_args:
        cmd[5:5] = ["--model_args", ",".join(model_args)]
    return cmd + shlex.split(args.lmms_eval_args or "")


def _check_model(pretrained: str | None, lmms_model: str = "llava_hf") -> str | None:
    """The checkpoint kind of `pretrained` (None without one), refused where `lmms_model` cannot load it."""
    if not pretrained:
        return None
    from plast_plugin.models.model_source import checkpoint_kind, read_config

    config = read_config(pretrained)  # a folder or a hub id; a missing one is one clear error here
    kind = checkpoint_kind(config)
    if kind == "official-llava":
        raise PlastError(
            f"{pretrained} is an official LLaVA checkpoint ({config.get('model_type')}), which transformers 5.x "
            f"cannot load; convert it first: plast export {pretrained} --to-hf --out <dir>")
    if kind in FAMILY_CLASSES and lmms_model in DEVICE_CLASSES and lmms_model != FAMILY_CLASSES[kind]:
        raise PlastError(
            f"{pretrained} is a {config.get('model_type')} checkpoint, which lmms-eval's {lmms_model} cannot load; "
            f"pass --model {FAMILY_CLASSES[kind]} (lmms-eval's class for it)")
    if kind == "causal-lm" and lmms_model == "llava_hf":
        # lmms-eval's llava_hf would end in KeyError: '<model_type>' after creating the output folder
        raise PlastError(
            f"{pretrained} is a text-only model (model_type {config.get('model_type')!r}), not a llava-hf "
            "vision-language model; evaluate the LLaVA built on it (an official LLaVA checkpoint converted with "
            "plast export CKPT --to-hf --out DIR, or a llava-hf model), or pass --model for an lmms-eval "
            "model class that takes it")
    return kind


def chat_layout(kind: str | None, lmms_model: str) -> str:
    """The chat layout of the tasks' messages (plast_plugin.eval.prompts) for a model of `kind`
    evaluated by lmms-eval's `lmms_model`: LLaVA-1.5's turns for a llava-hf model (the converter's
    template), the model's own chat template for every other family."""
    if kind in ("llava-hf", "llava-next-hf") or (kind is None and lmms_model == "llava_hf"):
        return "llava-1.5"
    return "model"


def _check_qwen_vl_utils(lmms_model: str) -> None:
    """lmms-eval's Qwen classes import qwen_vl_utils softly and then call it on the first image: say
    why it is missing before the run, not as ``'NoneType' object is not callable`` after it."""
    if lmms_model not in QWEN_VL_UTILS_CLASSES:
        return
    try:
        import qwen_vl_utils  # noqa: F401
    except ImportError as exc:
        raise PlastError(
            f"--model {lmms_model}: lmms-eval's class hands images to qwen_vl_utils, which does not import here "
            f"({exc}); install qwen-vl-utils and a torchvision built for this torch "
            "(pip install qwen-vl-utils torchvision)") from None


def _task_env(args) -> dict:
    from plast_plugin.eval.prompts import PROTOCOL_ENV, resolve_protocol

    env = dict(os.environ)
    if args.parrot_dir:
        env["PLAST_PARROT_DIR"] = str(Path(args.parrot_dir).resolve())
    env[PROTOCOL_ENV] = resolve_protocol(args.protocol)  # checks a bad PLAST_EVAL_PROTOCOL up front
    if args.parrot_md5 is not None:
        env["PLAST_PARROT_MD5"] = args.parrot_md5
    if args.parrot_revision is not None:
        env["PLAST_PARROT_REVISION"] = args.parrot_revision
    if args.limit is not None:
        if args.limit < 1:
            raise PlastError(f"--limit {args.limit}: give a number of questions >= 1")
        env["PLAST_EVAL_LIMIT"] = str(args.limit)  # applied by the tasks, whole circular groups
    return env


def _check_data(args, env: dict) -> None:
    """Refuse unpinned data before lmms-eval starts (it would retry each task five times and
    then report only the exception's type)."""
    from plast_plugin.eval.parrot_data import check_identity, resolve_parrot_file

    benches, langs = _benchmarks_and_languages(args.benchmarks, args.languages)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        for bench in benches:
            for lang in langs:
                check_identity(resolve_parrot_file(bench, lang), bench, lang)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _warn_if_not_protocol_ready(args, pretrained: str | None, layout: str) -> None:
    """A llava-hf folder whose chat template or tokenizer is not the converter's would get another
    prompt than the protocol's: say so before the run (it still runs: other models are welcome)."""
    if args.model != "llava_hf" or layout != "llava-1.5" or not pretrained or not Path(pretrained).is_dir():
        return
    from plast_plugin.eval.show_prompts import protocol_problems
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(pretrained)
    except Exception:  # lmms-eval will report a folder it cannot load
        return
    for problem in protocol_problems(processor):
        print(f"plast eval: warning: {pretrained}: {problem}, so the model does not receive the protocol's "
              "prompt; convert it again with plast export --to-hf (plast eval --show-prompts 1 shows what it gets)",
              file=sys.stderr)


def _evaluate(args, pretrained: str | None, output: Path, env: dict, judge, kind: str | None) -> int:
    """One lmms-eval run; prints the scores; 1 when lmms-eval wrote none."""
    from plast_plugin.eval.prompts import LAYOUT_ENV

    cmd = build_command(args, output, pretrained)
    layout = chat_layout(kind, args.model)
    env = dict(env, **{LAYOUT_ENV: layout})
    print(f"$ {LAYOUT_ENV}={layout} " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if args.dry_run:
        return 0
    _warn_if_not_protocol_ready(args, pretrained, layout)
    failure_log = output / JUDGE_FAILURE_LOG
    if judge is not None:
        env = dict(env, PLAST_JUDGE_FAILURE_LOG=str(failure_log.resolve()))
    started = time.time()
    output.mkdir(parents=True, exist_ok=True)
    failure_log.unlink(missing_ok=True)  # count this run's failures only
    proc = subprocess.run(cmd, env=env)
    failures = len(failure_log.read_text(encoding="utf-8").splitlines()) if failure_log.exists() else 0
    if failures:
        print(f"plast eval: warning: the LLM judge failed on {failures} answer(s), which count as unmatched "
              f"(wrong); reasons in {failure_log}", file=sys.stderr)
    results = [f for f in output.rglob("*_results.json") if f.stat().st_mtime >= started - 1]
    if not results:
        print(f"plast eval: lmms-eval wrote no results under {output} (exit code {proc.returncode}); "
              "see its log above", file=sys.stderr)
        return 1
    data = json.loads(max(results, key=lambda f: f.stat().st_mtime).read_text())
    print(f"\nscores (0-1) in {output}, protocol {env['PLAST_EVAL_PROTOCOL']}, chat layout {layout} "
          "(*_exact: VLMEvalKit's exact matcher instead of the multilingual extractor):")
    for name, metrics in sorted(data.get("results", {}).items()):
        shown = {k.split(",")[0]: v for k, v in metrics.items()
                 if k.split(",")[0] in SHOWN_METRICS and isinstance(v, (int, float))}
        # NaN: the task scored nothing for that metric (e.g. no complete circular group)
        print(f"  {name:16s} " + "  ".join(f"{k} {v:.4f}" if v == v else f"{k} not measured"
                                           for k, v in sorted(shown.items())))
    for path in sorted(output.rglob("*_scores.json")):
        scores = json.loads(path.read_text(encoding="utf-8"))
        kind = scores.get("circular_acc_kind")
        if kind:
            print(f"  warning: {scores.get('task')}: circular_acc is {kind}")
        for warning in scores.get("warnings", []) + scores.get("data", {}).get("warnings", []):
            print(f"  warning: {scores.get('task')}: {warning}")
    print(f"per-category breakdown, data md5 and warnings: {output}/submissions/<task>_scores.json")
    if judge is not None:
        print(f"LLM judge failures: {failures}" + (f" (answers scored as unmatched; see {failure_log})" if failures else ""))
    return 0


def _show_prompts(args, env: dict, kind: str | None) -> int:
    from plast_plugin.eval.show_prompts import expand_tasks, show_prompts

    if args.show_prompts < 1:
        raise PlastError(f"--show-prompts {args.show_prompts}: give the number of rows to show per task (1 or more)")
    tasks = expand_tasks(task_list(args.benchmarks, args.languages))
    saved = dict(os.environ)
    os.environ.update(env)  # the tasks read their settings (data folder, md5 pins) from the environment
    try:
        _check_data(args, env)
        show_prompts(args.pretrained, tasks, env["PLAST_EVAL_PROTOCOL"], args.show_prompts, model=args.model,
                     layout=chat_layout(kind, args.model), model_args=args.model_args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0


def run(args) -> int:
    from plast_plugin.eval.judge import JudgeConfig

    if args.baseline and not args.pretrained:
        raise PlastError("--baseline needs the model to compare with it: plast eval MODEL --baseline CKPT")
    kind = _check_model(args.pretrained, args.model)
    judge = JudgeConfig.from_env()  # a bad or unsafe PLAST_JUDGE_* setting stops here, not mid-run
    output = Path(args.output or Path("runs") / "eval" / time.strftime("%Y%m%d-%H%M%S"))
    if output.exists() and not output.is_dir():
        raise PlastError(f"--output {output} is an existing file; give a folder")
    env = _task_env(args)
    if args.show_prompts is not None:
        return _show_prompts(args, env, kind)
    if not args.dry_run:
        try:
            import lmms_eval  # noqa: F401
        except ImportError:
            raise PlastError("lmms_eval is not installed in this Python; run plast eval in the eval env") from None
        _check_qwen_vl_utils(args.model)
    task_list(args.benchmarks, args.languages)  # checks the names
    if not args.dry_run:
        _check_data(args, env)
    if not args.baseline:
        return _evaluate(args, args.pretrained, output, env, judge, kind)
    from plast_plugin.eval.baseline import prepare_baseline

    # a second run into the same folders would leave two sample logs per task, which plast
    # compare refuses: say so before hours of evaluation, not after
    used = [str(p) for name in ("baseline", "model") for p in (output / name).glob("**/*_samples_*.jsonl")]
    used += [str(p) for p in [output / "compare" / "compare.json"] if p.exists()]
    if used:
        raise PlastError(f"--output {output} already holds a comparison run ({used[0]}"
                         f"{' ...' if len(used) > 1 else ''}); choose a new --output")
    baseline_hf = prepare_baseline(args.baseline, output / "baseline-hf", model=args.pretrained,
                                   dry_run=args.dry_run, model_kind=kind)
    for name, pretrained in (("baseline", str(baseline_hf)), ("model", args.pretrained)):
        if _evaluate(args, pretrained, output / name, env, judge, kind):
            return 1
    if args.dry_run:
        return 0
    from plast_plugin.commands import compare

    return compare.run(argparse.Namespace(run_a=str(output / "baseline"), run_b=str(output / "model"),
                                          out=str(output / "compare"), scorer="extractor",
                                          resamples=compare.DEFAULT_RESAMPLES, seed=compare.DEFAULT_SEED))
