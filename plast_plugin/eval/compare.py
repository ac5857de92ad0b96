"""Compare two evaluation runs question by question: accuracy, delta, 95% CI and McNemar p.

Input: two lmms-eval output folders written with ``--log_samples`` (``plast eval`` always passes it),
with one ``<time>_samples_<task>.jsonl`` per task whose lines carry, under the metric key ``acc``, the
scored record of one row (:func:`plast_plugin.eval.lmms_tasks.process_results`). The runs are paired by
``(task, index)``: both must hold exactly the same rows of a task, else the comparison is refused (a run
with ``--limit`` against a full run is not paired data). Metrics are those of
:mod:`plast_plugin.eval.scoring`: ``acc``, and for MMBench ``circular_acc`` over circular groups.
``scorer="exact"`` takes the verdicts of VLMEvalKit's exact matcher (``correct_exact``) instead of the
multilingual extractor's. Statistics: :mod:`plast_plugin.eval.paired_stats`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.json_files import iter_json_lines
from plast_plugin.eval.paired_stats import (DEFAULT_RESAMPLES, DEFAULT_SEED, PairedCounts,
                                            bootstrap_delta_ci, mcnemar_exact_p, mean_delta_ci,
                                            paired_counts)
from plast_plugin.eval.parrot_data import PUBLISHED_MD5
from plast_plugin.eval.scoring import CIRCULAR_BENCHMARKS, CIRCULAR_OFFSET, split_groups
from plast_plugin.data.languages import PARROT_LANGUAGES

SCORERS = {"extractor": "correct", "exact": "correct_exact"}
_SAMPLES_FILE = re.compile(r"_samples_(?P<task>.+)\.jsonl$")


@dataclass
class RunSamples:
    folder: Path
    records: dict[str, dict[int, dict]] = field(default_factory=dict)  # task -> index -> record
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def protocols(self) -> set[str]:
        return {str(r.get("protocol")) for rows in self.records.values() for r in rows.values() if r.get("protocol")}


def read_run(folder) -> RunSamples:
    """Every ``*_samples_<task>.jsonl`` under `folder`, one per task."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PlastError(f"{folder}: not a folder; give the --output folder of a plast eval / lmms-eval run")
    by_task: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.rglob("*_samples_*.jsonl")):
        match = _SAMPLES_FILE.search(path.name)
        if match:
            by_task[match.group("task")].append(path)
    if not by_task:
        raise PlastError(
            f"{folder}: no lmms-eval sample logs (*_samples_<task>.jsonl); run the evaluation with "
            "--log_samples (plast eval always does)")
    run = RunSamples(folder)
    for task, paths in sorted(by_task.items()):
        if len(paths) > 1:
            raise PlastError(
                f"{folder}: {len(paths)} sample logs for {task} ({', '.join(p.name for p in paths)}): "
                "several runs share this folder; compare the folders of single runs")
        rows: dict[int, dict] = {}
        for where, sample in iter_json_lines(paths[0]):
            record = sample.get("acc") if isinstance(sample, dict) else None
            if not isinstance(record, dict) or "index" not in record or "correct" not in record:
                raise PlastError(
                    f"{where}: no scored record under 'acc' (index, correct); "
                    "is this a log of a plast task (mmmb_*, mmbench_ml_*)?")
            index = int(record["index"])
            if index in rows:
                raise PlastError(f"{where}: index {index} appears twice")
            rows[index] = record
        run.records[task] = rows
        run.files[task] = paths[0]
    return run


def _outcomes(rows: dict[int, dict], key: str, metric: str, where: Path) -> dict[int, bool]:
    """Unit -> pass for `metric` (``acc`` by row, ``circular_acc`` by circular group)."""
    missing = [i for i, r in rows.items() if key not in r]
    if missing:
        raise PlastError(f"{where}: index {missing[0]} has no '{key}' verdict; this log predates the "
                           f"exact matcher, compare with --scorer extractor")
    circular = rows and next(iter(rows.values())).get("benchmark") in CIRCULAR_BENCHMARKS
    if circular:  # the units the scores counted: complete circular groups only
        complete, _ = split_groups(rows.values())
        rows = {int(r["index"]): r for group in complete.values() for r in group}
    if metric == "circular_acc":
        groups: dict[int, bool] = {}
        for index, record in rows.items():
            group = index % CIRCULAR_OFFSET
            groups[group] = groups.get(group, True) and bool(record[key])
        return groups
    return {i: bool(r[key]) for i, r in rows.items() if not circular or i < CIRCULAR_OFFSET}


