#!/usr/bin/env python
"""Run LLaVA's ``train()`` as two DeepSpeed ZeRO-3 ranks on CPU N times; count unclean exits.

Not part of CI (a run takes 30-90 s on 2 cores). It exists to measure how often a two-rank run
ends with a rank that aborts while the interpreter shuts down (``terminate called without an
active exception``, signal 6, launcher rc 250; docs/troubleshooting.md), with and without the
plugin's fix:

    cd /path/to/plast-plugin
    export PYTHONPATH=$PWD OMP_NUM_THREADS=1
    nice -n 5 .envs/train/bin/python scripts/stress_two_rank_exit.py --runs 50
    nice -n 5 .envs/train/bin/python scripts/stress_two_rank_exit.py --runs 20 --without-fix

It builds the tests' tiny LLaVA (tests/train/conftest.py) once, then runs the case of
``tests/train/test_llava_train.py::test_two_ranks_zero3_auto_shards_the_probe``: ZeRO-3
(scripts/zero3.json), gloo, ``--plast_layers auto`` (``--no-plast``: plain LLaVA), through the
real ``deepspeed --num_gpus 2`` launcher (``--launcher direct``: two processes with the
launcher's environment, as the test starts them). Each rank's output goes to
RUN_DIR/run_NNN/rank{0,1}.log (the ranks' working directory, so a core file lands there
too); a run's directory is deleted when both ranks exited 0, unless
``--keep``. The last line is the summary, e.g. ``runs=50 nonzero=0 aborted_ranks=0``:
``nonzero`` counts runs with any rank (or the launcher) exiting non-zero, ``aborted_ranks`` the
ranks that printed ``terminate called`` or died of SIGABRT.
"""
from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "train"))

from conftest import DRIVER, base_env, build_assets, llava_args  # noqa: E402

from plast_plugin.llava.clean_exit import ENV_DISABLE_CLEAN_EXIT  # noqa: E402

ABORT_TEXT = "terminate called"
SPAWNED = re.compile(r"process (\d+) spawned with command: .*--local_rank=(\d+)")
SUCCEEDED = re.compile(r"Process (\d+) exits successfully")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="how many two-rank runs (default 10)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run (default 3)")
    parser.add_argument("--launcher", choices=("deepspeed", "direct"), default="deepspeed",
                        help="the real `deepspeed --num_gpus 2` CLI (default), or two processes started "
                             "directly with its environment (as the test does)")
    parser.add_argument("--without-fix", action="store_true",
                        help=f"set {ENV_DISABLE_CLEAN_EXIT}=1 in the ranks: the plugin does not apply its "
                             f"clean-exit workaround (the 'before' count)")
    parser.add_argument("--no-plast", action="store_true", help="train without --plast_layers (plain LLaVA)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where assets and per-run logs go (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and outputs of clean runs too")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per run before it is killed")
    parser.add_argument("--port", type=int, default=29900, help="first master port (one per run)")
    return parser.parse_args(argv)


def rank_status(returncode) -> str:
    if returncode is None:
        return "killed by the launcher"
    if returncode < 0:
        return f"signal {-returncode} ({signal.Signals(-returncode).name})"
    return f"rc {returncode}"


def run_launcher(args, train_args, env, run_dir, port):
    """One run through the deepspeed CLI. Returns (launcher rc, {rank: returncode or None})."""
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(port),
           "--enable_each_rank_log", str(run_dir / "ranks"), str(DRIVER), "hook", *train_args]
    with open(run_dir / "launcher.log", "w") as log:
        proc = subprocess.run(cmd, env=env, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT,
                              timeout=args.timeout)
    text = (run_dir / "launcher.log").read_text(errors="replace")
    pid_rank = {int(pid): int(rank) for pid, rank in SPAWNED.findall(text)}
    ok = {pid_rank.get(int(pid)) for pid in SUCCEEDED.findall(text)}
    codes = {}
    for log in sorted((run_dir / "ranks").glob("*_rank*.log")):
        rank = int(log.stem.rsplit("rank", 1)[1])
        log.rename(run_dir / f"rank{rank}.log")
        # The launcher reports only the first failing rank's code; a rank it killed afterwards
        # has no code (None). A rank that printed the abort message aborted (rc -6).
        aborted = ABORT_TEXT in (run_dir / f"rank{rank}.log").read_text(errors="replace")
        codes[rank] = 0 if rank in ok else (-signal.SIGABRT if aborted else None)
    shutil.rmtree(run_dir / "ranks", ignore_errors=True)
    return proc.returncode, codes


