"""What `plast select` refuses or marks instead of a silent wrong result or a traceback: empty
activated sets, hand-edited selection files, rule parameters, bad JSONL lines, over-long questions
and the permissions of what it writes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from core_testutil import question_rows, write_jsonl
from plast_plugin.cli import main
from plast_plugin.errors import PlastError
from plast_plugin.core.options import SelectionOptions
from plast_plugin.core.selection import select_by_statistic, select_layers
from plast_plugin.core.selection_file import SelectionFile
from plast_plugin.core.statistics import compute_statistics


def _select(model_dir, data, out, *extra):
    return main(["select", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--quiet",
                 "--device", "cpu", "--dtype", "fp32", *extra])


# ----------------------------------------------------------------------------- empty activated sets
def _counts_with_an_empty_set():
    """3 layers x 4 neurons, groups zh, en#a, en#b, 10 tokens each; activated = rate > 0.5.
    Layer 0: zh == en (MSD 0). Layer 1: zh activates nothing (empty set). Layer 2: zh shares
    half of en's set (overlap 0.5, MSD 0.25)."""
    zh = [[8, 8, 0, 0], [0, 0, 0, 0], [8, 0, 0, 0]]
    en = [[8, 8, 0, 0], [8, 0, 8, 0], [8, 8, 0, 0]]
    return torch.tensor([zh, en, en]), torch.tensor([10, 10, 10]), ["zh", "en#a", "en#b"]


def test_empty_activated_set_is_undefined_not_maximal():
    counts, tokens, groups = _counts_with_an_empty_set()
    stats = compute_statistics(counts, tokens, groups, "en", SelectionOptions(activated_set="rate:0.5"))
    # A 0/0 overlap read as 0 would give layer 1 MSD 1.0, the maximum, and auto would choose it.
    assert math.isnan(float(stats.overlap["zh"][1])) and math.isnan(float(stats.msd[1]))
    assert stats.undefined == {1: ["zh"]}
    assert select_layers(stats.msd, "auto", 3) == [2]
    assert select_by_statistic(stats.msd, "msd-top:2") == [0, 2]
    record = stats.per_layer_records()[1]
    assert record.empty_activated_sets == ["zh"] and record.msd_defined is False


def test_select_warns_and_marks_undefined_layers_in_the_file(tiny_llama_dir, questions_jsonl, tmp_path):
    # With rate:0.99 the tiny model's layer 0 activates nothing for any group and layer 1 nothing
    # for several languages (which ones depends on the probe prompt): those 0/0 overlaps must not
    # read as 0 (maximal MSD) and be chosen.
    with pytest.warns(UserWarning, match=r"undefined in layer\(s\) \[0, 1\]: the rule excluded") as caught:
        assert _select(tiny_llama_dir, questions_jsonl, tmp_path / "out", "--activated-set", "rate:0.99") == 0
    text = (tmp_path / "out" / "plast_layers.json").read_text()
    assert "NaN" not in text  # valid JSON: undefined is null
    saved = json.loads(text)
    assert saved["data"]["undefined_msd_layers"] == [0, 1]
    empty = saved["data"]["empty_activated_sets"]["1"]
    assert empty and f"layer 1 for {', '.join(empty)}." in str(caught[0].message)  # the warning names them
    assert saved["layers"][1]["msd"] is None and saved["layers"][1]["msd_defined"] is False
    overlap = saved["layers"][1]["overlap"]
    assert all((value is None) == (lang in empty) for lang, value in overlap.items())
    assert any(value is not None for value in overlap.values())  # a defined overlap stays a number
    assert saved["selected_layers"] == [2]
    SelectionFile.load(tmp_path / "out")  # and it loads again


def test_ties_at_the_top_are_activated_not_empty():
    """top:F when more than F of the rates share the maximum (e.g. 1.0): the tied neurons are
    the top, not an empty set (which would make the whole layer undefined)."""
    rates = [[10, 10, 10, 0], [10, 10, 0, 0], [10, 10, 10, 10]]  # counts of 10 tokens
    counts = torch.tensor([rates, [[10, 10, 0, 0]] * 3, [[10, 10, 0, 0]] * 3])
    stats = compute_statistics(counts, torch.tensor([10, 10, 10]), ["zh", "en#a", "en#b"], "en",
                               SelectionOptions(activated_set="top:0.1"))
    assert stats.undefined == {} and not torch.isnan(stats.msd).any()
    assert [int(v) for v in stats.activated_count["en"]] == [2, 2, 2]


# ----------------------------------------------------------------------------- hand-edited selection files
@pytest.mark.parametrize("edit, field", [
    ({"selected_layers": "12"}, "selected_layers"),
    ({"selected_layers": [1.9]}, "selected_layers"),
    ({"selected_layers": [True]}, "selected_layers"),
    ({"selected_layers": [1, 1]}, "selected_layers"),
    ({"selected_layers": []}, "selected_layers"),
    ({"model": {"architecture": "X", "num_layers": "4", "ffn_width": 128, "hidden_size": 64}}, "model.num_layers"),
    ({"model": {"architecture": "X", "num_layers": 4, "ffn_width": 128, "hidden_size": 64, "extra": 1}}, "model"),
    ({"rule": None}, "rule"),
    ({"options": {"modules": "everything"}}, "options.modules"),
    ({"options": []}, "options"),
])
def test_hand_edited_selection_file_is_refused(tmp_path, edit, field):
    good = {"schema": "plast-layers/1", "selected_layers": [1],
            "model": {"architecture": "X", "num_layers": 4, "ffn_width": 128, "hidden_size": 64}, "rule": "1"}
    path = tmp_path / "plast_layers.json"
    path.write_text(json.dumps({**good, **edit}))
    with pytest.raises(PlastError, match=f"field '{field}'") as err:
        SelectionFile.load(path)
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- rule parameters
@pytest.mark.parametrize("rule, message", [
    ("msd-top:2.5", "whole number"), ("msd-top:0", "whole number"), ("msd-above-max:1.5", "0 < F <= 1"),
    ("msd-above-max:0", "0 < F <= 1"),
])
def test_rule_parameters_refused_before_probing(tmp_path, questions_jsonl, capsys, rule, message):
    with pytest.raises(PlastError, match=message):
        SelectionOptions(rule=rule).validate()
    # The options are checked first: the missing model is never reached, so nothing is probed in vain.
    assert _select(tmp_path / "no-such-model", questions_jsonl, tmp_path / "out", "--rule", rule) == 1
    err = capsys.readouterr().err
    assert message in err and "no-such-model" not in err


