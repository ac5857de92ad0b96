"""Optional scoring of every ablation run on lmms-eval tasks, through the eval env's `plast eval`.

`plast ablate` runs in the training env (LLaVA's train(), transformers 4.x) and lmms-eval lives in
the eval env (transformers 5.x), so each run's checkpoint is scored by the eval env's own `plast`
as a user scores a trained model (README steps 4-5: `plast export --to-hf`, the same converter for
every run, then `plast eval`, the real lmms_eval CLI with --log_samples); the sample logs are read
back (:mod:`plast_plugin.eval.compare`) as per-question correctness.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path

from plast_plugin.ablation.runner import run_logged
from plast_plugin.errors import PlastError

EVAL_LOG = "eval.log"
# Decided by the ablation for each run: where the results go and which model is scored.
CONTROLLED = {"--output": "each run's results go to OUT/runs/<run>/eval",
              "--baseline": "the ablation compares its runs with each other, not with a baseline",
              "--dry-run": "the ablation checks the arguments with a dry run itself"}


def parse_eval_options(plast_eval: str | None, eval_args: str | None) -> dict | None:
    """--plast-eval and --eval-args of `plast ablate` as the plan records them (another command or other
    arguments make another plan): {"plast_eval": [command], "arguments": [of every plast eval]}; None
    when lmms-eval scoring is not asked for."""
    if not plast_eval:
        if eval_args:
            raise PlastError("--eval-args is given without --plast-eval: name the eval env's plast, e.g. "
                             "--plast-eval .envs/eval/bin/plast")
        return None
    command = shlex.split(plast_eval)
    if not command:
        raise PlastError("--plast-eval is empty; give the eval env's plast, e.g. --plast-eval .envs/eval/bin/plast")
    if shutil.which(command[0]) is None:
        raise PlastError(f"--plast-eval {plast_eval!r}: {command[0]} is not an executable; give the path of the eval "
                         f"env's plast (the environment with lmms-eval), e.g. .envs/eval/bin/plast")
    arguments = shlex.split(eval_args or "")
    if arguments and not arguments[0].startswith("-"):
        raise PlastError(f"--eval-args: {arguments[0]!r} looks like a model to evaluate; the ablation evaluates each "
                         f"run's own model, give only options (e.g. --benchmarks mmbench_ml --languages zh)")
    for item in arguments:
        flag = item.split("=", 1)[0]
        if flag in CONTROLLED:
            raise PlastError(f"--eval-args: {flag} is set by plast ablate ({CONTROLLED[flag]}); remove it")
    return {"plast_eval": command, "arguments": arguments}


def check_arguments(scoring: dict, env: dict | None) -> None:
    """`plast eval --dry-run` with the user's arguments before any training (and before the run folder
    is made): a misspelt option, benchmark or language stops here, not after the first run's training."""
    with tempfile.TemporaryDirectory(prefix="plast-ablate-eval-check-") as tmp:
        plast = scoring["plast_eval"]
        run_logged([*plast, "eval", "--dry-run", "--output", str(Path(tmp) / "eval"), *scoring["arguments"]],
                   Path(tmp) / EVAL_LOG, env, f"--plast-eval/--eval-args: `{shlex.join(plast)} eval --dry-run`")


def evaluate_run(scoring: dict, train_dir: Path, folder: Path, env: dict | None, keep_model: bool,
                 convert: bool = True) -> dict:
    """Convert (an official LLaVA run; ``convert`` False: the run already is a transformers model), evaluate
    and read back one run: {task: {metric: {accuracy, units, correct: {unit: 0/1}}}}."""
    from plast_plugin.eval.compare import read_run, task_outcomes

    hf, output, log = (folder / "eval-hf" if convert else train_dir), folder / "eval", folder / EVAL_LOG
    if convert:
        run_logged([*scoring["plast_eval"], "export", str(train_dir), "--to-hf", "--out", str(hf)], log, env,
                   f"plast export --to-hf of {train_dir}")
    run_logged([*scoring["plast_eval"], "eval", str(hf), "--output", str(output), *scoring["arguments"]], log, env,
               f"plast eval of {hf}")
    outcomes = task_outcomes(read_run(output))
    if convert and not keep_model:
        shutil.rmtree(hf)
    return {task: {metric: {"accuracy": sum(units.values()) / len(units), "units": len(units),
                            "correct": {str(unit): int(ok) for unit, ok in sorted(units.items())}}
                   for metric, units in metrics.items()}
            for task, metrics in outcomes.items()}
