"""Per-layer statistics of language-specific FFN activation (plain torch).

Input: integer activation counts per group, layer and neuron, and the number of counted tokens
per group. Groups are the languages plus the two halves of the pivot data (`<pivot>#a`,
`<pivot>#b`), whose comparison gives the noise floor: how much two samples of the *same*
language differ, which a language-specific difference has to exceed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from plast_plugin.errors import PlastError
from plast_plugin.core.options import SelectionOptions

def pivot_halves(pivot: str) -> tuple[str, str]:
    return pivot + "#a", pivot + "#b"


@dataclass
class LayerRecord:
    """One layer's statistics as the selection file's "layers" list holds them (docs/selection-file.md),
    read by the plot and `plast select`'s table. Undefined values are NaN here, null on disk.
    The optional fields are None when a file does not have them (files of older versions)."""

    layer: int
    msd: float = math.nan
    noise_msd: float = math.nan
    noise_overlap: float = math.nan
    activation_threshold: float | None = None
    overlap: dict[str, float] = field(default_factory=dict)  # language -> overlap with the pivot
    activated_neurons: dict[str, int] = field(default_factory=dict)  # group -> |A|
    mean_activation_rate: dict[str, float] = field(default_factory=dict)  # group -> mean rate
    empty_activated_sets: list[str] | None = None  # set only in layers where some set is empty
    msd_defined: bool | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as written

    _ORDER = ("layer", "msd", "noise_msd", "noise_overlap", "activation_threshold", "overlap",
              "activated_neurons", "mean_activation_rate", "empty_activated_sets", "msd_defined")

    def to_dict(self) -> dict:
        """The on-disk object: the same keys, in the same order, as every earlier version wrote."""
        out = {key: getattr(self, key) for key in self._ORDER if getattr(self, key) is not None}
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, raw: dict) -> "LayerRecord":
        """A record of a selection file; null (undefined) numbers become NaN. Raises ValueError
        (the caller names the file and field) when "layer" is not a layer index."""
        layer = raw.get("layer")
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
            raise ValueError(f"'layer' must be a layer index, got {layer!r}")

        def number(value):
            return math.nan if value is None else float(value)

        known = {key: raw[key] for key in cls._ORDER if key in raw}
        try:
            for key in ("msd", "noise_msd", "noise_overlap"):
                if key in known:
                    known[key] = number(known[key])
            if known.get("activation_threshold") is not None:
                known["activation_threshold"] = float(known["activation_threshold"])
            for key in ("overlap", "mean_activation_rate"):
                if key in known:
                    known[key] = {str(k): number(v) for k, v in dict(known[key]).items()}
            if "activated_neurons" in known:
                known["activated_neurons"] = {str(k): v for k, v in dict(known["activated_neurons"]).items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"layer {layer}: a statistic is not a number ({err})") from None
        return cls(**known, extra={k: v for k, v in raw.items() if k not in cls._ORDER})


@dataclass
class LayerStatistics:
    languages: list[str]  # non-pivot languages, in order
    pivot: str
    activation_rate: dict[str, torch.Tensor]  # group -> [layers] mean rate over neurons
    activated_count: dict[str, torch.Tensor]  # group -> [layers] |A|
    overlap: dict[str, torch.Tensor]  # language -> [layers] overlap with pivot
    msd: torch.Tensor  # [layers]
    noise_overlap: torch.Tensor  # [layers] pivot half a vs half b
    noise_msd: torch.Tensor  # [layers]
    thresholds: torch.Tensor  # [layers] activation-rate threshold of the activated sets
    # layer -> groups whose activated set is empty there: overlaps with them are undefined (NaN)
    undefined: dict[int, list[str]] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return int(self.msd.shape[0])

    def per_layer_records(self) -> list[LayerRecord]:
        records = []
        for layer in range(self.num_layers):
            msd = float(self.msd[layer])
            undefined = layer in self.undefined
            records.append(LayerRecord(
                layer=layer,
                msd=msd,
                noise_msd=float(self.noise_msd[layer]),
                noise_overlap=float(self.noise_overlap[layer]),
                activation_threshold=float(self.thresholds[layer]),
                overlap={lang: float(self.overlap[lang][layer]) for lang in self.languages},
                activated_neurons={g: int(v[layer]) for g, v in self.activated_count.items()},
                mean_activation_rate={g: float(v[layer]) for g, v in self.activation_rate.items()},
                empty_activated_sets=list(self.undefined[layer]) if undefined else None,
                msd_defined=not math.isnan(msd) if undefined else None,
            ))
        return records


def _thresholds(rates: torch.Tensor, activated_set: str) -> torch.Tensor:
    kind, _, value = activated_set.partition(":")
    fraction = float(value)
    num_layers = rates.shape[1]
    if kind == "rate":
        return torch.full((num_layers,), fraction, dtype=torch.float64)
    # One threshold per layer for all languages: the (1 - F) quantile of the pooled rates.
    pooled = rates.permute(1, 0, 2).reshape(num_layers, -1)
    return torch.quantile(pooled, 1.0 - fraction, dim=1)


def _overlap(a: torch.Tensor, b: torch.Tensor, denominator: str) -> torch.Tensor:
    """Overlap of activated sets a (language) and b (pivot): bool [layers, neurons] -> [layers]."""
    inter = (a & b).sum(-1).double()
    base = (b if denominator == "pivot" else a if denominator == "language" else a | b).sum(-1).double()
    # An empty activated set on either side leaves nothing to compare: the overlap is undefined
    # (NaN), not 0, which would read as "completely different" and top the MSD ranking.
    empty = (a.sum(-1) == 0) | (b.sum(-1) == 0)
    return torch.where(empty, torch.full_like(inter, float("nan")), inter / base.clamp(min=1))


def _msd(x: dict[str, torch.Tensor], languages: list[str], reference: str, pivot_key: str) -> torch.Tensor:
    """x: group -> [layers, ...] statistic. Mean over languages (and trailing dims) of squared deviation."""
    if reference == "pivot":
        dev = torch.stack([(x[lang] - x[pivot_key]) ** 2 for lang in languages])
    else:
        stacked = torch.stack([x[g] for g in [*languages, pivot_key]])
        dev = (stacked - stacked.mean(0, keepdim=True)) ** 2
    return dev.reshape(dev.shape[0], dev.shape[1], -1).mean(dim=(0, 2))


def compute_statistics(
    counts: torch.Tensor,
    tokens: torch.Tensor,
    groups: list[str],
    pivot: str,
    options: SelectionOptions,
) -> LayerStatistics:
    """Statistics from probe counts. `groups` names the first axis of `counts`/`tokens`; it must
    hold every language once and the pivot as its two halves."""
    half_a, half_b = pivot_halves(pivot)
    index = {g: i for i, g in enumerate(groups)}
    if half_a not in index or half_b not in index:
        raise ValueError(f"counts lack the two halves of the pivot {pivot!r} ({half_a}, {half_b})")
    languages = [g for g in groups if g not in (half_a, half_b)]
    if (tokens <= 0).any():
        raise PlastError("a group has no counted tokens: every language needs at least one question token")
    rates_all = counts.double() / tokens.double().view(-1, 1, 1)  # [groups, layers, neurons], in [0, 1]
    # The full pivot = both halves together.
    pivot_counts = counts[index[half_a]] + counts[index[half_b]]
    pivot_tokens = tokens[index[half_a]] + tokens[index[half_b]]
    rate = {g: rates_all[index[g]] for g in groups}
    rate[pivot] = pivot_counts.double() / float(pivot_tokens)

    pooled = torch.stack([rate[g] for g in [*languages, pivot]])
    thresholds = _thresholds(pooled, options.activated_set)
    active = {g: r > thresholds.view(-1, 1) for g, r in rate.items()}
    if options.activated_set.startswith("top:"):
        # Ties at the top: when more than F of the pooled rates share the layer's maximum, the
        # quantile equals that maximum and "rate > threshold" would leave every set empty
        # (small probes, neurons active on every token). The top F then holds those tied
        # neurons. A layer that never activates (maximum 0) stays empty.
        tied_top = (thresholds >= pooled.amax(dim=(0, 2))) & (thresholds > 0)
        if bool(tied_top.any()):
            active = {g: a | (tied_top.view(-1, 1) & (rate[g] >= thresholds.view(-1, 1))) for g, a in active.items()}

    overlap = {lang: _overlap(active[lang], active[pivot], options.overlap_denominator) for lang in languages}
    noise_overlap = _overlap(active[half_a], active[half_b], options.overlap_denominator)

    ffn_width = counts.shape[-1]
    if options.statistic == "rate":
        stat = rate
    elif options.statistic == "count":
        stat = {g: a.sum(-1).double() / ffn_width for g, a in active.items()}
    else:
        stat = {lang: 1.0 - overlap[lang] for lang in languages}
        stat[pivot] = torch.zeros_like(noise_overlap)
        stat[half_a] = 1.0 - noise_overlap
        stat[half_b] = torch.zeros_like(noise_overlap)
    msd = _msd(stat, languages, options.msd_reference, pivot)
    noise_msd = _msd(stat, [half_a], "pivot", half_b)

    undefined: dict[int, list[str]] = {}
    for g in [*languages, pivot, half_a, half_b]:
        for layer in torch.nonzero(active[g].sum(-1) == 0).view(-1).tolist():
            undefined.setdefault(layer, []).append(g)

    return LayerStatistics(
        languages=languages,
        pivot=pivot,
        activation_rate={g: rate[g].mean(-1) for g in [*languages, pivot, half_a, half_b]},
        activated_count={g: active[g].sum(-1) for g in [*languages, pivot]},
        overlap=overlap,
        msd=msd,
        noise_overlap=noise_overlap,
        noise_msd=noise_msd,
        thresholds=thresholds,
        undefined=dict(sorted(undefined.items())),
    )
