"""Paired statistics for two models scored on the same questions: is B really better than A?

Each *unit* is one question (or, for MMBench's circular accuracy, one circular group) with a
pass/fail for model A and for model B. Only the discordant units carry information about the
difference: ``n10`` (A right, B wrong) and ``n01`` (A wrong, B right).

- ``delta = acc_B - acc_A = (n01 - n10) / n``.
- Exact McNemar test: under H0 (no difference) each discordant unit is B's win with probability
  1/2, so ``p = min(1, 2 * P[Binomial(n01 + n10, 1/2) <= min(n01, n10)])`` (two-sided), computed
  with integer binomial coefficients (no scipy, no normal approximation).
- Paired bootstrap 95% interval of ``delta``: resampling the n units with replacement is the
  same as drawing the counts of the four unit kinds (both right, only A, only B, neither) from a
  multinomial with the observed proportions, and ``delta*`` depends only on the two discordant
  counts; so one multinomial draw per replicate is an exact, fast implementation of the
  textbook resampling. Percentile interval (2.5 %, 97.5 %), seeded.
- A benchmark mean over languages (the unweighted mean lmms-eval's groups report) resamples
  each language independently (stratified bootstrap) and averages the deltas.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Sequence

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class PairedCounts:
    """Counts of the four kinds of unit: both right, only A right, only B right, neither."""

    both: int
    only_a: int  # n10: A right, B wrong
    only_b: int  # n01: A wrong, B right
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def acc_a(self) -> float:
        return (self.both + self.only_a) / self.n if self.n else 0.0

    @property
    def acc_b(self) -> float:
        return (self.both + self.only_b) / self.n if self.n else 0.0

    @property
    def delta(self) -> float:
        return (self.only_b - self.only_a) / self.n if self.n else 0.0


def paired_counts(a: Sequence[bool], b: Sequence[bool]) -> PairedCounts:
    """Counts from per-unit outcomes of A and B (same order, same length)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same units: {len(a)} for A, {len(b)} for B")
    pairs = [(bool(x), bool(y)) for x, y in zip(a, b)]
    return PairedCounts(both=pairs.count((True, True)), only_a=pairs.count((True, False)),
                        only_b=pairs.count((False, True)), neither=pairs.count((False, False)))


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1))
    # Python divides big integers exactly before rounding to float, so n in the thousands is fine.
    return min(1.0, 2 * tail / 2**n)


def bootstrap_delta_ci(counts: PairedCounts, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Paired bootstrap 95% percentile interval of ``acc_B - acc_A``: the mean over one language."""
    return mean_delta_ci([counts], resamples, seed)


def mean_delta_ci(per_language: Sequence[PairedCounts], resamples: int = DEFAULT_RESAMPLES,
                  seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """95% interval of the unweighted mean of the per-language deltas (stratified bootstrap)."""
    import numpy as np

    if not per_language:
        raise ValueError("no languages to average")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for c in per_language:  # each language's replicates: one multinomial draw of its unit kinds each
        if c.n:
            draws = rng.multinomial(c.n, np.array([c.only_a, c.only_b, c.both + c.neither], dtype=float) / c.n,
                                    size=resamples)
            total += (draws[:, 1] - draws[:, 0]) / c.n
    low, high = np.percentile(total / len(per_language), [2.5, 97.5])
    return float(low), float(high)
