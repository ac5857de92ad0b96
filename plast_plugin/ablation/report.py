"""From the runs' results to the ablation's summary: the table, the plots, ablation.json.

Three held-out measures, each read so that lower is better, so "PLAST better" is an interval of PLAST
minus the alternative entirely below 0 for all of them:
- translation: the loss of the English translation (the training objective);
- understanding gap: NLL(answer | question in L) - NLL(answer | English question), per answer token;
- English: NLL(answer | English question) itself, which training must not make worse (retention: each
  alternative's change from the untrained model, over seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

from plast_plugin.atomic import atomic_output_file, write_text_atomic
from plast_plugin.errors import PlastError
from plast_plugin.core.layer_spec import format_layer_spec
from plast_plugin.ablation import stats
from plast_plugin.ablation.plan import PLAST, WHOLE_MODEL, AblationPlan, budget_matched

MEAN = "mean"  # the unweighted mean over languages, a column of its own
TRANSLATION, GAP, ENGLISH = "translation", "understanding_gap", "english"  # the measures' names
_SHORT = {stats.BETTER: "better", stats.WORSE: "worse", stats.TIED: "n.d."}  # verdicts in a table cell
# English NLL after training minus untrained, read over seeds: below 0 improved, above 0 made worse.
RETENTION = {stats.BETTER: "English better than untrained at 95%", stats.WORSE: "English WORSE than untrained at 95%",
             stats.TIED: "English kept (no change at 95%)"}


def _over_seeds(per_seed: dict[int, float], higher_is_better: bool | None = None) -> dict:
    """Mean and 95% interval over seeds with the per-seed values; for a difference (``higher_is_better``
    given), its verdict."""
    interval = stats.mean_interval(list(per_seed.values()))
    entry = {"mean": interval.mean, "low": interval.low, "high": interval.high, "seeds": interval.n,
             "per_seed": {str(s): v for s, v in per_seed.items()}}
    if higher_is_better is not None:
        entry["verdict"] = stats.verdict(interval, higher_is_better=higher_is_better)
    return entry


def summarize(plan: AblationPlan, results: dict[str, dict], base: dict | None = None) -> dict:
    """Means and 95% intervals over seeds, paired differences PLAST minus each alternative, verdicts."""
    languages = list(plan.scoring.get("languages") or next(iter(results.values()))["losses"])
    by_alt: dict[str, dict[int, dict]] = {}
    for run in plan.runs:
        by_alt.setdefault(run.alternative, {})[run.seed] = results[run.name]
    plast = by_alt[PLAST]
    alternatives: dict[str, dict] = {}
    differences: dict[str, dict] = {}
    for alt, seeds in by_alt.items():
        per_lang = {lang: {s: stats.run_loss(r["losses"][lang]) for s, r in seeds.items()} for lang in languages}
        per_lang[MEAN] = stats.mean_over_languages(per_lang)
        alternatives[alt] = {
            "layers": {str(s): r["layers"] for s, r in seeds.items()},
            "trainable_params": sorted({r["trainable_params"] for r in seeds.values()}),
            "budget_matched": budget_matched(plan, alt),
            "loss": {col: _over_seeds(v) for col, v in per_lang.items()},
        }
        if alt != PLAST:
            diffs = {lang: stats.paired_differences({s: r["losses"][lang] for s, r in plast.items()},
                                                    {s: r["losses"][lang] for s, r in seeds.items()}, f"{alt}, {lang}")
                     for lang in languages}
            diffs[MEAN] = stats.mean_over_languages(diffs)
            differences[alt] = {col: _over_seeds(per_seed, higher_is_better=False) for col, per_seed in diffs.items()}
    summary = {
        "schema": "plast-ablation/1",
        "model": plan.model,
        "selection": plan.selection,
        "modules": plan.modules,
        "trainable_params_per_run": plan.budget,
        "seeds": plan.seeds,
        "languages": languages,
        "metric": "held-out English-translation loss (mean NLL per answer token, nats; lower is better)",
        "interval": "95% Student-t interval over seeds; differences are PLAST minus the alternative, paired by "
                    "seed (same data order) and question (same answer tokens); see docs/method.md",
        "base_loss": ({lang: stats.run_loss(base["losses"][lang]) for lang in languages} if base else None),
        "alternatives": alternatives,
        "differences": differences,
        "verdicts": {alt: {TRANSLATION: cols[MEAN]["verdict"]} for alt, cols in differences.items()},
    }
    if plan.scoring.get("problems"):
        summary["understanding"] = summarize_understanding(by_alt, base, languages, plan.scoring.get("pivot") or "en")
        for alt, diff in summary["understanding"]["differences"].items():
            summary["verdicts"][alt].update({GAP: diff[GAP][MEAN]["verdict"], ENGLISH: diff[ENGLISH]["verdict"]})
    if plan.scoring.get("eval"):
        summary["accuracy"] = summarize_accuracy(plan, by_alt)
    return summary


def _gaps(answers: dict, languages, pivot: str) -> dict[str, float]:
    """One run's understanding gap per language and their mean, from its per-question answer NLLs."""
    english = stats.run_loss(answers[pivot])
    gaps = {lang: stats.run_loss(answers[lang]) - english for lang in languages}
    return {**gaps, MEAN: sum(gaps.values()) / len(gaps)}


