"""PLAST: Precise LAnguage-Specific layer Tuning for LLaVA-style models.

The public API, in the order of the workflow (docs/dev/core_api.md). Names load on first use, so
``import plast_plugin`` stays free of torch: the LLaVA hook and the ``plast`` parser import it.
"""
from __future__ import annotations

import importlib

from plast_plugin.errors import PlastError

__version__ = "0.2.0"

_LAZY = {
    # select: load a model and parallel questions, probe, compute statistics, choose layers
    "load_for_probe": "plast_plugin.models.loading",
    "load_parallel_questions": "plast_plugin.data.parallel_data",
    "SelectionOptions": "plast_plugin.core.options",
    "probe_questions": "plast_plugin.pipeline",
    "compute_statistics": "plast_plugin.core.statistics",
    "select_layers": "plast_plugin.core.selection",
    "run_selection": "plast_plugin.pipeline",
    "write_selection": "plast_plugin.pipeline",
    # the selection file and layer specs
    "SelectionFile": "plast_plugin.core.selection_file",
    "load_selected_layers": "plast_plugin.core.selection_file",
    "parse_layer_spec": "plast_plugin.core.layer_spec",
    # train: freeze to the selection (any loop), or the Hugging Face Trainer callback
    "freeze_for_plast": "plast_plugin.core.freeze",
    "apply_selection": "plast_plugin.trainers.hf",
    "PlastCallback": "plast_plugin.trainers.hf",
    # ship: the trained layers as a delta, merged into a base
    "export_delta": "plast_plugin.checkpoints.export",
    "merge_delta": "plast_plugin.checkpoints.export",
}

__all__ = ["PlastError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'plast_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
