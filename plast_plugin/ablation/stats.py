"""Statistics of a seeded ablation (docs/method.md, "plast ablate"), in plain Python: the training env
has no scipy, and these are a few sums and a table of t quantiles.

Every interval is a two-sided 95% Student-t interval over seeds, the independent repetitions, of the
paired per-seed difference PLAST minus an alternative: of held-out loss (per-question sums, so that
mismatched question sets are caught; lower is better) or of lmms-eval accuracy (higher is better, so
the verdict reads the other way round).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

BETTER = "PLAST better at 95%"
WORSE = "PLAST worse at 95%"
TIED = "not distinguishable at 95%"

# Per-question loss of one run: question id -> (sum of answer-token NLLs in nats, answer tokens).
QuestionLosses = Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int  # seeds


# t_{0.975, df} for df = 1..30 (scipy.stats.t.ppf, 6 decimals).
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


def t975(df: int) -> float:
    """t_{0.975, df}, the factor of a two-sided 95% interval: from the table up to 30 degrees of freedom,
    beyond it the Cornish-Fisher series in 1/df (Abramowitz & Stegun 26.7.5), within 2e-6 there."""
    if df < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # the normal quantile z_{0.975}
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean and 95% t-interval of independent values (one per seed); needs at least 2."""
    values = [float(v) for v in values]
    n = len(values)
    if n < 2:
        raise ValueError(f"a 95% interval over seeds needs at least 2 seeds, got {n}")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def run_loss(questions: QuestionLosses) -> float:
    """A run's language loss from its per-question sums: total NLL / total answer tokens."""
    tokens = sum(int(t) for _, t in questions.values())
    return sum(float(s) for s, _ in questions.values()) / tokens


def _same_questions(plast: Mapping, other: Mapping, where: str, hint: str = "") -> None:
    if set(plast) != set(other):
        missing = sorted(set(plast) ^ set(other))[:5]
        raise ValueError(f"{where}: the two runs were scored on different questions (e.g. {missing}){hint}")


def paired_difference(plast: QuestionLosses, other: QuestionLosses, where: str = "") -> float:
    """PLAST's loss minus the other run's, over the same questions and the same answer tokens."""
    _same_questions(plast, other, where)
    total_diff, tokens = 0.0, 0
    for qid, (plast_sum, plast_tokens) in plast.items():
        other_sum, other_tokens = other[qid]
        if int(plast_tokens) != int(other_tokens):
            raise ValueError(f"{where}: question {qid} has {plast_tokens} answer tokens in one run and "
                             f"{other_tokens} in the other (another tokenizer or template?)")
        total_diff += float(plast_sum) - float(other_sum)
        tokens += int(plast_tokens)
    return total_diff / tokens


def accuracy_difference(plast: Mapping[str, bool], other: Mapping[str, bool], where: str = "") -> float:
    """PLAST's accuracy minus the other run's on the same questions (positive: PLAST more right)."""
    _same_questions(plast, other, where, "; same data and no --limit differences are needed for pairing")
    return accuracy(plast) - accuracy(other)


def paired_differences(plast: Mapping[int, Mapping], other: Mapping[int, Mapping], where: str = "",
                       difference=paired_difference) -> dict[int, float]:
    """Per seed, ``difference`` of PLAST and the other alternative (both must have every seed)."""
    if set(plast) != set(other):
        raise ValueError(f"{where}: seeds differ: PLAST has {sorted(plast)}, the other {sorted(other)}")
    return {seed: difference(plast[seed], other[seed], f"{where} seed {seed}") for seed in sorted(plast)}


def mean_over_languages(per_language: Mapping[str, Mapping[int, float]]) -> dict[int, float]:
    """Per seed, the unweighted mean over languages (each language counts once, as in the table)."""
    languages = list(per_language)
    seeds = sorted(per_language[languages[0]])
    return {s: sum(per_language[lang][s] for lang in languages) / len(languages) for s in seeds}


def accuracy(outcomes: Mapping[str, bool]) -> float:
    """A run's accuracy on one task: the share of its units (questions, circular groups) right."""
    return sum(bool(v) for v in outcomes.values()) / len(outcomes)


def verdict(difference: Interval, higher_is_better: bool = False) -> str:
    """For PLAST minus an alternative: a loss by default (lower is better, so an interval below 0 is
    PLAST better); an accuracy with ``higher_is_better`` (an interval above 0 is PLAST better)."""
    # Read as a loss difference: an accuracy difference with its sign turned.
    low, high = (-difference.high, -difference.low) if higher_is_better else (difference.low, difference.high)
    return BETTER if high < 0 else WORSE if low > 0 else TIED
