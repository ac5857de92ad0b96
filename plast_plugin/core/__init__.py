"""The PLAST method, in plain torch: it knows no model family, trainer or benchmark.

- ``model_layout``: where a model's decoder layers are and what each holds (the one owner of layer
  paths and module parts)
- ``probe``: FFN-activation hooks on those layers
- ``statistics``: per-layer language-specificity from the probe's counts
- ``rule``: the selection rule as a value, parsed once
- ``selection`` and ``layer_spec``: applying the rule to pick layers, and the layer specs users write
- ``options``: every method option, typed and validated when built
- ``freeze``: train only the chosen layers; count what trains
- ``selection_file``: the JSON a selection is saved as, checked against the model it is used on

Model families feed the probe from ``plast_plugin.models``; see docs/dev/core_api.md.
"""