def summarize_understanding(by_alt: dict[str, dict[int, dict]], base: dict | None, languages, pivot: str) -> dict:
    """Per alternative, the understanding gap (per language and mean) and the English answer NLL with
    its change from the untrained model, over seeds; PLAST minus each alternative, paired by seed and
    question: the gap's difference is the language's paired difference minus the pivot's."""
    plast = by_alt[PLAST]
    alternatives, differences = {}, {}
    base_english = stats.run_loss(base["answers"][pivot]) if base else None
    for alt, seeds in by_alt.items():
        gaps = {s: _gaps(r["answers"], languages, pivot) for s, r in seeds.items()}
        english = {s: stats.run_loss(r["answers"][pivot]) for s, r in seeds.items()}
        alternatives[alt] = {GAP: {col: _over_seeds({s: g[col] for s, g in gaps.items()}) for col in [*languages, MEAN]},
                             ENGLISH: _over_seeds(english)}
        if base_english is not None:
            # Retention: the change from the untrained model; an interval above 0 is English made worse.
            change = _over_seeds({s: v - base_english for s, v in english.items()})
            change["verdict"] = RETENTION[stats.verdict(stats.Interval(change["mean"], change["low"], change["high"],
                                                                       change["seeds"]))]
            alternatives[alt]["english_change"] = change
        if alt == PLAST:
            continue
        pair = {lang: stats.paired_differences({s: r["answers"][lang] for s, r in plast.items()},
                                               {s: r["answers"][lang] for s, r in seeds.items()}, f"{alt}, {lang} answers")
                for lang in [pivot, *languages]}
        gap_diffs = {lang: {s: pair[lang][s] - pair[pivot][s] for s in pair[pivot]} for lang in languages}
        gap_diffs[MEAN] = stats.mean_over_languages(gap_diffs)
        differences[alt] = {GAP: {col: _over_seeds(v, higher_is_better=False) for col, v in gap_diffs.items()},
                            ENGLISH: _over_seeds(pair[pivot], higher_is_better=False)}
    return {
        "metric": f"NLL per token of the English reference answer given the question (nats); gap: question in a "
                  f"language minus the {pivot} question, over the same answer tokens; lower is better for both",
        "pivot": pivot,
        "base": ({GAP: _gaps(base["answers"], languages, pivot), ENGLISH: base_english} if base else None),
        "alternatives": alternatives,
        "differences": differences,
    }


