"""`plast compare RUN_A RUN_B`: is run B's score different from run A's beyond chance? Neither
lmms-eval nor VLMEvalKit gives the paired test that a few-point gain on 1710 questions needs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.eval.paired_stats import DEFAULT_RESAMPLES, DEFAULT_SEED


def add_parser(subparsers) -> None:
    from plast_plugin.eval.compare import SCORERS

    parser = subparsers.add_parser(
        "compare",
        help="paired comparison of two `plast eval` runs: delta, bootstrap 95%% CI, McNemar p",
        description="RUN_A and RUN_B are --output folders of `plast eval` (or lmms-eval runs of the "
        "plugin's tasks with --log_samples). Questions are paired by task and index; a run scored "
        "on other questions (other data, --limit) is refused. Prints a table (points), writes "
        "compare.json and compare.png into --out.",
    )
    parser.add_argument("run_a", help="baseline run folder (A)")
    parser.add_argument("run_b", help="run folder to compare against it (B); deltas are B - A")
    parser.add_argument("--out", default=None,
                        help="folder for compare.json and compare.png (default: runs/compare/<time>)")
    parser.add_argument("--scorer", choices=sorted(SCORERS), default="extractor",
                        help="whose verdicts to compare: 'extractor' (the multilingual answer reader, "
                        "default) or 'exact' (the VLMEvalKit-style exact matcher)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    parser.set_defaults(func=run)


def run(args) -> int:
    from plast_plugin.atomic import atomic_output_file, write_text_atomic
    from plast_plugin.eval.compare import compare_runs, format_table, plot_comparison, read_run

    if args.resamples < 100:
        raise PlastError(f"--resamples {args.resamples}: use at least 100 (default 10000)")
    out = Path(args.out or Path("runs") / "compare" / time.strftime("%Y%m%d-%H%M%S"))
    targets = [out / "compare.json", out / "compare.png"]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise PlastError(f"--out {out}: {', '.join(existing)} already exist(s); choose another --out")
    result = compare_runs(read_run(args.run_a), read_run(args.run_b), scorer=args.scorer,
                          resamples=args.resamples, seed=args.seed)
    print(format_table(result))
    write_text_atomic(targets[0], json.dumps(result, indent=1) + "\n")
    with atomic_output_file(targets[1]) as tmp:
        plot_comparison(result, tmp)
    print(f"\nwrote {targets[0]} and {targets[1]}")
    return 0
