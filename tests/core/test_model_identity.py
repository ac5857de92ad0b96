"""One model-identity check for every path that applies a selection file (the LLaVA training
hook, PlastCallback / apply_selection, `plast export-config`): another shape is refused; the same
shapes under another architecture or another model name warn."""

from __future__ import annotations

import json

import pytest

from plast_plugin.cli import main as plast
from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
from plast_plugin.errors import PlastError


def _file(architecture="LlavaLlamaForCausalLM", name="liuhaotian/llava-v1.5-7b", shape=(4, 128, 64)):
    return SelectionFile(selected_layers=[1], model=ModelIdentity(architecture, *shape, name), rule="manual")


def _other(architecture="LlavaLlamaForCausalLM", name="liuhaotian/llava-v1.5-7b", shape=(4, 128, 64)):
    return ModelIdentity(architecture, *shape, name)


# moved here from tests/train/test_hub_ids_training.py (it tested the hook's own name check, now
# this shared one); the LLM-into-LLaVA row now warns: an LLM's layers are not its LLaVA's
@pytest.mark.parametrize("selected_on, training, warns", [
    ("lmsys/vicuna-7b-v1.5", "liuhaotian/llava-v1.5-7b", True),
    ("liuhaotian/llava-v1.5-7b", "/ckpt/llava-v1.5-7b/", False),  # a local copy
    (".cache/demo/smollm2", ".cache/demo/llava_smollm2", True),  # the LLM, not the LLaVA built on it
    ("tinyvicuna", "llava_tinyvicuna", True),
    ("liuhaotian/llava-v1.5-7b", "/hf/hub/models--liuhaotian--llava-v1.5-7b/snapshots/0123abc", False),
    (None, "liuhaotian/llava-v1.5-7b", False),
])
def test_other_model_name_warns(selected_on, training, warns):
    warnings = _file(name=selected_on).check_identity(_other(name=training))
    assert bool(warnings) is warns
    if warns:
        assert repr(selected_on) in warnings[0] and repr(training) in warnings[0]


def test_llm_selection_applied_to_a_llava_of_the_same_shapes_warns_on_architecture():
    warnings = _file("LlamaForCausalLM", "x").check_identity(_other("LlavaLlamaForCausalLM", "x"))
    assert len(warnings) == 1 and "made on a LlamaForCausalLM" in warnings[0]


def test_official_llava_and_its_transformers_port_are_one_architecture():
    assert _file().check_identity(_other("LlavaForConditionalGeneration", "/ckpt/llava-v1.5-7b")) == []
    # a converted folder is named by the checkpoint it was made from
    assert _file().check_identity(_other("LlavaForConditionalGeneration", "/out/hf"),
                                  also_named=["/ckpt/llava-v1.5-7b"]) == []


def test_other_shapes_are_refused():
    with pytest.raises(PlastError, match="Run `plast select` on this model"):
        _file().check_identity(_other(shape=(5, 128, 64)))


def test_apply_selection_warns_for_another_model(tiny_llama):
    from plast_plugin.trainers.hf import apply_selection

    model, _ = tiny_llama
    selection = SelectionFile(selected_layers=[1], model=ModelIdentity.of(model, "llava_tinyvicuna"), rule="manual")
    model.config._name_or_path = "/models/tinyvicuna"
    with pytest.warns(UserWarning, match="made on 'llava_tinyvicuna' but is applied to '/models/tinyvicuna'"):
        apply_selection(model, selection)
    for p in model.parameters():
        p.requires_grad_(True)


def test_export_config_warns_for_another_model(tiny_llama_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    file = tmp_path / "sel.json"
    SelectionFile(selected_layers=[1], model=ModelIdentity.of(model, "llava_tinyvicuna"), rule="manual").save(file)
    assert plast(["export-config", str(file), "--for", "regex", "--model", str(tiny_llama_dir)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the selection was made on 'llava_tinyvicuna'" in err
    # the same model by name: no warning
    data = json.loads(file.read_text())
    data["model"]["name_or_path"] = str(tiny_llama_dir)
    file.write_text(json.dumps(data))
    assert plast(["export-config", str(file), "--for", "regex", "--model", str(tiny_llama_dir)]) == 0
    assert "WARNING" not in capsys.readouterr().err
