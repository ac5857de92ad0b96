"""`plast export-config`: every exported pattern, applied the way its tool applies it to the loaded
model's `named_parameters()`, selects exactly the PLAST parameters, no more, no less.

The tools' matching rules (from their sources, restated in plast_plugin/testing/tool_rules.py): axolotl
rewrites each '.' not followed by '+' into a literal dot and `re.match`es; ms-swift `re.search`es
one regex; LLaMA-Factory trains names containing '.{index}.{module}' minus the frozen vision tower
and projector; lmms-engine freezes every parameter of each module its `freeze_modules` paths reach. Names differ between transformers 4.x and 5.x; the suite runs in both envs.
"""
from __future__ import annotations

import json

import pytest
import transformers
import yaml

from plast_plugin.cli import main as plast
from plast_plugin.core.freeze import plast_parameter_names
from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
from plast_plugin.testing.tool_rules import (EXACT_TOOLS, exact_tool_trains, llamafactory_trains, lmms_engine_trains,
                                             swift_trains)

HAS_NEXT = hasattr(transformers, "LlavaNextForConditionalGeneration")
# More than 10 layers: a pattern for layer 1 that also catches 10 and 11 is caught.
LAYERS = 12


# ----------------------------------------------------------------------------- models
def _llava_hf(root):
    from plast_plugin.testing.tiny_models import make_tiny_llava_hf

    path = make_tiny_llava_hf(root / "llava_hf", num_layers=LAYERS)
    return path, transformers.LlavaForConditionalGeneration.from_pretrained(str(path))


def _llava_next_hf(root):
    if not HAS_NEXT:
        pytest.skip(f"transformers {transformers.__version__} has no LLaVA-NeXT")
    from plast_plugin.testing.tiny_models import make_tiny_llava_next_hf

    path = make_tiny_llava_next_hf(root / "llava_next", num_layers=LAYERS)
    return path, transformers.LlavaNextForConditionalGeneration.from_pretrained(str(path))


def _causal_lm(root):
    from plast_plugin.testing.tiny_models import make_tiny_llama

    path = make_tiny_llama(root / "llama", num_layers=LAYERS)
    return path, transformers.AutoModelForCausalLM.from_pretrained(str(path))


@pytest.fixture(scope="module", params=[_llava_hf, _llava_next_hf, _causal_lm], ids=["llava-hf", "llava-next-hf", "causal-lm"])
def target(request, tmp_path_factory):
    path, model = request.param(tmp_path_factory.mktemp("model"))
    return {"path": path, "model": model, "vision": request.param is not _causal_lm,
            "model_type": model.config.model_type if request.param is not _causal_lm else None,
            "names": [n for n, _ in model.named_parameters()]}


def _selection(tmp_path, model, layers, modules="layer"):
    file = tmp_path / f"sel_{'_'.join(map(str, layers))}_{modules}.json"
    SelectionFile(selected_layers=layers, model=ModelIdentity.of(model, "tiny"), rule="manual",
                  options={"modules": modules}).save(file)
    return file


def _export(tmp_path, selection, tool, model_path, *extra):
    out = tmp_path / f"{selection.stem}.{tool}"
    code = plast(["export-config", str(selection), "--for", tool, "--model", str(model_path), "--out", str(out), *extra])
    return code, out


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("layers, modules", [([1, 10], "layer"), ([1, 11], "mlp"), ([1], "attn"), (list(range(LAYERS)), "layer")])
def test_exact_tools_select_exactly_the_plast_parameters(target, tmp_path, capsys, layers, modules):
    expected = plast_parameter_names(target["model"], layers, modules)
    selection = _selection(tmp_path, target["model"], layers, modules)
    names = target["names"]

    for tool in EXACT_TOOLS:
        code, out = _export(tmp_path, selection, tool, target["path"])
        assert code == 0
        assert exact_tool_trains(tool, out.read_text(), names) == expected, tool

    # LLaVA-NeXT's image_newline is a parameter of the module that also holds the language model: no
    # freeze_modules path reaches it alone, so the export refuses, or with --approximate leaves it trainable.
    newline = {n for n in names if n.endswith("image_newline")}
    code, out = _export(tmp_path, selection, "lmms-engine", target["path"])
    if newline:
        err = capsys.readouterr().err
        assert code == 1 and not out.exists() and f"{min(newline)} trainable" in err and "--approximate" in err
        code, out = _export(tmp_path, selection, "lmms-engine", target["path"], "--approximate")
        assert "WARNING: APPROXIMATION" in capsys.readouterr().err
    assert code == 0
    freeze_modules = yaml.safe_load(out.read_text())["trainer_args"]["freeze_modules"]
    assert lmms_engine_trains(freeze_modules, target["model"]) == expected | newline