def summarize_accuracy(plan: AblationPlan, by_alt: dict[str, dict[int, dict]]) -> dict:
    """Per task and metric: accuracy mean and 95% interval over seeds per alternative, and PLAST minus
    each alternative paired by seed and question (an interval above 0: "PLAST better")."""
    first = next(iter(by_alt[PLAST].values()))
    for result in (r for seeds in by_alt.values() for r in seeds.values()):
        if set(result.get("eval") or {}) != set(first["eval"]):
            raise PlastError(
                f"run {result['run']} was evaluated on tasks {sorted(result.get('eval') or {})}, run {first['run']} "
                f"on {sorted(first['eval'])}: lmms-eval scored only part of the tasks in one of them; delete "
                f"that run's result.json and re-run plast ablate to evaluate it again")
    tasks = {task: {metric: _accuracy_entry({alt: {s: r["eval"][task][metric]["correct"] for s, r in seeds.items()}
                                             for alt, seeds in by_alt.items()}, f"{task} {metric}")
                    for metric in metrics}
             for task, metrics in first["eval"].items()}
    return {"metric": "lmms-eval accuracy through plast eval (share of questions right; MMBench's circular_acc: "
                      "of circular groups; higher is better)",
            "higher_is_better": True, "eval": plan.scoring["eval"],
            "interval": "95% Student-t interval over seeds; differences are PLAST's accuracy minus the "
                        "alternative's, paired by seed and question: positive means PLAST answered more right",
            "tasks": tasks}


def _accuracy_entry(correct: dict[str, dict[int, dict]], label: str) -> dict:
    """One task's metric from {alternative: {seed: {question: 0/1}}}."""
    entry = {"alternatives": {}, "differences": {}}
    for alt, per_seed in correct.items():
        entry["alternatives"][alt] = {**_over_seeds({s: stats.accuracy(c) for s, c in per_seed.items()}),
                                      "units": len(next(iter(per_seed.values())))}
        if alt != PLAST:
            diffs = stats.paired_differences(correct[PLAST], per_seed, f"{alt}, {label}", stats.accuracy_difference)
            entry["differences"][alt] = _over_seeds(diffs, higher_is_better=True)
    return entry


def _layers_label(alt: str, entry: dict) -> str:
    if alt in WHOLE_MODEL:
        return "all (LoRA)" if alt == "lora" else "all"
    sets = {tuple(v) for v in entry["layers"].values()}
    return format_layer_spec(list(next(iter(sets)))) if len(sets) == 1 else f"{len(sets)} draws"


def _params_label(entry: dict) -> str:
    """The trainable parameters beside each alternative; '*' marks a row that is not budget-matched."""
    counts = entry["trainable_params"]
    shown = f"{counts[0] / 1e6:.2f}M" if len(counts) == 1 else f"{min(counts) / 1e6:.2f}-{max(counts) / 1e6:.2f}M"
    return shown + ("" if entry.get("budget_matched", True) else "*")


def _cell(entry: dict, sign: str = "") -> str:
    return f"{entry['mean']:{sign}.3f} [{entry['low']:{sign}.3f},{entry['high']:{sign}.3f}]"


def _head(columns, width: int) -> str:
    return f"{'':<15} {'layers':<11} {'params':>9}" + "".join(f"{c:>{width}}" for c in columns)


def _rows(summary: dict, alternatives, cells, width: int) -> list[str]:
    """One table row per alternative: its name, its layers, its trainable parameters, then ``cells(alternative)``."""
    entries = summary["alternatives"]
    return [f"{alt:<15} {_layers_label(alt, entries[alt]):<11} {_params_label(entries[alt]):>9}"
            + "".join(f"{c:>{width}}" for c in cells(alt)) for alt in alternatives]


def _untrained_row(values: list[float], width: int) -> str:
    return f"{'untrained':<15} {'-':<11} {'-':>9}" + "".join(f"{v:>{width}.3f}" for v in values)


def _interval(entry: dict) -> str:
    return f"{entry['mean']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"


