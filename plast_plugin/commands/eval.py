"""`plast eval`: run Parrot's MMMB / multilingual MMBench through lmms-eval and check the result.

lmms-eval 0.7.3 finds external tasks only through ``--include_path`` (its ``LMMS_EVAL_PLUGINS``
task route appends the path after the task index is built, so it never takes effect), and its
CLI exits 0 even when an evaluation failed. This command adds the plugin's ``eval_tasks/``
folder, sets ``PLAST_PARROT_DIR`` when ``--parrot-dir`` is given, runs ``python -m lmms_eval``
in the current interpreter (the eval env), and then reads the results file: it prints the
scores and returns 1 when lmms-eval produced none.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCHMARK_CHOICES = ("mmmb", "mmbench_ml")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a llava-hf model on MMMB / multilingual MMBench (Parrot) with lmms-eval",
        description="Runs `python -m lmms_eval` with the plugin's tasks (--include_path), then checks "
        "that results were written. Tasks: mmmb_<lang> (group mmmb) and mmbench_ml_<lang> (group "
        "mmbench_ml, Parrot's multilingual MMBench-dev, circular scoring), lang in en zh pt ar tr ru. "
        "Official LLaVA checkpoints must first be converted: plast export CKPT --to-hf --out DIR.",
    )
    parser.add_argument("pretrained", nargs="?", default=None,
                        help="model folder or hub id, passed as pretrained=... (a llava-hf model for llava_hf)")
    parser.add_argument("--benchmarks", default="mmmb,mmbench_ml",
                        help="comma list of mmmb, mmbench_ml (default: both)")
    parser.add_argument("--languages", default="en,zh,pt,ar,tr,ru",
                        help="comma list of language codes (cn is accepted for zh; default: all six)")
    parser.add_argument("--parrot-dir", default=None,
                        help="local folder with Parrot's TSVs (sets PLAST_PARROT_DIR; default: that "
                        "variable, else download from the HF dataset AIDC-AI/Parrot-dataset)")
    parser.add_argument("--output", default=None, help="lmms-eval --output_path (default: runs/eval/<time>)")
    parser.add_argument("--model", default="llava_hf", help="lmms-eval model name (default: llava_hf)")
    parser.add_argument("--model-args", default="",
                        help="extra lmms-eval model args, e.g. 'dtype=bfloat16' (comma separated)")
    parser.add_argument("--device", default=None,
                        help="device / device_map for llava_hf (default: cuda if available, else cpu)")
    parser.add_argument("--limit", type=int, default=None, help="lmms-eval --limit (testing only)")
    parser.add_argument("--dry-run", action="store_true", help="print the lmms-eval command and exit")
    parser.add_argument("--lmms-eval-args", default="",
                        help="more lmms-eval options as one string, e.g. '--verbosity DEBUG --seed 1'")
    parser.set_defaults(func=run)


def task_list(benchmarks: str, languages: str) -> list[str]:
    """Group names where all six languages are asked for, else the single tasks."""
    from plast_plugin.eval.parrot_data import PARROT_LANGUAGES, parrot_language

    benches = [b.strip() for b in benchmarks.split(",") if b.strip()]
    unknown = [b for b in benches if b not in BENCHMARK_CHOICES]
    if unknown or not benches:
        raise ValueError(f"unknown benchmark(s) {unknown or benchmarks!r}; use {', '.join(BENCHMARK_CHOICES)}")
    langs = []
    for item in languages.split(","):
        if item.strip():
            code = parrot_language(item)
            if code not in langs:
                langs.append(code)
    if not langs:
        raise ValueError("no languages given")
    if set(langs) == set(PARROT_LANGUAGES):
        return benches
    return [f"{b}_{lang}" for b in benches for lang in langs]


def _device(requested: str | None) -> str:
    if requested:
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def build_command(args, output: Path) -> list[str]:
    from plast_plugin.eval import tasks_dir

    model_args = []
    if args.pretrained:
        model_args.append(f"pretrained={args.pretrained}")
    if args.model == "llava_hf":
        device = _device(args.device)
        model_args += [f"device_map={device}", f"device={device}"]
    if args.model_args:
        model_args.append(args.model_args)
    cmd = [sys.executable, "-m", "lmms_eval", "--model", args.model,
           "--tasks", ",".join(task_list(args.benchmarks, args.languages)),
           "--include_path", str(tasks_dir()), "--output_path", str(output),
           "--batch_size", "1", "--log_samples"]
    if model_args:
        cmd[5:5] = ["--model_args", ",".join(model_args)]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    return cmd + shlex.split(args.lmms_eval_args or "")


def _check_model(pretrained: str | None) -> None:
    if not pretrained:
        return
    from ..model_source import checkpoint_kind, read_config

    config = read_config(pretrained)  # a folder or a hub id; a missing one is one clear error here
    if checkpoint_kind(config) == "official-llava":
        raise ValueError(
            f"{pretrained} is an official LLaVA checkpoint ({config.get('model_type')}), which transformers 5.x "
            f"cannot load; convert it first: plast export {pretrained} --to-hf --out <dir>")


def summarize_results(output: Path, since: float) -> dict | None:
    files = [f for f in output.rglob("*_results.json") if f.stat().st_mtime >= since - 1]
    if not files:
        return None
    return json.loads(max(files, key=lambda f: f.stat().st_mtime).read_text())


def run(args) -> int:
    _check_model(args.pretrained)
    output = Path(args.output or Path("runs") / "eval" / time.strftime("%Y%m%d-%H%M%S"))
    cmd = build_command(args, output)
    env = dict(os.environ)
    if args.parrot_dir:
        env["PLAST_PARROT_DIR"] = str(Path(args.parrot_dir).resolve())
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if args.dry_run:
        return 0
    try:
        import lmms_eval  # noqa: F401
    except ImportError:
        raise RuntimeError("lmms_eval is not installed in this Python; run plast eval in the eval env") from None
    started = time.time()
    output.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, env=env)
    data = summarize_results(output, started)
    if data is None:
        print(f"plast eval: lmms-eval wrote no results under {output} (exit code {proc.returncode}); "
              "see its log above", file=sys.stderr)
        return 1
    print(f"\nscores (0-1) in {output}:")
    for name, metrics in sorted(data.get("results", {}).items()):
        shown = {k.split(",")[0]: v for k, v in metrics.items()
                 if k.split(",")[0] in ("acc", "circular_acc") and isinstance(v, (int, float))}
        print(f"  {name:16s} " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())))
    print(f"per-category breakdown: {output}/submissions/<task>_scores.json")
    return 0
