"""`plast export-config` for Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and InternVL (transformers 5, tiny random
models built from configs): each target, applied by its tool's own rule (restated from the tools' sources
in plast_plugin/testing/tool_rules.py) to the loaded model, trains exactly the PLAST parameters, never the
vision encoder's blocks of the same indices; where a tool cannot say it, the export refuses by name.
"""
from __future__ import annotations

import pytest
import transformers
import yaml

from plast_plugin.cli import main as plast
from plast_plugin.core.freeze import plast_parameter_names
from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
from plast_plugin.testing.tiny_models import VLM_FAMILIES, make_tiny_vlm
from plast_plugin.testing.tool_rules import EXACT_TOOLS, exact_tool_trains, llamafactory_trains, lmms_engine_trains

# More than 10 layers: a pattern for layer 1 that also catches 10 and 11 is caught.
LAYERS = 12


@pytest.fixture(scope="module", params=list(VLM_FAMILIES))
def target(request, tmp_path_factory):
    path = make_tiny_vlm(request.param, tmp_path_factory.mktemp(request.param) / "model", num_layers=LAYERS)
    model = getattr(transformers, VLM_FAMILIES[request.param][0]).from_pretrained(str(path))
    return {"family": request.param, "path": path, "model": model, "names": [n for n, _ in model.named_parameters()]}


def _selection(tmp_path, model, layers, modules="layer"):
    file = tmp_path / f"sel_{'_'.join(map(str, layers))}_{modules}.json"
    SelectionFile(selected_layers=layers, model=ModelIdentity.of(model, "tiny"), rule="manual",
                  options={"modules": modules}).save(file)
    return file


def _export(tmp_path, selection, tool, model_path, *extra):
    out = tmp_path / f"{selection.stem}.{tool}"
    code = plast(["export-config", str(selection), "--for", tool, "--model", str(model_path), "--out", str(out), *extra])
    return code, out


@pytest.mark.parametrize("layers, modules", [([1, 10], "layer"), ([1, 11], "mlp"), ([1], "attn")])
def test_axolotl_swift_and_regex_select_exactly_the_plast_parameters(target, tmp_path, layers, modules):
    expected = plast_parameter_names(target["model"], layers, modules)
    assert expected and all(n.startswith("model.language_model.layers.") for n in expected)
    selection = _selection(tmp_path, target["model"], layers, modules)
    names = target["names"]

    for tool in EXACT_TOOLS:
        code, out = _export(tmp_path, selection, tool, target["path"])
        assert code == 0
        assert exact_tool_trains(tool, out.read_text(), names) == expected, tool


@pytest.mark.parametrize("layers, modules", [([1, 10], "layer"), ([0, 11], "mlp"), ([1], "attn"),
                                             (list(range(LAYERS)), "layer")])
def test_lmms_engine_freeze_modules_leave_exactly_the_plast_parameters_trainable(target, tmp_path, capsys, layers,
                                                                                  modules):
    expected = plast_parameter_names(target["model"], layers, modules)
    selection = _selection(tmp_path, target["model"], layers, modules)
    code, out = _export(tmp_path, selection, "lmms-engine", target["path"])
    if target["family"] == "llava_onevision":
        # image_newline is a parameter of model.model, which also holds the language model: no
        # freeze_modules path reaches it alone.
        err = capsys.readouterr().err
        assert code == 1 and not out.exists()
        assert "model.image_newline is a parameter of a module that also holds the trained layers" in err
        assert "--approximate" in err and "--for axolotl" in err
        code, out = _export(tmp_path, selection, "lmms-engine", target["path"], "--approximate")
        assert code == 0 and "WARNING: APPROXIMATION" in capsys.readouterr().err
        assert "# WARNING APPROXIMATION" in out.read_text()
        expected = expected | {"model.image_newline"}
    assert code == 0
    config = yaml.safe_load(out.read_text())
    assert set(config) == {"trainer_args"} and set(config["trainer_args"]) == {"freeze_modules"}
    freeze_modules = config["trainer_args"]["freeze_modules"]
    assert lmms_engine_trains(freeze_modules, target["model"]) == expected
    # The vision side is frozen whole, by the largest module paths that hold no trained parameter.
    vision = {"qwen2_5_vl": "model.visual", "qwen3_vl": "model.visual"}.get(target["family"], "model.vision_tower")
    assert vision in freeze_modules


@pytest.mark.parametrize("layers, modules, count", [([0, 1], "layer", -2), ([10, 11], "mlp", 2), ([0], "attn", -1)])
def test_llamafactory_first_or_last_block_is_exact_or_refused_by_name(target, tmp_path, capsys, layers, modules,
                                                                      count):
    selection = _selection(tmp_path, target["model"], layers, modules)
    code, out = _export(tmp_path, selection, "llamafactory", target["path"])
    if target["family"] == "llava_onevision":
        # LLaMA-Factory has no composite entry for it: '.0.' would also train the SigLIP encoder's layer 0.
        assert any(".vision_tower.encoder.layers.0." in n for n in target["names"])
        err = capsys.readouterr().err
        assert code == 1 and not out.exists()
        assert "no composite-model entry for model_type 'llava_onevision'" in err and "--for lmms-engine" in err
        return
    assert code == 0
    config = yaml.safe_load(out.read_text())
    assert config["finetuning_type"] == "freeze" and config["freeze_trainable_layers"] == count
    trained = llamafactory_trains(config, target["names"], LAYERS, target["model"].config.model_type)
    assert trained == plast_parameter_names(target["model"], layers, modules)