def format_table(summary: dict) -> str:
    languages, columns, width = summary["languages"], [*summary["languages"], MEAN], 25
    head = _head(columns, width)
    lines = [f"held-out translation loss (nats/token), mean [95% CI] over {len(summary['seeds'])} seeds "
             f"(PLAST trains {summary['trainable_params_per_run']:,} parameters; * = not budget-matched: a reference "
             f"row, not an equal-budget comparison)", head]
    if summary.get("base_loss"):
        values = [summary["base_loss"][lang] for lang in languages]
        lines.append(_untrained_row([*values, sum(values) / len(values)], width))
    differences = summary["differences"]
    alternatives = summary["alternatives"]
    lines += _rows(summary, alternatives, lambda a: [_cell(alternatives[a]["loss"][c]) for c in columns], width)
    lines += ["", "PLAST minus alternative, paired by seed and question: mean [95% CI] (negative: PLAST lower loss)", head]
    lines += _rows(summary, differences, lambda a: [_cell(differences[a][c], "+") for c in columns], width)
    if summary.get("understanding"):
        lines += ["", *format_understanding_table(summary, width)]
    lines += ["", "verdicts, PLAST minus alternative, mean over languages, 95% CI over seeds (lower is better for every "
                  "measure: below 0 is PLAST better):"]
    understanding = (summary.get("understanding") or {}).get("differences", {})
    for alt, cols in differences.items():
        m = cols[MEAN]
        matched = "" if alternatives[alt].get("budget_matched", True) else " (not budget-matched)"
        lines.append(f"  vs {alt}{matched}:")
        lines.append(f"    translation loss   {m['verdict']:<28} {_interval(m)} nats; per language: "
                     + ", ".join(f"{lang} {_SHORT[cols[lang]['verdict']]}" for lang in languages))
        if alt in understanding:
            gap, english = understanding[alt][GAP], understanding[alt][ENGLISH]
            lines.append(f"    understanding gap  {gap[MEAN]['verdict']:<28} {_interval(gap[MEAN])} nats; per language: "
                         + ", ".join(f"{lang} {_SHORT[gap[lang]['verdict']]}" for lang in languages))
            lines.append(f"    English answer NLL {english['verdict']:<28} {_interval(english)} nats")
    if summary.get("accuracy"):
        lines += ["", *format_accuracy_table(summary)]
    return "\n".join(lines)


def format_understanding_table(summary: dict, width: int) -> list[str]:
    u = summary["understanding"]
    columns = [*summary["languages"], MEAN]
    head = _head(columns, width)
    lines = [f"understanding gap: NLL(English answer | question in the language) - NLL(English answer | {u['pivot']} "
             f"question), nats/token, mean [95% CI] over seeds (lower: the question is understood more like the "
             f"{u['pivot']} one)", head]
    if u.get("base"):
        lines.append(_untrained_row([u["base"][GAP][c] for c in columns], width))
    alternatives, differences = u["alternatives"], u["differences"]
    lines += _rows(summary, alternatives, lambda a: [_cell(alternatives[a][GAP][c]) for c in columns], width)
    lines += ["", "PLAST minus alternative, gap, paired by seed and question (negative: PLAST's gap smaller)", head]
    lines += _rows(summary, differences, lambda a: [_cell(differences[a][GAP][c], "+") for c in columns], width)
    retention = [f"{'English answer NLL':>{width}}", f"{'change from untrained':>{width}}", "  retention"]
    lines += ["", f"English retention: NLL(English answer | {u['pivot']} question), nats/token, mean [95% CI] over seeds"
                  + (f"; untrained {u['base'][ENGLISH]:.3f}" if u.get("base") else ""),
              f"{'':<15} {'layers':<11} {'params':>9}" + "".join(retention)]
    lines += _rows(summary, alternatives, lambda a: [_cell(alternatives[a][ENGLISH]),
                                                     *([_cell(alternatives[a]["english_change"], "+"),
                                                        "  " + alternatives[a]["english_change"]["verdict"]]
                                                       if "english_change" in alternatives[a] else [])], width)
    return lines