def run_direct(args, train_args, env, run_dir, port):
    """Two rank processes with the launcher's environment. Returns (max rc, {rank: returncode})."""
    procs = {}
    for rank in (0, 1):
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        log = open(run_dir / f"rank{rank}.log", "w")
        procs[rank] = (subprocess.Popen([sys.executable, "-u", str(DRIVER), "hook", *train_args], env=rank_env,
                                        cwd=run_dir, stdout=log, stderr=subprocess.STDOUT), log)
    codes = {}
    deadline = time.monotonic() + args.timeout
    for rank, (proc, log) in procs.items():
        try:
            codes[rank] = proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[rank] = proc.wait()
        log.close()
    return (0 if all(c == 0 for c in codes.values()) else 1), codes


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.run_dir or Path(tempfile.mkdtemp(prefix="plast_stress_"))
    root.mkdir(parents=True, exist_ok=True)
    assets_dir = root / "assets"
    if not (assets_dir / "train.json").exists():
        assets_dir.mkdir(exist_ok=True)
        build_assets(assets_dir)
    assets = {"model": assets_dir / "llava", "clip": Path(str(assets_dir / "llava") + "_clip"),
              "data": assets_dir / "train.json", "images": assets_dir / "images", "probe": assets_dir / "probe.jsonl"}
    extra = {ENV_DISABLE_CLEAN_EXIT: "1"} if args.without_fix else {}
    env = base_env(**extra)
    if not args.without_fix:
        env.pop(ENV_DISABLE_CLEAN_EXIT, None)
    plast = [] if args.no_plast else ["--plast_layers", "auto", "--plast_probe_data", str(assets["probe"])]
    print(f"stress: {args.runs} two-rank ZeRO-3 runs via {args.launcher}, "
          f"{'without' if args.without_fix else 'with'} the clean-exit fix, "
          f"{'plain LLaVA' if args.no_plast else '--plast_layers auto'}; logs under {root}", flush=True)

    nonzero = aborted = 0
    started = time.monotonic()
    for index in range(args.runs):
        run_dir = root / f"run_{index:03d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        train_args = ["--deepspeed", str(REPO / "scripts" / "zero3.json"),
                      *llava_args(assets, run_dir / "out", *plast, steps=args.steps)]
        run = run_launcher if args.launcher == "deepspeed" else run_direct
        t0 = time.monotonic()
        try:
            rc, codes = run(args, train_args, env, run_dir, args.port + index)
        except subprocess.TimeoutExpired:
            rc, codes = "timeout", {}
        bad = rc != 0 or any(c != 0 for c in codes.values()) or len(codes) != 2
        run_aborted = [r for r, c in sorted(codes.items()) if c == -signal.SIGABRT]
        nonzero += bad
        aborted += len(run_aborted)
        detail = ", ".join(f"rank{r}: {rank_status(c)}" for r, c in sorted(codes.items()))
        print(f"run {index + 1}/{args.runs}: {'FAIL' if bad else 'ok'} launcher rc {rc}; {detail} "
              f"({time.monotonic() - t0:.0f} s){'; logs in ' + str(run_dir) if bad or args.keep else ''}",
              flush=True)
        if not bad and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"elapsed {time.monotonic() - started:.0f} s", flush=True)
    print(f"runs={args.runs} nonzero={nonzero} aborted_ranks={aborted}", flush=True)
    return 1 if nonzero else 0


if __name__ == "__main__":
    sys.exit(main())
