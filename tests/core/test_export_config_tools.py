"""The exported configs through the tools' own code, where it imports (none of the tools is in the
project's environments, so these skip there). To run them, unpack the wheels somewhere and put that
on the path, e.g. (nothing is installed into an environment):

    pip download --no-deps -d /tmp/tools/whl axolotl llamafactory
    for w in /tmp/tools/whl/*.whl; do python -m zipfile -e "$w" /tmp/tools/site; done
    PYTHONPATH=$PWD:/tmp/tools/site python -m pytest tests/core/test_export_config_tools.py

- axolotl: its `freeze_layers_except` (axolotl.utils.freeze) runs on the loaded model.
- LLaMA-Factory: its `FinetuningArguments` dataclass parses the exported YAML (unknown keys or bad
  values fail there); the package itself needs trl and a transformers <= 5.6, so the freeze rule is
  applied as `_setup_freeze_tuning` does (substring '.{index}.{module}', minus the frozen parts).
- ms-swift: `swift.utils` needs modelscope's hub client to import; its rule (one `re.search`) is
  exercised in test_export_config.py.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import transformers
import yaml

from plast_plugin.cli import main as plast
from plast_plugin.core.freeze import plast_parameter_names
from plast_plugin.core.selection_file import ModelIdentity, SelectionFile


@pytest.fixture(scope="module")
def llava_hf(tmp_path_factory):
    from plast_plugin.testing.tiny_models import make_tiny_llava_hf

    path = make_tiny_llava_hf(tmp_path_factory.mktemp("llava_hf"), num_layers=12)
    return path, transformers.LlavaForConditionalGeneration.from_pretrained(str(path))


def _export(tmp_path, model, layers, tool, model_path, modules="layer"):
    selection = tmp_path / "sel.json"
    SelectionFile(selected_layers=layers, model=ModelIdentity.of(model, "tiny"), rule="manual",
                  options={"modules": modules}).save(selection)
    out = tmp_path / f"out.{tool}"
    assert plast(["export-config", str(selection), "--for", tool, "--model", str(model_path), "--out", str(out)]) == 0
    return yaml.safe_load(out.read_text())


@pytest.mark.parametrize("layers, modules", [([1, 10], "layer"), ([0, 11], "mlp")])
def test_axolotl_freeze_layers_except_trains_exactly_the_selection(llava_hf, tmp_path, layers, modules):
    try:  # axolotl needs a recent accelerate (ParallelismConfig): it imports in the eval env only
        from axolotl.utils import freeze
    except ImportError as err:
        pytest.skip(f"axolotl is not importable here: {err}")
    path, model = llava_hf
    config = _export(tmp_path, model, layers, "axolotl", path, modules)
    freeze.freeze_layers_except(model, config["unfrozen_parameters"])
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == plast_parameter_names(model, layers, modules)


def test_llamafactory_parses_the_exported_yaml(llava_hf, tmp_path):
    spec = importlib.util.find_spec("llamafactory")
    if spec is None:
        pytest.skip("llamafactory is not on the path")
    # hparams/finetuning_args.py imports only the standard library; the package __init__ does not.
    file = Path(spec.submodule_search_locations[0]) / "hparams" / "finetuning_args.py"
    module_spec = importlib.util.spec_from_file_location("llamafactory_finetuning_args", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    path, model = llava_hf
    config = _export(tmp_path, model, [0, 1, 2], "llamafactory", path, "mlp")
    args = module.FinetuningArguments(**config)
    assert args.finetuning_type == "freeze" and args.freeze_trainable_layers == -3
    assert args.freeze_trainable_modules == ["mlp"]
    assert args.freeze_vision_tower and args.freeze_multi_modal_projector and not args.freeze_language_model
    ids = range(min(-args.freeze_trainable_layers, 12))
    trainable = [f".{i}.{m}" for m in args.freeze_trainable_modules for i in ids]
    forbidden = ["vision_tower", "multi_modal_projector"]  # COMPOSITE_MODELS["llava"] keys with the two flags
    trained = {n for n, _ in model.named_parameters()
               if any(t in n for t in trainable) and not any(f in n for f in forbidden)}
    assert trained == plast_parameter_names(model, [0, 1, 2], "mlp")
