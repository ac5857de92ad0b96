"""One owner per fact, typed values validated once.

- an invalid SelectionOptions cannot exist (constructor, from_dict, replace, assignment);
- the rule is parsed once into a value, and select_layers' default agrees with the options';
- per-layer statistics are typed records whose on-disk form is the selection file's;
- `plast select` records the shape and trainable parameters of the model it probed;
- layer paths and module parts have one owner: freezing (a model) and export (tensor names)
  pick the same parameters;
- the weights reader reads only the tensors needed.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest
import torch

from plast_plugin.core.freeze import plast_parameter_names, trainable_fraction
from plast_plugin.core.model_layout import MODULE_CHOICES, find_decoder_layers
from plast_plugin.core.options import SelectionOptions
from plast_plugin.core.rule import SelectionRule
from plast_plugin.core.selection import select_layers
from plast_plugin.core.selection_file import SelectionFile
from plast_plugin.core.statistics import LayerRecord
from plast_plugin.errors import PlastError


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("values, message", [
    ({"statistic": "mean"}, "statistic='mean'"),
    ({"modules": "ffn"}, "modules='ffn'"),
    ({"conv_template": "chatml"}, "conv_template='chatml'"),
    ({"contiguous_shallow": "yes"}, "contiguous_shallow"),
    ({"seed": "1"}, "seed"),
    ({"activated_set": "top:2"}, "activated_set"),
    ({"rule": "msd-bottom:3"}, "unknown selection rule"),
    ({"rule": "msd-top:1.5"}, "whole number"),
    ({"positions": "image", "images": "off"}, "positions='image'"),
])
def test_an_invalid_options_object_cannot_be_built(values, message):
    with pytest.raises(PlastError, match=message):
        SelectionOptions(**values)
    with pytest.raises(PlastError, match=message):  # from_dict validates too
        SelectionOptions.from_dict(values)
    with pytest.raises(PlastError, match=message):
        dataclasses.replace(SelectionOptions(), **values)


def test_options_cannot_be_changed_into_invalid_ones():
    options = SelectionOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.statistic = "mean"
    assert SelectionOptions.from_dict(options.to_dict()) == options  # the recorded dict round-trips


def test_the_rule_is_parsed_once_into_a_value(monkeypatch):
    options = SelectionOptions(rule="msd-top:3")
    assert options.selection_rule == SelectionRule("msd-top:3", "msd-top", 3.0)
    assert options.to_dict()["rule"] == "msd-top:3"  # the file records the spelling
    assert SelectionOptions(rule="0-2").selection_rule.is_spec
    assert SelectionOptions().selection_rule.kind == "msd-above-mean"

    parsed_strings = []
    original = SelectionRule.parse.__func__

    def counting(cls, text):
        if not isinstance(text, SelectionRule):
            parsed_strings.append(text)
        return original(cls, text)

    monkeypatch.setattr(SelectionRule, "parse", classmethod(counting))
    msd = torch.tensor([5.0, 4.0, 1.0, 1.0, 3.5, 1.0])
    assert select_layers(msd, options.selection_rule, 6) == [0, 1]
    assert parsed_strings == []  # the value is used as it is, never re-parsed from text


def test_rule_range_needs_the_model():
    rule = SelectionRule.parse("msd-top:5")  # valid in shape
    with pytest.raises(PlastError, match="between 1 and 4"):
        rule.check(4)
    with pytest.raises(PlastError, match="names layer 9"):
        SelectionRule.parse("0-9").check(4)


def test_select_layers_default_is_the_options_default():
    default = inspect.signature(select_layers).parameters["contiguous_shallow"].default
    assert default is SelectionOptions().contiguous_shallow
    msd = torch.tensor([5.0, 4.0, 1.0, 1.0, 3.5, 1.0])
    assert select_layers(msd, "auto", 6) == [0, 1]  # the shallow block, as `plast select` chooses


# ----------------------------------------------------------------------------- per-layer records
OLD_RECORD = {  # a record as plast-plugin 0.x wrote it, before activation_threshold existed
    "layer": 1, "msd": None, "noise_msd": 0.01, "noise_overlap": 0.9,
    "overlap": {"zh": None, "pt": 0.5}, "activated_neurons": {"zh": 0, "pt": 3, "en": 4},
    "mean_activation_rate": {"zh": 0.0, "pt": 0.1, "en": 0.2},
    "empty_activated_sets": ["zh"], "msd_defined": False, "future_key": [1, 2],
}


def test_layer_records_are_typed_and_keep_the_file_format(tmp_path):
    record = LayerRecord.from_dict(OLD_RECORD)
    assert record.layer == 1 and math.isnan(record.msd) and math.isnan(record.overlap["zh"])
    assert record.overlap["pt"] == 0.5 and record.activation_threshold is None
    written = record.to_dict()
    assert list(written) == list(OLD_RECORD)  # same keys, same order, none invented
    selection = SelectionFile(selected_layers=[0], model=_identity(), rule="0", layers=[OLD_RECORD])
    path = selection.save(tmp_path / "plast_layers.json")
    assert json.loads(path.read_text())["layers"] == [OLD_RECORD]  # NaN is null again
    again = SelectionFile.load(path)
    assert isinstance(again.layers[0], LayerRecord) and again.layers[0].overlap["pt"] == 0.5


def test_a_record_without_a_layer_index_names_the_field(tmp_path):
    selection = SelectionFile(selected_layers=[0], model=_identity(), rule="0", layers=[OLD_RECORD])
    raw = json.loads(selection.save(tmp_path / "plast_layers.json").read_text())
    raw["layers"][0]["layer"] = "one"
    (tmp_path / "plast_layers.json").write_text(json.dumps(raw))
    with pytest.raises(PlastError, match=r"field 'layers\[0\]'.*'layer' must be a layer index"):
        SelectionFile.load(tmp_path / "plast_layers.json")


def _identity():
    from plast_plugin.core.selection_file import ModelIdentity

    return ModelIdentity("LlamaForCausalLM", 4, 128, 64, "tiny")


# ----------------------------------------------------------------------------- the probed model, recorded
def test_plast_select_records_the_model_it_probed(tiny_llama, questions_jsonl):
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.pipeline import run_selection

    model, tokenizer = tiny_llama
    questions = load_parallel_questions(questions_jsonl, ["zh", "ru"], "en")
    selection = run_selection(model, tokenizer, questions, SelectionOptions(rule="msd-top:1", batch_size=4),
                              progress=False)
    assert len(selection.selected_layers) == 1 and selection.trainable["trainable_params"] > 0
    layout = find_decoder_layers(model)
    assert selection.model.shape() == (layout.num_layers, layout.ffn_width, layout.hidden_size)
    assert selection.trainable == trainable_fraction(model, selection.selected_layers).to_dict()
    assert [record.layer for record in selection.layers] == list(range(layout.num_layers))


# ----------------------------------------------------------------------------- one owner of layer names
@pytest.mark.parametrize("modules", MODULE_CHOICES)
def test_freeze_and_export_pick_the_same_parameters(tiny_llama, modules):
    from plast_plugin.checkpoints.export import delta_tensor_names

    model = tiny_llama[0]
    names = [name for name, _ in model.named_parameters()]
    assert set(delta_tensor_names(names, [1, 2], modules)) == plast_parameter_names(model, [1, 2], modules)
    layout = find_decoder_layers(model)
    assert all(layout.layer_of(n) in (1, 2) for n in plast_parameter_names(model, [1, 2], modules))


# ----------------------------------------------------------------------------- lazy weights
def _sharded_checkpoint(folder, generator):
    from safetensors.torch import save_file

    shards = {
        "model-00001-of-00002.safetensors": {"model.embed_tokens.weight": torch.randn(8, 4, generator=generator),
                                             **{f"model.layers.0.{n}": torch.randn(4, 4, generator=generator)
                                                for n in ("mlp.up_proj.weight", "self_attn.q_proj.weight")}},
        "model-00002-of-00002.safetensors": {f"model.layers.{i}.{n}": torch.randn(4, 4, generator=generator)
                                             for i in (1, 2) for n in ("mlp.up_proj.weight", "self_attn.q_proj.weight")},
    }
    folder.mkdir()
    for file, tensors in shards.items():
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
    weight_map = {name: file for file, tensors in shards.items() for name in tensors}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 3}))
    return {name: t for tensors in shards.values() for name, t in tensors.items()}


class _TensorReads:
    """Wraps safetensors.safe_open to record every tensor whose data is read."""

    def __init__(self, monkeypatch):
        import safetensors

        self.read: list[str] = []
        real = safetensors.safe_open
        reads = self.read

        class Recording:
            def __init__(self, *args, **kwargs):
                self._inner = real(*args, **kwargs)

            def __enter__(self):
                self._inner.__enter__()
                return self

            def __exit__(self, *exc):
                return self._inner.__exit__(*exc)

            def keys(self):
                return self._inner.keys()

            def metadata(self):
                return self._inner.metadata()

            def get_tensor(self, name):
                reads.append(name)
                return self._inner.get_tensor(name)

        monkeypatch.setattr(safetensors, "safe_open", Recording)


def test_export_reads_only_the_delta_tensors(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from plast_plugin.checkpoints.export import DELTA_WEIGHTS, export_delta, merge_delta

    tensors = _sharded_checkpoint(tmp_path / "run", torch.Generator().manual_seed(0))
    reads = _TensorReads(monkeypatch)
    out = export_delta(tmp_path / "run", tmp_path / "delta", layers="1-2", modules="mlp")
    wanted = ["model.layers.1.mlp.up_proj.weight", "model.layers.2.mlp.up_proj.weight"]
    assert sorted(reads.read) == wanted  # not all 7 tensors of both shards
    delta = load_file(str(out / DELTA_WEIGHTS))
    assert sorted(delta) == wanted and all(torch.equal(delta[n], tensors[n]) for n in wanted)

    # The merge rewrites the shard holding delta tensors and copies the other one unread.
    base = tmp_path / "base"
    base_tensors = _sharded_checkpoint(base, torch.Generator().manual_seed(1))
    reads.read.clear()
    merged = merge_delta(base, tmp_path / "delta", tmp_path / "merged")
    assert not any(n.startswith(("model.embed_tokens", "model.layers.0.")) for n in reads.read)
    assert (merged / "model-00001-of-00002.safetensors").read_bytes() == \
        (base / "model-00001-of-00002.safetensors").read_bytes()
    from plast_plugin.checkpoints.weights import CheckpointWeights

    with CheckpointWeights(merged) as weights:
        result = weights.read_all()
    assert set(result) == set(base_tensors)
    assert all(torch.equal(result[n], tensors[n] if n in wanted else base_tensors[n]) for n in result)


def test_reader_reads_only_what_is_asked(tmp_path, monkeypatch):
    from plast_plugin.checkpoints.weights import CheckpointWeights

    tensors = _sharded_checkpoint(tmp_path / "ckpt", torch.Generator().manual_seed(0))
    reads = _TensorReads(monkeypatch)
    with CheckpointWeights(tmp_path / "ckpt") as weights:
        assert sorted(weights.names()) == sorted(tensors)  # headers only
        assert reads.read == []
        got = weights.read_where(lambda n: n.startswith("model.layers.2."))
    assert sorted(reads.read) == sorted(got) == sorted(n for n in tensors if n.startswith("model.layers.2."))
    with pytest.raises(PlastError, match="no tensor"):
        with CheckpointWeights(tmp_path / "ckpt") as weights:
            weights.read(["model.layers.9.mlp.up_proj.weight"])
