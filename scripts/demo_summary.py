#!/usr/bin/env python
"""The demo's last word: losses, the lmms-eval before/after table, what they mean, the frozen check.

    python scripts/demo_summary.py --out runs/demo [--total-seconds N]

Reads what the earlier steps wrote (OUT/translation_loss.json, OUT/eval/mc_set/mc_set.json,
OUT/eval/translation-choice/{baseline,model,compare}) and writes OUT/summary.json. Exit code 1 when
the frozen-tensor check failed. The wording about significance is computed from the numbers, not
written in advance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ALPHA = 0.05


def _answers(run_folder: Path) -> dict:
    """How the model answered: share of answers naming one option, and of its most common letter."""
    from plast_plugin.eval.compare import read_run

    records = [r for rows in read_run(run_folder).records.values() for r in rows.values()]
    picked = Counter(r.get("prediction") for r in records)
    answered = sum(n for letter, n in picked.items() if letter)
    letter, most = max(((k, n) for k, n in picked.items() if k), key=lambda kv: kv[1], default=(None, 0))
    return {"rows": len(records), "answered": answered / len(records) if records else 0.0,
            "most_common_letter": letter, "most_common_share": most / len(records) if records else 0.0}


def _verdict(rows: list[dict]) -> tuple[str, list[dict], list[dict]]:
    gains = [r for r in rows if r["ci95"][0] > 0 and r["mcnemar_p"] < ALPHA]
    losses = [r for r in rows if r["ci95"][1] < 0 and r["mcnemar_p"] < ALPHA]
    if not gains and not losses:
        text = ("No before/after difference is distinguishable from chance here (every 95% CI includes 0 or "
                f"McNemar p >= {ALPHA}).")
    else:
        parts = []
        if gains:
            parts.append("significant gains (CI excludes 0, p < 0.05) in "
                         + ", ".join(f"{r['task']} {r['metric']}" for r in gains))
        if losses:
            parts.append("significant losses in " + ", ".join(f"{r['task']} {r['metric']}" for r in losses))
        text = "; ".join(parts)
        text = text[0].upper() + text[1:] + "."
    return text, gains, losses


def _load(path: Path, written_by: str) -> dict:
    if not path.is_file():
        raise SystemExit(f"demo_summary: {path} is missing: {written_by} did not finish; run bash scripts/demo.sh")
    return json.loads(path.read_text(encoding="utf-8"))


def summarize(out: Path, total_seconds: int | None) -> tuple[dict, list[str]]:
    loss = _load(out / "translation_loss.json", "scripts/demo_train.py (steps 4-8)")
    mc_set = _load(out / "eval" / "mc_set" / "mc_set.json", "scripts/demo_mc_set.py (step 9)")
    runs = out / "eval" / "translation-choice"
    compare = _load(runs / "compare" / "compare.json", "plast eval --baseline (step 9)")
    before, after = _answers(runs / "baseline"), _answers(runs / "model")
    verdict, gains, losses = _verdict(compare["rows"])
    layers = loss["selected_layers"]
    frozen_ok = not loss["frozen_tensors_changed"] and sorted(loss["selected_layers_changed"]) == sorted(layers)
    n = mc_set["questions_per_language"]
    u = loss["understanding"]
    lines = ["held-out English-translation loss (nats/token; lower is better), before -> after PLAST:",
             "  " + ", ".join(f"{lang} {loss['loss_before'][lang]:.3f} -> {loss['loss_after'][lang]:.3f}"
                              for lang in loss["loss_before"]),
             f"understanding gap, NLL(English answer | question in the language) - NLL(English answer | English "
             f"question) (nats/token; lower: understood more like English), before -> after, change [95% CI over "
             f"{u['problems']} held-out problems]:",
             *(f"  {lang} {g['before']:.3f} -> {g['after']:.3f} ({g['change']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}])"
               for lang, g in u["gap"].items()),
             f"English retention, NLL(English answer | English question): {u['english']['before']:.3f} -> "
             f"{u['english']['after']:.3f} ({u['english']['change']:+.3f} [{u['english']['low']:+.3f}, "
             f"{u['english']['high']:+.3f}]; above 0 would be English made worse)",
             f"lmms-eval, base -> PLAST (points), on the demo's translation-choice set, NOT MMBench ({n} held-out "
             f"questions x {mc_set['rotations']} rotations per language; chance: acc 25%, circular_acc 0.4% for a "
             "random guesser, 0% for a model that always gives the same letter):"]
    for r in sorted(compare["rows"], key=lambda r: (r["metric"], r["language"])):
        lines.append(f"  {r['task']:15s} {r['metric']:13s} {100 * r['acc_a']:6.1f} -> {100 * r['acc_b']:6.1f} "
                     f"({100 * r['delta']:+.1f}, 95% CI [{100 * r['ci95'][0]:+.1f}, {100 * r['ci95'][1]:+.1f}], "
                     f"McNemar p {r['mcnemar_p']:.3g})")
    for name, a in (("base", before), ("PLAST", after)):
        lines.append(f"  {name}: {100 * a['answered']:.0f}% of {a['rows']} answers named one option; "
                     f"{100 * a['most_common_share']:.0f}% were {a['most_common_letter']!s}")
    lines += [
        f"What the numbers mean: {verdict} This is a pipeline proof: a 135M model with a random, untrained vision "
        f"tower, {n} questions per language, a few hundred CPU training steps. The demo shows that the evaluation "
        "half runs end to end on the trained model (conversion, the real lmms-eval CLI with the plugin's tasks, "
        "answer extraction, circular scoring, paired statistics); a significant gain would be a bonus, not a claim "
        "about PLAST, and these are not MMBench/MMMB numbers. The held-out measures above are the measurement of "
        "what training changed: the translation loss (what it trains), the understanding gap (what the method "
        "promises to shrink) and English retention (what it promises to keep), one seed; `plast ablate` repeats "
        "them over seeds against other layer sets, full fine-tuning and LoRA (docs/benchmarks.md).",
        f"frozen-tensor check: {len(loss['frozen_tensors_changed'])} tensors outside the selected layers {layers} "
        f"changed (must be 0); selected layers whose weights changed: {loss['selected_layers_changed']} -> "
        + ("PASSED" if frozen_ok else "FAILED"),
    ]
    if total_seconds is not None:
        lines.append(f"total time so far: {total_seconds} s ({total_seconds / 60:.1f} min)")
    summary = {"loss_before": loss["loss_before"], "loss_after": loss["loss_after"], "understanding": u,
               "eval_set": {k: mc_set[k] for k in ("label", "languages", "questions_per_language", "rotations",
                                                   "chance", "md5")},
               "compare": {"rows": compare["rows"], "means": compare["means"]},
               "answers": {"base": before, "plast": after}, "verdict": verdict,
               "significant_gains": len(gains), "significant_losses": len(losses),
               "frozen_check_passed": frozen_ok, "total_seconds": total_seconds}
    return summary, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--total-seconds", type=int, default=None)
    args = parser.parse_args(argv)
    summary, lines = summarize(args.out, args.total_seconds)
    print("\n".join(lines))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if summary["frozen_check_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
