"""Freezing leaves exactly the selected layers trainable; the selection file round-trips and
refuses a model of another shape."""

from __future__ import annotations

import json

import pytest
import torch

from plast_plugin.core.freeze import count_parameters, freeze_for_plast, plast_parameter_names
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.selection_file import (SelectionFile, ModelIdentity,
                                         load_selected_layers)
from plast_plugin.errors import PlastError


def _fresh(tiny_llama):
    import copy

    return copy.deepcopy(tiny_llama[0])


@pytest.mark.parametrize("modules, needle", [("layer", None), ("mlp", ".mlp."), ("attn", ".self_attn.")])
def test_freeze_trains_exactly_the_selected_layers(tiny_llama, modules, needle):
    model = _fresh(tiny_llama)
    report = freeze_for_plast(model, [1, 3], modules)
    for name, param in model.named_parameters():
        in_selected = name.startswith(("model.layers.1.", "model.layers.3."))
        expected = in_selected and (needle is None or needle in name)
        assert param.requires_grad == expected, name
    manual = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert (report.trainable_params, report.total_params) == (manual, total) == count_parameters(model)
    assert set(report.per_layer) == {1, 3} and sum(report.per_layer.values()) == manual
    assert "model.embed_tokens.weight" not in report.trainable_names
    assert "total" in report.format_table()


def test_freeze_counts_use_ds_numel_under_zero3(tiny_llama):
    """ZeRO-3 leaves empty local partitions; the true size is in ds_numel."""
    model = _fresh(tiny_llama)
    sizes = {}
    for name, param in model.named_parameters():
        sizes[name] = param.numel()
        param.ds_numel = param.numel()
        param.data = torch.empty(0)
    report = freeze_for_plast(model, [0], "layer")
    assert report.total_params == sum(sizes.values())
    assert report.trainable_params == sum(v for k, v in sizes.items() if k.startswith("model.layers.0."))


def test_freeze_refuses_bad_layers(tiny_llama):
    model = _fresh(tiny_llama)
    with pytest.raises(PlastError, match="has 4 decoder layers"):
        freeze_for_plast(model, [1, 9])
    with pytest.raises(PlastError, match="no layers selected"):
        plast_parameter_names(model, [])
    with pytest.raises(PlastError, match="not one of"):
        freeze_for_plast(model, [1], "ffn")
    assert all(p.requires_grad for p in model.parameters())  # nothing was changed on error


def test_unsupported_architecture_names_what_was_looked_for():
    with pytest.raises(PlastError, match="mlp.gate_proj"):
        find_decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def _selection(model, layers=(0, 2)) -> SelectionFile:
    return SelectionFile(selected_layers=list(layers), model=ModelIdentity.of(model, "tiny"), rule="0,2",
                         options={"rule": "0,2"}, data={"pivot": "en"}, layers=[], trainable={})


def test_selection_file_round_trips(tiny_llama, tmp_path):
    model = tiny_llama[0]
    selection = _selection(model)
    path = selection.save(tmp_path / "plast_layers.json")
    loaded = SelectionFile.load(tmp_path)  # a directory finds plast_layers.json
    assert loaded.to_dict() == selection.to_dict()
    assert load_selected_layers(path, model) == [0, 2]


def test_selection_file_refuses_another_model(tiny_llama, tmp_path):
    model = tiny_llama[0]
    selection = _selection(model)
    selection.model.num_layers = 32
    selection.model.ffn_width = 11008
    path = selection.save(tmp_path / "plast_layers.json")
    with pytest.raises(PlastError, match="32 layers, FFN width 11008.*4 layers, FFN width 128"):
        load_selected_layers(path, model)


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"), ('{"schema": "other/1"}', "not a PLAST selection file"),
    ('{"schema": "plast-layers/1", "model": {}}', "malformed"),
])
def test_broken_selection_files_are_refused(tmp_path, content, message):
    path = tmp_path / "plast_layers.json"
    path.write_text(content)
    with pytest.raises(PlastError, match=message):
        SelectionFile.load(path)


def test_selection_file_with_out_of_range_layers_is_refused(tiny_llama, tmp_path):
    path = _selection(tiny_llama[0]).save(tmp_path / "plast_layers.json")
    raw = json.loads(path.read_text())
    raw["selected_layers"] = [0, 7]
    path.write_text(json.dumps(raw))
    with pytest.raises(PlastError, match="not a non-empty subset of 0-3"):
        SelectionFile.load(path)
