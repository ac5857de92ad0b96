"""Accuracy as Parrot / VLMEvalKit compute it, with a per-category breakdown.

A *record* is one scored row: ``{"index": int, "correct": bool, "category": str,
"l2_category": str}``.

- MMMB: plain accuracy over all rows.
- MMBench (circular evaluation): a question's rotated copies have index ``i + k * 1,000,000``;
  a question counts as right only if the original and every copy are right
  (``circular_acc``). ``acc`` is the plain accuracy over the original rows
  (``index < 1,000,000``), i.e. what a single pass without rotations would report.
  Categories of a circular group come from its original row.
- Only *complete* circular groups are scored (both ``acc`` and ``circular_acc``): the original
  row present and, where the record says how many rows its group has in the file
  (``group_size``), all of them. A group cut by ``--limit`` or a lost row would otherwise count
  as fully right on the rows it kept; incomplete groups are counted and warned about instead.
  A metric over no rows is ``None`` (not measured), never 0.0.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

CIRCULAR_OFFSET = 1_000_000
# Benchmarks scored with circular evaluation (their TSVs carry rotated copies).
CIRCULAR_BENCHMARKS = frozenset({"mmbench_ml"})


def metric_names(benchmark: str) -> tuple[str, ...]:
    """The metrics a benchmark's lmms-eval tasks report, in the order of their task files."""
    if benchmark in CIRCULAR_BENCHMARKS:
        return ("acc", "circular_acc", "acc_exact", "circular_acc_exact")
    return ("acc", "acc_exact")


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def accuracy(records: Iterable[Mapping], originals_only: bool = False) -> float | None:
    rows = [r for r in records if not originals_only or int(r["index"]) < CIRCULAR_OFFSET]
    return _rate(sum(bool(r["correct"]) for r in rows), len(rows))


def _groups(records: Iterable[Mapping]) -> dict[int, list[Mapping]]:
    groups: dict[int, list[Mapping]] = defaultdict(list)
    for r in records:
        groups[int(r["index"]) % CIRCULAR_OFFSET].append(r)
    return groups


def _group_head(rows: list[Mapping]) -> Mapping:
    return min(rows, key=lambda r: int(r["index"]))


def _complete(rows: list[Mapping]) -> bool:
    """The group's original row is there and, where the file's group size was recorded, every row."""
    if not any(int(r["index"]) < CIRCULAR_OFFSET for r in rows):
        return False
    sizes = [int(r["group_size"]) for r in rows if r.get("group_size") is not None]
    return not sizes or len(rows) >= max(sizes)


def split_groups(records: Iterable[Mapping]) -> tuple[dict[int, list[Mapping]], dict[int, list[Mapping]]]:
    """(complete, incomplete) circular groups, each ``{question: rows}``."""
    complete, incomplete = {}, {}
    for key, rows in _groups(records).items():
        (complete if _complete(rows) else incomplete)[key] = rows
    return complete, incomplete


def circular_accuracy(records: Iterable[Mapping]) -> float | None:
    groups, _ = split_groups(records)
    return _rate(sum(all(bool(r["correct"]) for r in rows) for rows in groups.values()), len(groups))


def _breakdown(items: list[tuple[str, bool]]) -> dict[str, dict]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, ok in items:
        out[key][0] += int(ok)
        out[key][1] += 1
    return {k: {"acc": _rate(h, n), "correct": h, "total": n} for k, (h, n) in sorted(out.items())}


def summarize(records: Iterable[Mapping], circular: bool) -> dict:
    """Overall and per-category (and per l2-category) scores of one task."""
    records = list(records)
    if not circular:
        return {
            "acc": accuracy(records),
            "n": len(records),
            "by_category": _breakdown([(r.get("category", ""), bool(r["correct"])) for r in records]),
            "by_l2_category": _breakdown([(r.get("l2_category", ""), bool(r["correct"])) for r in records]),
        }
    groups, incomplete = split_groups(records)
    scored = [r for rows in groups.values() for r in rows]
    originals = [r for r in scored if int(r["index"]) < CIRCULAR_OFFSET]
    heads = [(_group_head(rows), all(bool(r["correct"]) for r in rows)) for rows in groups.values()]
    warnings = []
    if incomplete:
        warnings.append(
            f"{len(incomplete)} circular group(s) incomplete (original row or rotated copies missing, e.g. "
            f"question {min(incomplete)}; --limit cuts groups, plast eval --limit does not) and not scored: "
            f"acc and circular_acc are over the {len(groups)} complete group(s) only")
    if not groups:
        warnings.append("no complete circular group: acc and circular_acc were not measured")
    return {
        "acc": accuracy(originals),
        "circular_acc": circular_accuracy(scored),
        "n": len(scored),
        "n_original": len(originals),
        "n_questions": len(groups),
        "n_incomplete_groups": len(incomplete),
        "n_unscored_rows": len(records) - len(scored),
        "warnings": warnings,
        "by_category": {
            "acc": _breakdown([(r.get("category", ""), bool(r["correct"])) for r in originals]),
            "circular_acc": _breakdown([(h.get("category", ""), ok) for h, ok in heads]),
        },
        "by_l2_category": {
            "acc": _breakdown([(r.get("l2_category", ""), bool(r["correct"])) for r in originals]),
            "circular_acc": _breakdown([(h.get("l2_category", ""), ok) for h, ok in heads]),
        },
    }
