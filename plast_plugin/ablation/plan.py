"""The plan of an ablation: which layer sets are trained, with which seeds, under which command. The
alternatives to the selection's K layers are first:K, last:K and random draws of K layers, a new
draw for every seed (docs/method.md, "What varies with the seed").

The plan is a pure function of its inputs (draws are seeded with a string, which does not depend
on PYTHONHASHSEED) and is written to the run folder as plan.json; a run folder is only ever
continued with the same plan.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from plast_plugin.errors import PlastError
from plast_plugin.core.layer_spec import format_layer_spec

PLAN_SCHEMA = "plast-ablation-plan/1"
ALTERNATIVE_KINDS = ("first", "last", "random")
PLAST = "plast"


@dataclass(frozen=True)
class PlannedRun:
    alternative: str  # "plast", "first", "last", "random1", ...
    seed: int
    layers: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.alternative}-seed{self.seed}"


@dataclass
class AblationPlan:
    model: str
    num_layers: int
    selection: list[int]
    modules: str
    seeds: list[int]
    alternatives: list[str]
    runs: list[PlannedRun]
    training: dict[str, Any] = field(default_factory=dict)  # launcher + arguments
    scoring: dict[str, Any] = field(default_factory=dict)   # held-out files (with sha256), languages, template
    budget: int | None = None  # trainable parameters of every run (checked equal)
    schema: str = PLAN_SCHEMA

    def to_dict(self) -> dict:
        out = asdict(self)
        out["runs"] = [{"name": r.name, "alternative": r.alternative, "seed": r.seed, "layers": list(r.layers)}
                       for r in self.runs]
        return out

    def differences(self, recorded: dict) -> list[str]:
        """Top-level fields in which a recorded plan (plan.json) differs from this one."""
        mine = self.to_dict()
        return sorted(key for key in set(mine) | set(recorded) if mine.get(key) != recorded.get(key))


def check_seeds(seeds: int) -> list[int]:
    if seeds < 2:
        raise PlastError(f"--seeds {seeds}: a 95% interval over seeds needs at least 2 seeds (3 or more for a "
                         f"useful one); give --seeds 3")
    return list(range(seeds))


def parse_alternatives(text: str) -> list[str]:
    kinds = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [k for k in kinds if k not in ALTERNATIVE_KINDS]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        raise PlastError(f"--alternatives {text!r}: give a comma-separated subset of {','.join(ALTERNATIVE_KINDS)} "
                         f"without repeats")
    return kinds


def random_draw(num_layers: int, k: int, draw: int, seed: int, selection: Sequence[int]) -> tuple[int, ...]:
    """Draw ``draw`` of K layers for ``seed``; never the selection itself (K < num_layers: other sets exist)."""
    for attempt in itertools.count():
        rng = random.Random(f"plast-ablate/random{draw}/seed{seed}/attempt{attempt}")
        layers = tuple(sorted(rng.sample(range(num_layers), k)))
        if list(layers) != sorted(selection):
            return layers


def make_plan(*, model: str, num_layers: int, selection: Sequence[int], modules: str, seeds: int,
              alternatives: Sequence[str] = ALTERNATIVE_KINDS, random_draws: int = 3,
              training: dict | None = None, scoring: dict | None = None) -> AblationPlan:
    selection = sorted(selection)
    k = len(selection)
    seed_list = check_seeds(seeds)
    if k >= num_layers:
        raise PlastError(f"the selection trains all {num_layers} layers of the model; there is no other set of "
                         f"{k} layers to compare it with")
    if "random" in alternatives and random_draws < 1:
        raise PlastError(f"--random-draws {random_draws}: give 1 or more, or leave 'random' out of --alternatives")
    layers_of = {"first": tuple(range(k)), "last": tuple(range(num_layers - k, num_layers))}
    names: list[str] = []
    for kind in alternatives:
        if kind == "random":
            names += [f"random{r}" for r in range(1, random_draws + 1)]
        elif list(layers_of[kind]) == selection:
            others = ",".join(a for a in alternatives if a != kind) or "random"
            raise PlastError(f"alternative {kind}:{k} is the selection itself (layers {format_layer_spec(selection)}): "
                             f"comparing PLAST with itself says nothing; leave it out with --alternatives {others}")
        else:
            names.append(kind)
    runs = [PlannedRun(PLAST, s, tuple(selection)) for s in seed_list]
    runs += [PlannedRun(name, s, random_draw(num_layers, k, int(name[len("random"):]), s, selection)
                         if name.startswith("random") else layers_of[name])
             for name in names for s in seed_list]
    return AblationPlan(model=model, num_layers=num_layers, selection=selection, modules=modules, seeds=seed_list,
                        alternatives=[PLAST, *names], runs=runs, training=dict(training or {}),
                        scoring=dict(scoring or {}))


def check_budgets(plan: AblationPlan, trainable: dict[tuple[int, ...], int]) -> int:
    """Every run must train the same number of parameters: the ablation compares *which* layers at an
    equal budget. ``trainable`` maps a layer set to its trainable-parameter count. Returns the budget."""
    counts = {run.name: trainable[run.layers] for run in plan.runs}
    budget = counts[plan.runs[0].name]
    unequal = {name: n for name, n in counts.items() if n != budget}
    if unequal:
        shown = ", ".join(f"{run.name} (layers {format_layer_spec(list(run.layers))}) {counts[run.name]:,}"
                          for run in plan.runs if run.name in unequal)
        raise PlastError(
            f"the alternatives do not train the same number of parameters with --modules {plan.modules} "
            f"(the selection trains {budget:,}; {shown}); the model's layers differ in size, so an equal-budget "
            f"comparison needs other alternatives: restrict --alternatives to those with the selection's budget")
    plan.budget = budget
    return budget


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