def format_accuracy_table(summary: dict) -> list[str]:
    tasks = summary["accuracy"]["tasks"]
    entries = {f"{task} {metric}": entry for task, metrics in tasks.items() for metric, entry in metrics.items()}
    width = max(25, *(len(label) + 2 for label in entries))
    head = _head(entries, width)
    lines = [f"lmms-eval accuracy through plast eval (0-1, higher is better), mean [95% CI] over "
             f"{len(summary['seeds'])} seeds; questions per task: "
             + ", ".join(f"{label} {e['alternatives'][PLAST]['units']}" for label, e in entries.items()), head]
    cells = list(entries.values())
    lines += _rows(summary, summary["alternatives"], lambda a: [_cell(e["alternatives"][a]) for e in cells], width)
    lines += ["", "PLAST minus alternative, paired by seed and question: mean [95% CI] (positive: PLAST more accurate)",
              head]
    differences = summary["differences"]
    lines += _rows(summary, differences, lambda a: [_cell(e["differences"][a], "+") for e in cells], width)
    lines += ["", "accuracy verdict per task (higher is better: an interval above 0 is PLAST better):"]
    lines += [f"  vs {alt:<9} " + "; ".join(f"{label} {_SHORT[e['differences'][alt]['verdict']]}"
                                           for label, e in entries.items())
              for alt in summary["differences"]]
    return lines


def _interval_panel(axis, entries: dict[str, dict], labels: list[str], colors: list[str], scatter: bool) -> None:
    """One point with its 95% interval per entry (and its per-seed values with ``scatter``)."""
    for x, (e, color) in enumerate(zip(entries.values(), colors)):
        axis.errorbar([x], [e["mean"]], yerr=[[e["mean"] - e["low"]], [e["high"] - e["mean"]]], fmt="o",
                      color=color, capsize=4)
        if scatter:
            axis.scatter([x] * len(e["per_seed"]), list(e["per_seed"].values()), s=10, color=color, alpha=0.4)
    axis.set_xticks(range(len(entries)), labels, fontsize=8)


def _values_panel(axis, summary: dict, entries: dict[str, dict]) -> None:
    """Each alternative's value over seeds, PLAST in orange, reference rows marked '*'."""
    alternatives = summary["alternatives"]
    _interval_panel(axis, entries, [f"{a}\n{_layers_label(a, alternatives[a])}"
                                    + ("" if alternatives[a].get("budget_matched", True) else "*") for a in entries],
                    ["#e65100" if a == PLAST else "#546e7a" for a in entries], scatter=True)


def _differences_panel(axis, differences: dict[str, dict], what: str) -> None:
    """PLAST minus each alternative, coloured by its verdict, with the 0 line."""
    _interval_panel(axis, differences, [f"{a}\n{_SHORT[e['verdict']]}" for a, e in differences.items()],
                    [{stats.BETTER: "#2e7d32", stats.WORSE: "#c62828"}.get(e["verdict"], "#546e7a")
                     for e in differences.values()], scatter=False)
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_ylabel(f"PLAST minus alternative, {what}")
    axis.set_title("paired difference, 95% CI (below 0: PLAST better)", fontsize=10)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_output_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def plot_column(summary: dict, column: str, path: Path) -> Path:
    """One figure per language (and one for the mean): the losses with their intervals, and the paired
    differences PLAST minus each alternative with theirs (an interval below 0: PLAST better)."""
    from matplotlib.figure import Figure  # no pyplot: no backend to switch, no figure to close

    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2)
    _values_panel(left, summary, {a: e["loss"][column] for a, e in summary["alternatives"].items()})
    if summary.get("base_loss") and column != MEAN:
        left.axhline(summary["base_loss"][column], color="#90a4ae", linestyle="--", label="untrained")
        left.legend(loc="best", fontsize=8)
    left.set_ylabel("held-out translation loss (nats/token)")
    left.set_title(f"{column}: mean and 95% CI over {len(summary['seeds'])} seeds (* not budget-matched)", fontsize=10)
    _differences_panel(right, {a: e[column] for a, e in summary["differences"].items()}, "nats/token")
    return _save(fig, path)