def test_msd_top_is_never_truncated():
    with pytest.raises(PlastError, match="whole number"):
        select_by_statistic(torch.tensor([0.1, 0.3, 0.2]), "msd-top:2.5")
    with pytest.raises(PlastError, match="between 1 and 3"):
        select_layers(torch.tensor([0.1, 0.3, 0.2]), "msd-top:4", 3)


# ----------------------------------------------------------------------------- bad JSONL lines
@pytest.mark.parametrize("line, message", [
    ('{"id": "1", "lang": "zh", "question": null}', "field 'question' must be a string, got null"),
    ('{"id": "1", "lang": "zh", "question": 5}', "field 'question' must be a string"),
    ('{"id": null, "lang": "zh", "question": "q"}', "field 'id' must be a string"),
    ('{"id": "1", "lang": ["zh"], "question": "q"}', "field 'lang' must be a string"),
    ("5", "a JSON int, not an object"),
    ("null", "a JSON NoneType, not an object"),
    ('["1", "zh", "q"]', "a JSON list, not an object"),
    ('{"id": "1", "lang": "zh", "question": "bad \\ud800 text"}', "lone surrogate"),
])
def test_bad_jsonl_lines_name_file_and_line(tmp_path, capsys, line, message):
    rows = question_rows(("en", "zh"), ids={"1", "2"})
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + line + "\n", encoding="utf-8")
    assert main(["build-data", "--data", str(path), "--out", str(tmp_path / "d.json"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{path}:5:" in err and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d.json").exists()


def test_latin1_jsonl_names_the_line(tmp_path, capsys):
    path = tmp_path / "q.jsonl"
    path.write_bytes(json.dumps({"id": "1", "lang": "en", "question": "x"}).encode() + b"\n"
                     + '{"id": "1", "lang": "pt", "question": "ma\xe7\xe3"}\n'.encode("latin-1"))
    assert main(["build-data", "--data", str(path), "--out", str(tmp_path / "d.json"), "--quiet"]) == 1
    assert f"{path}:2: not UTF-8 text" in capsys.readouterr().err


# ----------------------------------------------------------------------------- question length
def test_questions_are_clipped_to_the_model_positions(tiny_llama_dir, tmp_path, capsys):
    from plast_plugin.testing.tiny_models import make_tiny_llama

    model = make_tiny_llama(tmp_path / "short", tokenizer_dir=tiny_llama_dir, max_position_embeddings=160)
    rows = question_rows(("en", "zh"))
    for row in rows:
        row["question"] = (row["question"] + " ") * 60  # hundreds of tokens
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    with pytest.warns(UserWarning, match=r"10 question\(s\) do not fit the model's 160 positions"):
        assert _select(model, data, tmp_path / "out", "--max-question-tokens", "5000", "--no-plot") == 0
    from transformers import AutoTokenizer

    from plast_plugin.models.probe_inputs import encode_prompt

    around = len(encode_prompt(AutoTokenizer.from_pretrained(model), "", prompt="llava", max_question_tokens=0,
                               image_ids=None, group=0))
    saved = json.loads((tmp_path / "out" / "plast_layers.json").read_text())
    # Every question was clipped to what fits beside the LLaVA prompt (BOS, system text, suffix).
    assert saved["data"]["tokens_counted"]["zh"] == 5 * (160 - around)


# ----------------------------------------------------------------------------- select tracebacks
def test_select_out_is_a_file_refused_before_the_probe(tiny_llama_dir, questions_jsonl, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine")
    assert _select(tmp_path / "no-such-model", questions_jsonl, out) == 1  # before even loading
    assert "--out" in capsys.readouterr().err and out.read_text() == "mine"


def test_select_missing_model_is_one_line(questions_jsonl, tmp_path, capsys):
    assert _select(tmp_path / "nonexistent", questions_jsonl, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nonexistent does not exist" in err


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl"])
def test_select_on_a_vision_language_family_this_transformers_lacks_names_the_env(model_type, questions_jsonl,
                                                                                  tmp_path, capsys):
    """Qwen-VL, LLaVA-OneVision and InternVL are probed in the evaluation environment (transformers 5)."""
    import transformers

    from plast_plugin.models.model_source import HF_MODEL_CLASSES, HF_VLM_FAMILY_MODEL_TYPES

    model_class = HF_MODEL_CLASSES[HF_VLM_FAMILY_MODEL_TYPES[model_type]]
    if hasattr(transformers, model_class):
        pytest.skip(f"transformers {transformers.__version__} has {model_class}")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": [model_class]}))
    assert _select(model, questions_jsonl, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert model_class in err and "evaluation environment" in err


def test_files_are_written_with_the_users_umask(tiny_llama_dir, questions_jsonl, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert _select(tiny_llama_dir, questions_jsonl, tmp_path / "out") == 0
    finally:
        os.umask(old)
    for name in ("plast_layers.json", "plast_layers.png"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644, name  # readable by others, like any file the user writes
