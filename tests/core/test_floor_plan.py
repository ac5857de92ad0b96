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
CORE_THIRD_PARTY = {"torch", "tqdm"}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; use plast_plugin.<area>.<module>"
            names.append(node.module)
    return names


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        found.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return found


def test_every_area_has_a_floor():
    areas = {_area(module) for module, _ in _modules()} - {"testing"}
    assert areas <= set(FLOOR_OF), f"areas without a floor in the plan: {sorted(areas - set(FLOOR_OF))}"


def test_no_area_imports_a_higher_floor_or_the_test_helpers():
    wrong = []
    for module, path in _modules():
        area = _area(module)
        if area == "testing":
            continue
        for name in _imports(path):
            if not name.startswith("plast_plugin"):
                continue
            target = _area(name)
            if target == "testing" or FLOOR_OF[target] > FLOOR_OF[area]:
                wrong.append(f"{module} ({area}) imports {name} ({target})")
    assert not wrong, "\n".join(wrong)


def test_the_core_imports_torch_and_nothing_model_family_specific():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = []
    for module, path in _modules():
        if _area(module) != "core":
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "plast_plugin":
                if FLOOR_OF[_area(name)] > FLOOR_OF["core"]:
                    wrong.append(f"{module} imports {name}")
            elif top not in stdlib and top not in CORE_THIRD_PARTY:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_floor_plan_rule_would_catch_an_upward_import(tmp_path):
    # The checker itself: a core module importing a model-family module is reported.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from plast_plugin.models.loading import load_for_probe\n")
    assert FLOOR_OF[_area(_imports(probe)[0])] > FLOOR_OF["core"]
