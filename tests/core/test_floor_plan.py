"""The package's floor plan (README "Layout", docs/dev/core_api.md) is what the imports say.

Each area may import only areas on its own floor or below, so the method core never learns about a
model family, a trainer or lmms-eval, and a reader can find every fact by walking down. Checked on
the source (every import statement, including the lazy ones inside functions), not at run time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import plast_plugin

PACKAGE = Path(plast_plugin.__file__).parent

# Lowest floor first. The method core sits just above the shared plumbing.
FLOORS = [
    {"plast_plugin", "errors", "atomic", "json_files"},  # shared plumbing
    {"core"},  # the method: probe, statistics, selection, layer specs, freezing, the selection file
    {"data"},  # parallel questions, languages, VLMEvalKit TSVs, LLaVA-JSON training data
    {"models"},  # model families: loading, probe inputs, translation loss
    {"checkpoints"},  # LLaVA checkpoint tools: delta export, merge, conversion to llava-hf
    {"plot", "pipeline", "eval"},  # `plast select`'s pipeline and plot; the lmms-eval tasks
    {"llava"},  # LLaVA training integration (may probe: `--plast_layers auto`)
    {"trainers", "ablation"},  # HF Trainer and other trainers' settings; `plast ablate`'s plan, runs, statistics
    {"commands", "cli"},  # the CLI
]
FLOOR_OF = {area: level for level, areas in enumerate(FLOORS) for area in areas}
# What the core may import from outside the package: the standard library, torch and a progress bar.
CORE_MAY_IMPORT = set(sys.stdlib_module_names) | {"__future__", "torch", "tqdm"}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(source: str) -> list[str]:
    """Every module an import statement names, at the top or inside a function."""
    nodes = list(ast.walk(ast.parse(source)))
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in nodes), "use plast_plugin.<area>.<module>"
    return ([alias.name for n in nodes if isinstance(n, ast.Import) for alias in n.names]
            + [n.module for n in nodes if isinstance(n, ast.ImportFrom)])


# (module, source file) of every module but the test helpers, and (module, imported module) of every import in them
MODULES = [(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"), path)
           for path in sorted(PACKAGE.rglob("*.py"))]
MODULES = [(module, path) for module, path in MODULES if _area(module) != "testing"]
EDGES = [(module, name) for module, path in MODULES for name in _imports(path.read_text(encoding="utf-8"))]


def _upward(area: str, name: str) -> bool:
    """Whether importing ``name`` from ``area`` breaks the plan: a higher floor, or the test helpers."""
    return name.split(".")[0] == "plast_plugin" and (_area(name) == "testing" or FLOOR_OF[_area(name)] > FLOOR_OF[area])


def test_every_area_has_a_floor():
    areas = {_area(module) for module, _ in MODULES}
    assert areas <= set(FLOOR_OF), f"areas without a floor in the plan: {sorted(areas - set(FLOOR_OF))}"


def test_no_area_imports_a_higher_floor_or_the_test_helpers():
    wrong = [f"{module} imports {name}" for module, name in EDGES if _upward(_area(module), name)]
    assert not wrong, "\n".join(wrong)


def test_the_core_imports_torch_and_nothing_model_family_specific():
    wrong = [f"{module} imports {name}" for module, name in EDGES if _area(module) == "core"
             and (_upward("core", name) or name.split(".")[0] not in CORE_MAY_IMPORT | {"plast_plugin"})]
    assert not wrong, "\n".join(wrong)


def test_the_floor_plan_rule_would_catch_an_upward_import():
    # The checker itself: a lazy import of a model-family module in the core, or of the test helpers, is reported.
    (name,) = _imports("def f():\n    from plast_plugin.models.loading import load_for_probe\n")
    assert _upward("core", name) and _upward("eval", "plast_plugin.testing.tiny")
    assert not _upward("commands", name)