def plot_understanding(summary: dict, path: Path) -> Path:
    """The understanding gap (mean over languages) and English retention: each alternative's value over
    seeds against the untrained model's, and PLAST minus each alternative."""
    from matplotlib.figure import Figure

    u = summary["understanding"]
    fig = Figure(figsize=(11, 7.2))
    (gap, gap_diff), (english, english_diff) = fig.subplots(2, 2)
    for axis, diff_axis, key, name in ((gap, gap_diff, GAP, "understanding gap"), (english, english_diff, ENGLISH,
                                                                                    "English answer NLL")):
        _values_panel(axis, summary, {a: e[key][MEAN] if key == GAP else e[key] for a, e in u["alternatives"].items()})
        if u.get("base"):
            axis.axhline(u["base"][key][MEAN] if key == GAP else u["base"][key], color="#90a4ae", linestyle="--",
                         label="untrained")
            axis.legend(loc="best", fontsize=8)
        axis.set_ylabel(f"{name} (nats/token)")
        axis.set_title(f"{name}{', mean over languages' if key == GAP else ''}: 95% CI over seeds", fontsize=10)
        _differences_panel(diff_axis, {a: e[key][MEAN] if key == GAP else e[key] for a, e in u["differences"].items()},
                           name)
    return _save(fig, path)


def write_outputs(summary: dict, out: Path) -> list[Path]:
    """ablation.json, ablation.txt (the printed table), one plot per language and for the mean, and with
    the understanding measures ablation_understanding.png."""
    return [write_text_atomic(out / "ablation.json", json.dumps(summary, indent=2) + "\n"),
            write_text_atomic(out / "ablation.txt", format_table(summary) + "\n"),
            *(plot_column(summary, column, out / f"ablation_{column}.png") for column in [*summary["languages"], MEAN]),
            *([plot_understanding(summary, out / "ablation_understanding.png")] if summary.get("understanding") else [])]


def selection_record(summary: dict, out: Path, date: str) -> dict:
    """What the selection file keeps of the ablation: where, when, and per alternative its layers, its
    trainable parameters, and each measure's verdict with its interval."""
    understanding = (summary.get("understanding") or {}).get("differences", {})

    def measures(alt: str, cols: dict) -> dict:
        found = {TRANSLATION: cols[MEAN]}
        if alt in understanding:
            found.update({GAP: understanding[alt][GAP][MEAN], ENGLISH: understanding[alt][ENGLISH]})
        return {name: {"verdict": entry["verdict"], "difference": {k: entry[k] for k in ("mean", "low", "high")}}
                for name, entry in found.items()}

    record = {
        "run_dir": str(out.resolve()),
        "date": date,
        "seeds": len(summary["seeds"]),
        "metric": "PLAST minus alternative, mean over languages, 95% CI over seeds, lower is better for every measure: "
                  "held-out translation loss" + (", understanding gap, English answer NLL" if understanding else ""),
        "verdicts": {alt: {"layers": _layers_label(alt, summary["alternatives"][alt]),
                           "trainable_params": summary["alternatives"][alt]["trainable_params"],
                           "budget_matched": summary["alternatives"][alt]["budget_matched"],
                           "measures": measures(alt, cols)}
                     for alt, cols in summary["differences"].items()},
    }
    if summary.get("accuracy"):
        record["accuracy"] = {
            "metric": "lmms-eval accuracy through plast eval, PLAST minus alternative (higher is better: "
                      "positive favours PLAST), 95% CI over seeds",
            "verdicts": {task: {metric: {alt: {"verdict": diff["verdict"],
                                               "difference": {k: diff[k] for k in ("mean", "low", "high")}}
                                         for alt, diff in entry["differences"].items()}
                                for metric, entry in metrics.items()}
                         for task, metrics in summary["accuracy"]["tasks"].items()},
        }
    return record
