"""The run folder of an ablation, and one training subprocess per planned run:

    OUT/plan.json                    the plan (a folder is only continued with the same plan)
    OUT/base/result.json             the untrained model's held-out losses (a reference row)
    OUT/runs/<alternative>-seed<s>/  selection.json, train.log, plast_training.json (what training
                                     reports it trained; neither for LLaVA's own full and LoRA runs),
                                     train/ (removed once scored unless kept),
                                     with --plast-eval eval-hf/ (removed with train/), eval/, eval.log;
                                     result.json, written atomically and last: the run is done

A re-run skips every run with a result.json and restarts any other from scratch, so a killed
ablation continues where it stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from plast_plugin.atomic import write_text_atomic
from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json_object
from plast_plugin.ablation.plan import AblationPlan, PlannedRun
from plast_plugin.core.training_record import TRAINING_RECORD, TrainingRecord

RESULT = "result.json"
PLAN_FILE = "plan.json"


def prepare_run_folder(out: Path, plan: AblationPlan) -> None:
    """Create OUT with plan.json, or check that OUT was made by this very plan."""
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        recorded = read_json_object(plan_path, "ablation plan", f"remove {out} to start the ablation afresh")
        differing = plan.differences(recorded)
        if differing:
            raise PlastError(
                f"--out {out} holds an ablation with another plan (differs in: {', '.join(differing)}); "
                f"results of different plans cannot be mixed: give a new --out, or remove {out} to start afresh")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PlastError(f"--out {out} exists and is not an ablation run folder (no {PLAN_FILE}); give a new folder")
    write_text_atomic(plan_path, json.dumps(plan.to_dict(), indent=2) + "\n")


def run_folder(out: Path, run: PlannedRun) -> Path:
    return out / "runs" / run.name


def load_result(folder: Path) -> dict | None:
    path = folder / RESULT
    if not path.exists():
        return None
    return read_json_object(path, "run result", "delete it and re-run to train that run again")


def run_logged(command: Sequence[str], log: Path, env: dict | None, what: str) -> None:
    """Run one step of an ablation (a training run, a conversion, an evaluation) with its command line
    and all its output appended to ``log``; a failure is refused with the log's last lines."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write("$ " + shlex.join(command) + "\n")
        handle.flush()
        returncode = subprocess.run(list(command), stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    if returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise PlastError(f"{what} failed (exit {returncode}); last lines of {log}:\n{tail}\n"
                         f"fix it and re-run plast ablate: finished runs are kept, an unfinished one is redone")


def _check_plugin_record(plan: AblationPlan, run: PlannedRun, train_dir: Path, folder: Path, log: Path) -> int:
    """A layer-set run: the training path's own report, not the plan's count, says it trained exactly its
    layers with PLAST's budget (or, for a rule alternative, with the count the plan recorded)."""
    record_path = train_dir / TRAINING_RECORD
    if not record_path.exists():
        raise PlastError(f"training run {run.name} wrote no {record_path}: the launcher did not run PLAST's training "
                         f"(does it run LLaVA's train() with the plast plugin installed?); see {log}")
    record = TrainingRecord.load(record_path)
    trained = record.trainable.get("trainable_params")
    expected = plan.unmatched.get(run.alternative, plan.budget)
    if record.layers != list(run.layers) or trained != expected:
        raise PlastError(f"training run {run.name} trained layers {record.layers} with {trained} parameters, "
                         f"the plan says {list(run.layers)} with {expected}; see {record_path}")
    shutil.copy2(record_path, folder / TRAINING_RECORD)
    return trained


def training_command(plan: AblationPlan, run: PlannedRun, launcher: Sequence[str], train_args: Sequence[str],
                     selection: Path, train_dir: Path) -> list[str]:
    """The user's launcher and training arguments, plus what this run decides: layers (none for LLaVA's own
    full and LoRA fine-tuning; LoRA's flags for lora), seed (data order), output. With the HF Trainer path
    (``scripts/train_hf_example.py``'s flags) the selection file itself carries the layers and modules."""
    if plan.training.get("trainer") == "hf":
        return [*launcher, *train_args, "--selection", str(selection), "--output-dir", str(train_dir),
                "--seed", str(run.seed)]
    if run.whole_model:
        from plast_plugin.llava.lora import lora_flags

        layers = lora_flags() if run.alternative == "lora" else []
    else:
        layers = ["--plast_layers", str(selection), "--plast_modules", plan.modules]
    return [*launcher, *train_args, *layers, "--output_dir", str(train_dir), "--seed", str(run.seed)]


def train_and_score(plan: AblationPlan, out: Path, run: PlannedRun, *, launcher: Sequence[str],
                    train_args: Sequence[str], write_selection: Callable[[PlannedRun, Path], None],
                    score: Callable[[PlannedRun, Path], dict], whole_model_params: Callable[[PlannedRun, Path], int],
                    keep_checkpoints: bool, env: dict | None = None,
                    evaluate: Callable[[Path, Path], dict] | None = None) -> dict:
    """``score(run, train_dir)``: the run's held-out measures; ``whole_model_params(run, train_dir)``: what a
    full or LoRA run trained, read from its output (the plugin writes no record for them)."""
    folder = run_folder(out, run)
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished run (no result.json): start it again from nothing
    folder.mkdir(parents=True)
    train_dir, log = folder / "train", folder / "train.log"
    if not run.whole_model:
        write_selection(run, folder / "selection.json")
    command = training_command(plan, run, launcher, train_args, folder / "selection.json", train_dir)
    started = time.time()
    run_logged(command, log, env, f"training run {run.name}")  # a fresh folder: the log starts with this run
    train_seconds = time.time() - started
    if run.whole_model:
        if (train_dir / TRAINING_RECORD).exists():
            raise PlastError(f"training run {run.name} is LLaVA's own {run.alternative} fine-tuning, yet it wrote "
                             f"{train_dir / TRAINING_RECORD}: the plugin chose layers; see {log}")
        trained = whole_model_params(run, train_dir)
    else:
        trained = _check_plugin_record(plan, run, train_dir, folder, log)
    started = time.time()
    measures = score(run, train_dir)
    # Before the checkpoint goes; a failure leaves no result.json, so the run is redone.
    evaluation = evaluate(train_dir, folder) if evaluate is not None else None
    score_seconds = time.time() - started
    if not keep_checkpoints:
        shutil.rmtree(train_dir)
    result = {"run": run.name, "alternative": run.alternative, "seed": run.seed, "layers": list(run.layers),
              "trainable_params": trained, "train_seconds": round(train_seconds, 1),
              "score_seconds": round(score_seconds, 1), **measures}
    if evaluation is not None:
        result["eval"] = evaluation
    write_text_atomic(folder / RESULT, json.dumps(result, indent=1) + "\n")
    return result


def run_all(plan: AblationPlan, out: Path, *, progress: bool = True, **kwargs) -> dict[str, dict]:
    """Train and score every planned run that has no result yet; returns every run's result."""
    from tqdm import tqdm

    found = {run.name: load_result(run_folder(out, run)) for run in plan.runs}
    results = {name: result for name, result in found.items() if result is not None}
    todo = [run for run in plan.runs if run.name not in results]
    if results:
        print(f"{len(results)} of {len(plan.runs)} runs already finished in {out}; {len(todo)} to train")
    with tqdm(total=len(todo), desc="ablation runs", unit="run", disable=not (progress and todo)) as bar:
        for run in todo:
            bar.set_postfix_str(run.name)
            result = results[run.name] = train_and_score(plan, out, run, **kwargs)
            bar.write(f"{run.name}: layers {list(run.layers)}, trained {result['train_seconds']:.0f}s, "
                      f"scored {result['score_seconds']:.0f}s")  # printed as well without the bar
            bar.update(1)
    return results


def default_env() -> dict:
    return {**os.environ, "WANDB_DISABLED": "true"}
