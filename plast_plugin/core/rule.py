"""The selection rule as a value: parsed once from its spelling, then passed along.

A rule is either a statistic rule (`auto` = `msd-above-mean`, `msd-above:X`, `msd-top:K`,
`msd-above-max:F`), which chooses from the per-layer MSD, or a layer spec (`0-4`, `1,3,5`,
`first:K`, `last:K`, `random:K`), which names the layers itself. `SelectionRule.parse` checks
everything that needs no model (the shape, K whole, F in (0, 1]); `check(num_layers)` adds what
needs the model's layer count. The spelling (`text`) is what the selection file records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from plast_plugin.core.layer_spec import is_layer_spec, parse_layer_spec
from plast_plugin.errors import PlastError

STATISTIC_RULES = ("auto", "msd-above-mean", "msd-above:X", "msd-top:K", "msd-above-max:F")
_NUMBER = r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_PARAMETRIC = re.compile(rf"msd-(above|top|above-max):{_NUMBER}")

RuleKind = Literal["msd-above-mean", "msd-above", "msd-top", "msd-above-max", "spec"]


@dataclass(frozen=True)
class SelectionRule:
    text: str  # as the user wrote it; what the selection file records as "rule"
    kind: RuleKind
    number: float | None = None  # X of msd-above, K of msd-top, F of msd-above-max

    @classmethod
    def parse(cls, text) -> "SelectionRule":
        """The rule `text` names, or one PlastError saying what is wrong and what is valid."""
        if isinstance(text, SelectionRule):
            return text
        text = str(text)
        if text in ("auto", "msd-above-mean"):
            return cls(text, "msd-above-mean")
        match = _PARAMETRIC.fullmatch(text)
        if match:
            kind, value = "msd-" + match.group(1), match.group(2)
            if kind == "msd-top" and (not re.fullmatch(r"\d+", value) or int(value) < 1):
                raise PlastError(f"rule {text!r}: K must be a whole number of layers, at least 1 (e.g. 'msd-top:3')")
            if kind == "msd-above-max" and not 0.0 < float(value) <= 1.0:
                raise PlastError(
                    f"rule {text!r}: F is a fraction of the largest MSD, 0 < F <= 1 (e.g. 'msd-above-max:0.5')")
            return cls(text, kind, float(value))
        if is_layer_spec(text) or text[:1].isdigit():  # digits: meant as a spec; say what is wrong in it
            parse_layer_spec(text, 10**9)  # its shape now; the layer range once a model is known
            return cls(text, "spec")
        raise PlastError(
            f"unknown selection rule {text!r}; use one of {', '.join(STATISTIC_RULES)} or a layer spec "
            f"('0-4', '1,3,5', 'first:K', 'last:K', 'random:K')"
        )

    @property
    def is_spec(self) -> bool:
        """True for a layer spec: the user's explicit choice, which needs no statistics."""
        return self.kind == "spec"

    @property
    def needs_statistics(self) -> bool:
        return not self.is_spec

    @property
    def top_k(self) -> int:
        return int(self.number)

    def check(self, num_layers: int, seed: int = 0) -> None:
        """Raise when the rule cannot apply to a model of `num_layers` decoder layers."""
        if self.kind == "msd-top" and self.top_k > num_layers:
            raise PlastError(f"rule {self.text!r}: K must be between 1 and {num_layers}, the model's layer count")
        if self.is_spec:
            parse_layer_spec(self.text, num_layers, seed=seed)

    def __str__(self) -> str:
        return self.text