@pytest.mark.parametrize("layers, modules, count", [([0, 1], "layer", -2), ([10, 11], "mlp", 2), ([0], "attn", -1)])
def test_llamafactory_first_or_last_block_is_exact(target, tmp_path, layers, modules, count):
    selection = _selection(tmp_path, target["model"], layers, modules)
    code, out = _export(tmp_path, selection, "llamafactory", target["path"])
    assert code == 0
    config = yaml.safe_load(out.read_text())
    assert config["finetuning_type"] == "freeze" and config["freeze_trainable_layers"] == count
    trained = llamafactory_trains(config, target["names"], LAYERS, target["model_type"])
    assert trained == plast_parameter_names(target["model"], layers, modules)


def test_llamafactory_refuses_or_loudly_approximates_another_layer_set(target, tmp_path, capsys):
    selection = _selection(tmp_path, target["model"], [1, 3])
    code, out = _export(tmp_path, selection, "llamafactory", target["path"])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "first N or the last N" in err and "--approximate" in err and "--for axolotl" in err

    code, out = _export(tmp_path, selection, "llamafactory", target["path"], "--approximate")
    err = capsys.readouterr().err
    assert code == 0 and "WARNING: APPROXIMATION" in err and "2 layers more" in err and "[0, 2]" in err
    text = out.read_text()
    assert "# WARNING APPROXIMATION" in text
    config = yaml.safe_load(text)
    assert config["freeze_trainable_layers"] == -4  # the first 4 (0-3) is the smallest block holding 1 and 3
    trained = llamafactory_trains(config, target["names"], LAYERS, target["model_type"])
    assert trained == plast_parameter_names(target["model"], [0, 1, 2, 3])


def test_names_follow_this_transformers_line(target, tmp_path):
    if not target["vision"]:
        pytest.skip("causal LMs are named model.layers.N. in both lines")
    selection = _selection(tmp_path, target["model"], [2])
    _, out = _export(tmp_path, selection, "axolotl", target["path"])
    pattern = yaml.safe_load(out.read_text())["unfrozen_parameters"][0]
    major = int(transformers.__version__.split(".")[0])
    assert pattern == ("^model.language_model.layers.2." if major >= 5 else "^language_model.model.layers.2.")


def test_a_selection_for_another_model_is_refused(target, tmp_path, capsys):
    from plast_plugin.testing.tiny_models import make_tiny_llama

    other = transformers.AutoModelForCausalLM.from_pretrained(str(make_tiny_llama(tmp_path / "six", num_layers=6, hidden=32, intermediate=64)))
    selection = _selection(tmp_path, other, [5])
    code, out = _export(tmp_path, selection, "swift", target["path"])
    assert code == 1 and not out.exists()
    assert "6 layers" in capsys.readouterr().err


def test_an_official_llava_checkpoint_is_refused_with_the_conversion_command(tmp_path, capsys, tiny_llama):
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava_llama"}))
    selection = _selection(tmp_path, tiny_llama[0], [0])
    code, _ = _export(tmp_path, selection, "regex", folder)
    assert code == 1 and f"plast export {folder} --to-hf" in capsys.readouterr().err


def test_a_hub_id_resolves_through_the_offline_cache(tmp_path):
    """The README's command: `--model llava-hf/llava-1.5-7b-hf`, here from an offline HF cache."""
    import subprocess
    import sys
    from pathlib import Path

    from plast_plugin.testing.hub_cache import add_to_hub_cache, offline_hub_env
    from plast_plugin.testing.tiny_models import make_tiny_llava_hf

    model_dir = make_tiny_llava_hf(tmp_path / "llava_hf", num_layers=LAYERS)
    add_to_hub_cache(tmp_path / "cache", "llava-hf/llava-1.5-7b-hf", model_dir)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(str(model_dir))
    selection = _selection(tmp_path, model, [0, 1])
    plast_cli = Path(sys.executable).parent / "plast"
    proc = subprocess.run([str(plast_cli), "export-config", str(selection), "--for", "swift", "--model",
                           "llava-hf/llava-1.5-7b-hf"], env=offline_hub_env(tmp_path / "cache", tmp_path / "home"),
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [n for n, _ in model.named_parameters()]
    assert swift_trains(proc.stdout.strip(), names) == plast_parameter_names(model, [0, 1])
    assert "llava-hf/llava-1.5-7b-hf" not in proc.stdout  # stdout is the regex alone: "$(...)" works
