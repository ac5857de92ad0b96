"""The plan of an ablation: which layer sets are trained, with which seeds, under which command. The
budget-matched alternatives to the selection's K layers are first:K, last:K and random draws of K layers,
a new draw for every seed (docs/method.md, "What varies with the seed"). Beside them, reference
alternatives: `rule:<rule>`, the layers a statistic rule picks from the selection file's own statistics
(budget-matched when it picks as many parameters), and `full` / `lora`, LLaVA's own whole-model and LoRA
fine-tuning, which train another number of parameters and are never budget-matched.

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
from plast_plugin.core.rule import SelectionRule

PLAN_SCHEMA = "plast-ablation-plan/1"
ALTERNATIVE_KINDS = ("first", "last", "random", "full", "lora", "rule:<rule>")
DEFAULT_ALTERNATIVES = "first,last,random"
# Trained by LLaVA itself, without the plugin choosing layers: whole-model and LoRA fine-tuning.
WHOLE_MODEL = ("full", "lora")
RULE_PREFIX = "rule:"
PLAST = "plast"


@dataclass(frozen=True)
class PlannedRun:
    alternative: str  # "plast", "first", "last", "random1", "rule:msd-top:5", "full", "lora"
    seed: int
    layers: tuple[int, ...]  # every layer for full and lora

    @property
    def name(self) -> str:
        return f"{self.alternative.replace(':', '-')}-seed{self.seed}"

    @property
    def whole_model(self) -> bool:
        """Trained by LLaVA's own full or LoRA fine-tuning, not by the plugin on a layer set."""
        return self.alternative in WHOLE_MODEL


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
    budget: int | None = None  # trainable parameters of PLAST's runs and of every budget-matched alternative
    # alternative -> trainable parameters, for the alternatives that are not budget-matched
    unmatched: dict[str, int] = field(default_factory=dict)
    schema: str = PLAN_SCHEMA

    def to_dict(self) -> dict:
        out = asdict(self)
        out["runs"] = [{"name": r.name, "alternative": r.alternative, "seed": r.seed, "layers": list(r.layers)}
                       for r in self.runs]
        if not self.unmatched:
            del out["unmatched"]  # a plan of budget-matched alternatives only reads as it did before rules
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


def parse_alternatives(text: str, statistics: bool = True) -> list[str]:
    """The alternatives named in ``--alternatives``; ``statistics``: whether the selection file holds
    the per-layer statistics a `rule:` alternative chooses from. Checked before anything trains."""
    kinds = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [k for k in kinds if k not in ALTERNATIVE_KINDS and not k.startswith(RULE_PREFIX)]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        raise PlastError(f"--alternatives {text!r}: give a comma-separated subset of {','.join(ALTERNATIVE_KINDS)} "
                         f"without repeats (e.g. first,last,random,rule:msd-top:5,full,lora)")
    for kind in kinds:
        if kind.startswith(RULE_PREFIX):
            rule = SelectionRule.parse(kind[len(RULE_PREFIX):])
            if rule.is_spec:
                raise PlastError(f"--alternatives {kind}: a rule alternative chooses from the selection's statistics; "
                                 f"{rule.text!r} is a layer spec (the budget-matched specs are first, last, random)")
            if not statistics:
                raise PlastError(f"--alternatives {kind}: the selection file has no per-layer statistics to apply "
                                 f"the rule to (a manual choice?); give a file written by `plast select`, or drop {kind}")
    return kinds


def random_draw(num_layers: int, k: int, draw: int, seed: int, selection: Sequence[int]) -> tuple[int, ...]:
    """Draw ``draw`` of K layers for ``seed``; never the selection itself (K < num_layers: other sets exist)."""
    for attempt in itertools.count():
        rng = random.Random(f"plast-ablate/random{draw}/seed{seed}/attempt{attempt}")
        layers = tuple(sorted(rng.sample(range(num_layers), k)))
        if list(layers) != sorted(selection):
            return layers


def make_plan(*, model: str, num_layers: int, selection: Sequence[int], modules: str, seeds: int,
              alternatives: Sequence[str] = DEFAULT_ALTERNATIVES.split(","), random_draws: int = 3,
              rule_layers: dict[str, Sequence[int]] | None = None,
              training: dict | None = None, scoring: dict | None = None) -> AblationPlan:
    """``rule_layers``: the layers of each `rule:` alternative, chosen from the selection's statistics."""
    selection = sorted(selection)
    k = len(selection)
    seed_list = check_seeds(seeds)
    if k >= num_layers and any(a in ("first", "last", "random") for a in alternatives):
        raise PlastError(f"the selection trains all {num_layers} layers of the model; there is no other set of "
                         f"{k} layers to compare it with")
    if "random" in alternatives and random_draws < 1:
        raise PlastError(f"--random-draws {random_draws}: give 1 or more, or leave 'random' out of --alternatives")
    layers_of = {"first": tuple(range(k)), "last": tuple(range(num_layers - k, num_layers)),
                 **{name: tuple(range(num_layers)) for name in WHOLE_MODEL},
                 **{name: tuple(sorted(layers)) for name, layers in (rule_layers or {}).items()}}
    names: list[str] = []
    for kind in alternatives:
        if kind == "random":
            names += [f"random{r}" for r in range(1, random_draws + 1)]
        elif kind not in WHOLE_MODEL and list(layers_of[kind]) == selection:
            others = ",".join(a for a in alternatives if a != kind) or "random"
            shown = f"{kind}:{k}" if kind in ("first", "last") else kind
            raise PlastError(f"alternative {shown} is the selection itself (layers {format_layer_spec(selection)}): "
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


def check_budgets(plan: AblationPlan, trainable: dict[str, int]) -> int:
    """The budget-matched alternatives (first, last, random) must train as many parameters as PLAST: the
    ablation compares *which* layers at an equal budget. A rule alternative is budget-matched when it
    does; full and lora never are. ``trainable`` maps a run's name to its trainable-parameter count.
    Sets ``plan.budget`` and ``plan.unmatched``; returns the budget."""
    budget = trainable[plan.runs[0].name]
    matched = [run for run in plan.runs if not run.whole_model and not run.alternative.startswith(RULE_PREFIX)]
    unequal = [run for run in matched if trainable[run.name] != budget]
    if unequal:
        shown = ", ".join(f"{run.name} (layers {format_layer_spec(list(run.layers))}) {trainable[run.name]:,}"
                          for run in unequal)
        raise PlastError(
            f"the alternatives do not train the same number of parameters with --modules {plan.modules} "
            f"(the selection trains {budget:,}; {shown}); the model's layers differ in size, so an equal-budget "
            f"comparison needs other alternatives: restrict --alternatives to those with the selection's budget")
    plan.budget = budget
    plan.unmatched = {run.alternative: trainable[run.name] for run in plan.runs
                      if not run.whole_model and trainable[run.name] != budget}
    return budget


def budget_matched(plan: AblationPlan, alternative: str) -> bool:
    return alternative not in WHOLE_MODEL and alternative not in plan.unmatched


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