def task_outcomes(run: RunSamples, scorer: str = "extractor", tasks=None) -> dict[str, dict[str, dict[int, bool]]]:
    """Per task (all, or those of `tasks`) and metric (``acc``; MMBench also ``circular_acc``), each
    unit's pass/fail: the per-question correctness that paired statistics start from."""
    if scorer not in SCORERS:
        raise PlastError(f"unknown scorer {scorer!r}; use one of {', '.join(SCORERS)}")
    out: dict[str, dict[str, dict[int, bool]]] = {}
    for task in sorted(run.records if tasks is None else tasks):
        rows = run.records[task]
        bench, _ = _task_parts(task, rows)
        metrics = ["acc", "circular_acc"] if bench in CIRCULAR_BENCHMARKS else ["acc"]
        out[task] = {metric: _outcomes(rows, SCORERS[scorer], metric, run.files[task]) for metric in metrics}
    return out


def _protocols(rows: dict[int, dict]) -> list[str]:
    return sorted({str(r["protocol"]) for r in rows.values() if r.get("protocol")})


def _task_parts(task: str, rows: dict[int, dict]) -> tuple[str, str]:
    first = next(iter(rows.values()))
    bench, lang = first.get("benchmark"), first.get("language")
    if bench and lang:
        return str(bench), str(lang)
    head, _, tail = task.rpartition("_")
    return head or task, tail


