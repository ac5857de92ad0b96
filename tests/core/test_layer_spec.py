import pytest

from plast_plugin.core.layer_spec import format_layer_spec, is_layer_spec, parse_layer_spec
from plast_plugin.core.selection import check_rule, keep_contiguous_shallow_block, select_layers
from plast_plugin.errors import PlastError


@pytest.mark.parametrize("spec, expected", [
    ("0-4", [0, 1, 2, 3, 4]), ("1,3,5", [1, 3, 5]), ("0-2,7", [0, 1, 2, 7]), (" 3 , 1 ", [1, 3]),
    ("2", [2]), ("first:3", [0, 1, 2]), ("last:2", [30, 31]), ("0-1,1-2", [0, 1, 2]),
])
def test_specs_parse(spec, expected):
    assert parse_layer_spec(spec, 32) == expected


def test_random_ablation_is_seeded_and_distinct():
    first = parse_layer_spec("random:5", 32, seed=7)
    assert first == parse_layer_spec("random:5", 32, seed=7)
    assert len(set(first)) == 5 and all(0 <= i < 32 for i in first)
    assert first != parse_layer_spec("random:5", 32, seed=8)


@pytest.mark.parametrize("spec, message", [
    ("0-40", "has 32 decoder layers"), ("32", "has 32 decoder layers"), ("4-2", "backwards"),
    ("a-b", "malformed"), ("1,,2", "malformed"), ("", "empty"), ("-1", "malformed"),
    ("first:0", "between 1 and 32"), ("random:33", "between 1 and 32"), ("top:3", "malformed"),
])
def test_bad_specs_are_refused_with_the_reason(spec, message):
    with pytest.raises(PlastError, match=message):
        parse_layer_spec(spec, 32)


def test_spec_shape():
    assert is_layer_spec("0-4") and is_layer_spec("last:3") and not is_layer_spec("auto")


def test_unknown_rule_is_refused():
    with pytest.raises(PlastError, match="unknown selection rule"):
        check_rule("msd-bottom:3", 8)


def test_statistic_rules():
    import torch

    msd = torch.tensor([5.0, 4.0, 1.0, 1.0, 3.5, 1.0])
    # contiguous_shallow=False: every layer the rule picks (the default is the options' True)
    assert select_layers(msd, "auto", 6, contiguous_shallow=False) == [0, 1, 4]  # mean 2.58
    assert select_layers(msd, "msd-top:2", 6) == [0, 1]
    assert select_layers(msd, "msd-above:3.9", 6) == [0, 1]
    assert select_layers(msd, "msd-above-max:0.7", 6, contiguous_shallow=False) == [0, 1, 4]
    assert select_layers(msd, "auto", 6, contiguous_shallow=True) == [0, 1]
    assert select_layers(None, "1,2", 6) == [1, 2]
    assert select_layers(None, "0,2,5", 6, contiguous_shallow=True) == [0, 2, 5]  # specs are never trimmed
    assert keep_contiguous_shallow_block([3, 4, 6]) == [3, 4]
    with pytest.raises(PlastError, match="selected no layer"):
        select_layers(msd, "msd-above:9", 6)


def test_layer_sets_are_written_in_the_manual_form_they_parse_back_from():
    assert format_layer_spec([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert parse_layer_spec(format_layer_spec([0, 1, 2, 5, 7, 8]), 10) == [0, 1, 2, 5, 7, 8]
