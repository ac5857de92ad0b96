"""The training record plast_training.json: one reader and writer for both training paths, which
loads the files earlier versions wrote and refuses a damaged one naming the file and field."""

from __future__ import annotations

import json

import pytest
import torch

from plast_plugin.core.training_record import (
    TRAINING_RECORD,
    TrainingRecord,
    base_fingerprint,
    check_optimizer,
    tensor_sha256,
)
from plast_plugin.errors import PlastError

# As the LLaVA patch wrote it (with the history of a resumed run) and as PlastCallback wrote it.
LLAVA_RECORD = {
    "layers": [1, 2], "modules": "layer", "plast_layers": "1-2", "base_model": "base",
    "base_fingerprint": {"method": "sha256", "tensors": {"model.layers.1.mlp.up_proj.weight": {
        "dtype": "float32", "sha256": "ab"}}},
    "trainable": {"layers": [1, 2], "modules": "layer", "trainable_params": 10, "total_params": 100,
                  "fraction": 0.1},
    "trainable_names": ["model.layers.1.mlp.up_proj.weight"],
    "history": [{"layers": [1], "modules": "layer", "plast_layers": "1"},
                {"layers": [2], "modules": "layer", "plast_layers": "2"}],
}
CALLBACK_RECORD = {
    "layers": [0], "modules": "mlp", "plast_layers": "sel/plast_layers.json", "base_model": "llava-hf/x",
    "trainable": {}, "trainable_names": [], "trainer": "transformers.Trainer + plast_plugin.trainers.hf.PlastCallback",
}


@pytest.mark.parametrize("raw", [LLAVA_RECORD, CALLBACK_RECORD], ids=["llava", "callback"])
def test_records_of_both_training_paths_load_and_save_unchanged(tmp_path, raw):
    (tmp_path / TRAINING_RECORD).write_text(json.dumps(raw))
    record = TrainingRecord.load(tmp_path)  # a folder means its plast_training.json
    assert record.layers == raw["layers"] and record.modules == raw["modules"]
    out = tmp_path / "again"
    record.save(out)
    assert json.loads((out / TRAINING_RECORD).read_text()) == raw


def test_a_record_is_found_in_the_checkpoint_or_its_parent(tmp_path):
    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    assert TrainingRecord.find(checkpoint) is None
    TrainingRecord(layers=[3], modules="attn").save(tmp_path)
    assert TrainingRecord.find(checkpoint) == tmp_path / TRAINING_RECORD
    TrainingRecord(layers=[4], modules="attn").save(checkpoint)
    assert TrainingRecord.load(TrainingRecord.find(checkpoint)).layers == [4]


@pytest.mark.parametrize("change, field", [
    ({"layers": []}, "'layers'"), ({"layers": [True]}, "'layers'"), ({"layers": "1-2"}, "'layers'"),
    ({"modules": "ffn"}, "'modules'"), ({"base_fingerprint": {"tensors": []}}, "'base_fingerprint'"),
    ({"history": {"layers": [1]}}, "'history'"),
])
def test_a_damaged_record_is_one_error_naming_the_file_and_field(tmp_path, change, field):
    path = tmp_path / TRAINING_RECORD
    path.write_text(json.dumps({**LLAVA_RECORD, **change}))
    with pytest.raises(PlastError, match=field) as err:
        TrainingRecord.load(path)
    assert str(path) in str(err.value)


def test_the_fingerprint_hashes_each_tensor_under_its_file_name():
    model = torch.nn.Linear(3, 2)
    fingerprint = base_fingerprint(model, ["weight"], {"weight": "lm.weight"})
    assert fingerprint["tensors"] == {"lm.weight": {"dtype": "float32", "sha256": tensor_sha256(model.weight)}}


def test_an_optimizer_over_other_parameters_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    check_optimizer(model, torch.optim.SGD(model[1].parameters(), lr=0.1), ["1.weight", "1.bias"])
    with pytest.raises(PlastError, match=r"2 extra, e.g. \['0.bias', '0.weight'\]; 0 missing"):
        check_optimizer(model, torch.optim.SGD(model.parameters(), lr=0.1), ["1.weight", "1.bias"])