def compare_runs(run_a: RunSamples, run_b: RunSamples, scorer: str = "extractor",
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict:
    """The comparison as a JSON-ready dict: ``rows`` per task and metric, plus benchmark means."""
    common = sorted(set(run_a.records) & set(run_b.records))
    if not common:
        raise PlastError(f"{run_a.folder} and {run_b.folder} have no task in common "
                         f"(A: {', '.join(sorted(run_a.records))}; B: {', '.join(sorted(run_b.records))})")
    warnings = []
    for name, run, other in (("A", run_a, run_b), ("B", run_b, run_a)):
        only = sorted(set(run.records) - set(other.records))
        if only:
            warnings.append(f"tasks only in run {name} ({run.folder}), not compared: {', '.join(only)}")
    # per task: two runs can hold the same set of protocols, each task under another one
    mixed = [f"{task} (A: {'/'.join(a) or 'unrecorded'}, B: {'/'.join(b) or 'unrecorded'})"
             for task in common for a, b in [(_protocols(run_a.records[task]), _protocols(run_b.records[task]))]
             if a != b]
    if mixed:
        warnings.append(f"different prompt protocols in {', '.join(mixed)}: the delta of these tasks mixes model "
                        "and prompt")
    rows = []
    unpublished = []  # tasks read from files other than the published benchmark's
    per_bench: dict[tuple[str, str], list[tuple[str, PairedCounts]]] = defaultdict(list)
    for offset, task in enumerate(common):
        rows_a, rows_b = run_a.records[task], run_b.records[task]
        if set(rows_a) != set(rows_b):
            only_a, only_b = sorted(set(rows_a) - set(rows_b)), sorted(set(rows_b) - set(rows_a))
            raise PlastError(
                f"{task}: the runs scored different rows ({len(rows_a)} in A, {len(rows_b)} in B; "
                f"e.g. index {(only_a or only_b)[0]} only in {'A' if only_a else 'B'}); paired statistics "
                "need the same questions (same data, no --limit)")
        md5_a = {str(r.get("source_md5")) for r in rows_a.values() if r.get("source_md5")}
        md5_b = {str(r.get("source_md5")) for r in rows_b.values() if r.get("source_md5")}
        if md5_a and md5_b and md5_a != md5_b:
            raise PlastError(f"{task}: the runs read different data files (md5 {', '.join(sorted(md5_a))} in A, "
                             f"{', '.join(sorted(md5_b))} in B); paired statistics need the same questions")
        # True / False: the published file (VLMEvalKit's md5) or not; None: the logs recorded no md5
        published = (md5_a | md5_b == {PUBLISHED_MD5.get(task)}) if md5_a | md5_b else None
        if published is False:
            unpublished.append(task)
        bench, lang = _task_parts(task, rows_a)
        outcomes_a, outcomes_b = (task_outcomes(run, scorer, [task])[task] for run in (run_a, run_b))
        for m_offset, (metric, units_a) in enumerate(outcomes_a.items()):
            units_b = outcomes_b[metric]
            order = sorted(units_a)
            counts = paired_counts([units_a[u] for u in order], [units_b[u] for u in order])
            # each task/metric its own seed stream, so adding a task does not move the others' CIs
            ci = bootstrap_delta_ci(counts, resamples, seed + 1000 * offset + m_offset)
            rows.append({"task": task, "benchmark": bench, "language": lang, "metric": metric,
                         "data_md5": sorted(md5_a | md5_b), "published_data": published, "n": counts.n,
                         "acc_a": counts.acc_a, "acc_b": counts.acc_b, "delta": counts.delta, "ci95": [ci[0], ci[1]],
                         "mcnemar_p": mcnemar_exact_p(counts.only_a, counts.only_b), "only_a_right": counts.only_a,
                         "only_b_right": counts.only_b, "both_right": counts.both, "neither_right": counts.neither})
            per_bench[(bench, metric)].append((lang, counts))
    if unpublished:
        # a table of these tasks' names reads like a benchmark result: say loudly that it is not one
        warnings.append(f"NOT the published benchmark files (md5 differs from VLMEvalKit's) for "
                        f"{', '.join(unpublished)}: these are scores on other data under the task names, not "
                        "MMMB / MMBench results")
    means = []
    for (bench, metric), items in sorted(per_bench.items()):
        if len(items) < 2:
            continue
        counts = [c for _, c in items]
        low, high = mean_delta_ci(counts, resamples, seed)
        pooled = PairedCounts(*(sum(getattr(c, f) for c in counts) for f in ("both", "only_a", "only_b", "neither")))
        means.append({
            "benchmark": bench, "metric": metric, "languages": [lang for lang, _ in items],
            "acc_a": sum(c.acc_a for c in counts) / len(counts), "acc_b": sum(c.acc_b for c in counts) / len(counts),
            "delta": sum(c.delta for c in counts) / len(counts), "ci95": [low, high],
            # pooled over languages: the exact test of "B wins more discordant questions than A"
            "mcnemar_p_pooled": mcnemar_exact_p(pooled.only_a, pooled.only_b), "n": pooled.n,
        })
    return {"run_a": str(run_a.folder), "run_b": str(run_b.folder), "scorer": scorer,
            "resamples": resamples, "seed": seed, "ci_level": 0.95,
            "protocols": {"a": sorted(run_a.protocols), "b": sorted(run_b.protocols)},
            "rows": rows, "means": means, "warnings": warnings}


def _lang_key(lang: str) -> tuple[int, str]:
    return (PARROT_LANGUAGES.index(lang) if lang in PARROT_LANGUAGES else len(PARROT_LANGUAGES), lang)


def format_table(result: dict) -> str:
    """The comparison as a fixed-width table, accuracies and deltas in points (x100)."""
    head = f"{'task':18s} {'metric':13s} {'n':>5s} {'A':>7s} {'B':>7s} {'B-A':>7s} {'95% CI':>17s} {'McNemar p':>10s}"
    lines = [f"A = {result['run_a']}", f"B = {result['run_b']}",
             f"scorer: {result['scorer']}; paired bootstrap ({result['resamples']} resamples, seed "
             f"{result['seed']}); exact McNemar test", head, "-" * len(head)]
    rows = sorted(result["rows"], key=lambda r: (r["benchmark"], r["metric"], _lang_key(r["language"])))
    for name, r, p in ([(r["task"], r, r["mcnemar_p"]) for r in rows]
                       + [(f"{m['benchmark']} mean", m, m["mcnemar_p_pooled"]) for m in result["means"]]):
        lines.append(f"{name:18s} {r['metric']:13s} {r['n']:5d} {100 * r['acc_a']:7.2f} {100 * r['acc_b']:7.2f} "
                     f"{100 * r['delta']:+7.2f} [{100 * r['ci95'][0]:+6.2f}, {100 * r['ci95'][1]:+6.2f}] {p:10.3g}")
    for w in result["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def plot_comparison(result: dict, path) -> None:
    """Delta (B - A) per language with its 95% CI, one panel per benchmark and metric."""
    from matplotlib.figure import Figure  # no pyplot: no backend to switch, no figure to close

    panels: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in result["rows"]:
        panels[(r["benchmark"], r["metric"])].append(r)
    means = {(m["benchmark"], m["metric"]): m for m in result["means"]}
    keys = sorted(panels)
    fig = Figure(figsize=(4.2 * len(keys) + 1, 4))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for axis, key in zip(axes[0], keys):
        items = sorted(panels[key], key=lambda r: _lang_key(r["language"]))
        items += [dict(means[key], language="mean")] if key in means else []
        labels = [r["language"] for r in items]
        values = [100 * r["delta"] for r in items]
        lows = [100 * (r["delta"] - r["ci95"][0]) for r in items]
        highs = [100 * (r["ci95"][1] - r["delta"]) for r in items]
        colours = ["#2e7d32" if v - lo > 0 else "#c62828" if v + hi < 0 else "#78909c"
                   for v, lo, hi in zip(values, lows, highs)]
        xs = range(len(labels))
        axis.bar(xs, values, color=colours, alpha=0.8)
        axis.errorbar(xs, values, yerr=[lows, highs], fmt="none", ecolor="black", capsize=4, lw=1.2)
        axis.axhline(0, color="black", lw=0.8)
        axis.set_xticks(list(xs), labels)
        axis.set_title(f"{key[0]} {key[1]}")
        axis.set_ylabel("B - A (points), 95% CI")
    fig.suptitle(f"B = {Path(result['run_b']).name} vs A = {Path(result['run_a']).name} "
                 f"(green/red: CI excludes 0)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
