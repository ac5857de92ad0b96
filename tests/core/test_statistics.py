"""Statistics on hand-made counts whose answers are known."""

import pytest
import torch

from plast_plugin.errors import PlastError
from plast_plugin.core.options import SelectionOptions
from plast_plugin.core.statistics import compute_statistics

GROUPS = ["zh", "en#a", "en#b"]


def _counts():
    # 2 layers, 4 neurons, 10 tokens per group. Layer 0: zh uses other neurons than en.
    # Layer 1: all groups identical.
    counts = torch.tensor([
        [[0, 0, 9, 8], [9, 1, 5, 0]],   # zh
        [[9, 8, 0, 0], [9, 1, 5, 0]],   # en half a
        [[9, 7, 1, 0], [9, 1, 5, 0]],   # en half b
    ])
    return counts, torch.tensor([10, 10, 10])


def test_overlap_msd_and_noise_floor():
    counts, tokens = _counts()
    options = SelectionOptions(activated_set="rate:0.5", statistic="rate")
    stats = compute_statistics(counts, tokens, GROUPS, "en", options)
    # Layer 0: en activates {0, 1}, zh {2, 3}: no overlap; halves agree on {0, 1}.
    assert stats.overlap["zh"].tolist() == [0.0, 1.0]
    assert stats.noise_overlap.tolist() == [1.0, 1.0]
    # MSD on rates: layer 0 = mean((0-.9)^2, (0-.75)^2, (.9-.05)^2, (.8-0)^2); layer 1 = 0.
    expected = ((0.9) ** 2 + 0.75 ** 2 + 0.85 ** 2 + 0.8 ** 2) / 4
    assert stats.msd[0].item() == pytest.approx(expected)
    assert stats.msd[1].item() == 0.0
    assert stats.activated_count["en"].tolist() == [2, 1]  # 0.5 is not above 0.5


def test_statistic_variants():
    counts, tokens = _counts()
    overlap = compute_statistics(counts, tokens, GROUPS, "en", SelectionOptions(activated_set="rate:0.5", statistic="overlap"))
    assert overlap.msd.tolist() == [1.0, 0.0]
    count = compute_statistics(counts, tokens, GROUPS, "en", SelectionOptions(activated_set="rate:0.5", statistic="count"))
    assert count.msd.tolist() == [0.0, 0.0]  # both activate 2 of 4 neurons in layer 0
    jaccard = compute_statistics(counts, tokens, GROUPS, "en",
                                 SelectionOptions(activated_set="rate:0.5", overlap_denominator="jaccard"))
    assert jaccard.overlap["zh"].tolist() == [0.0, 1.0]
    top = compute_statistics(counts, tokens, GROUPS, "en", SelectionOptions(activated_set="top:0.25"))
    assert top.thresholds.shape == (2,)


def test_a_group_without_tokens_is_an_error():
    counts, tokens = _counts()
    tokens[0] = 0
    with pytest.raises(PlastError, match="no counted tokens"):
        compute_statistics(counts, tokens, GROUPS, "en", SelectionOptions())


@pytest.mark.parametrize("field, value", [("statistic", "mean"), ("activated_set", "top:2"), ("positions", "text"),
                                          ("modules", "ffn"), ("activated_set", "quantile")])
def test_bad_options_are_refused(field, value):
    with pytest.raises(PlastError, match=field):
        SelectionOptions(**{field: value}).validate()
