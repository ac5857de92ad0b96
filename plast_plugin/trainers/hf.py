"""PLAST with the Hugging Face ``Trainer`` (and trainers built on it, such as TRL's ``SFTTrainer``)::

    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate,
                      callbacks=[PlastCallback("runs/select/plast_layers.json")])

- ``apply_selection(model, selection)`` freezes every parameter but the selected decoder layers
  (for a training loop of your own); a selection made for a model of another shape is refused.
- ``PlastCallback(selection)`` does the same when the Trainer is built (before any optimizer
  exists), checks before the first step that the optimizer holds exactly the selected parameters,
  and writes ``plast_layers.json`` + ``plast_training.json`` into ``output_dir`` and every
  ``checkpoint-N``, so ``plast export`` works on these checkpoints as on the LLaVA script's.

Works for llava-hf, LLaVA-NeXT and the causal LMs ``plast select`` supports, in transformers 4 and 5,
and for transformers 5's Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and InternVL (the layout is found on
the model: the language model's decoder layers, never the vision encoder's).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Union

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from plast_plugin.checkpoints.weights import CheckpointWeights
from plast_plugin.core.freeze import TrainableReport, freeze_for_plast
from plast_plugin.core.model_layout import find_decoder_layers, layers_path_of_names
from plast_plugin.core.selection_file import SELECTION_FILENAME, SelectionFile
from plast_plugin.core.training_record import TRAINING_RECORD, check_optimizer, write_records
from plast_plugin.errors import PlastError
from plast_plugin.models.model_source import local_dir
from plast_plugin.models.zero3 import gathered_fingerprint

SelectionLike = Union[SelectionFile, str, os.PathLike]


def load_selection(selection: SelectionLike) -> SelectionFile:
    """A ``SelectionFile`` as given, or loaded from a file / a folder holding ``plast_layers.json``."""
    return selection if isinstance(selection, SelectionFile) else SelectionFile.load(selection)


def apply_selection(model, selection: SelectionLike, modules: str | None = None) -> TrainableReport:
    """Freeze everything of ``model`` but the selection's decoder layers (``modules``: what of each
    layer, 'layer' | 'mlp' | 'attn'; default: the selection file's own). Refuses a model whose
    shape (layers, FFN width, hidden size) differs from the one the file was made for; warns for
    one of another name or architecture."""
    import warnings

    from plast_plugin.models.model_source import converted_from

    selection = load_selection(selection)
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    for warning in selection.check_identity(model, also_named=converted_from(name)):
        warnings.warn(warning, stacklevel=2)
    modules = modules or selection.options.get("modules") or "layer"
    return freeze_for_plast(model, list(selection.selected_layers), modules)


def _checkpoint_tensor_names(model) -> list[str] | None:
    """Every tensor name in the files of the model's base checkpoint (``config._name_or_path``),
    read from the safetensors headers or index (no weights); None when they cannot be read."""
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None)
    if not name:
        return None
    try:  # a folder, or the snapshot from_pretrained just read; never a download
        weights = CheckpointWeights(local_dir(str(name), getattr(config, "_commit_hash", None), cached_only=True))
    except Exception:  # not cached, not a repo id, an incomplete checkpoint: no fingerprint
        return None
    if any(f.suffix != ".safetensors" for f in weights.files):
        return None  # pytorch_model.bin: reading the names means loading the weights
    with weights:
        return weights.names()  # the headers only


def fingerprint_by_file_name(model, names) -> dict | None:
    """The base fingerprint of the trained tensors keyed by the base checkpoint's file names (what
    `plast export --merge-into` checks a base against); None when the files cannot be read or do
    not hold every tensor. transformers >= 4.52 names llava-hf / LLaVA-NeXT parameters
    ``model.language_model.layers.N.`` in memory but saves them as ``language_model.model.layers.N.``."""
    file_names = _checkpoint_tensor_names(model) or []
    file_path = layers_path_of_names(file_names)
    if file_path is None:
        return None
    memory_path = find_decoder_layers(model).path
    mapping = {n: file_path + n[len(memory_path):] for n in names}
    if not all(n.startswith(memory_path + ".") for n in names) or not set(mapping.values()) <= set(file_names):
        return None
    return gathered_fingerprint(model, names, mapping)


class PlastCallback(TrainerCallback):
    """Freeze all but the selected layers when the Trainer is built, check the optimizer before the
    first step, and record the selection next to the checkpoints (see the module docstring)."""

    def __init__(self, selection: SelectionLike, modules: str | None = None):
        self.selection = load_selection(selection)
        self.source = None if isinstance(selection, SelectionFile) else str(selection)
        self.modules = modules or self.selection.options.get("modules") or "layer"
        self.report: TrainableReport | None = None
        self.fingerprint: dict | None = None

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.report = apply_selection(model, self.selection, self.modules)
        # Hashed now, before any step (and before a resumed run loads its checkpoint's weights).
        self.fingerprint = fingerprint_by_file_name(model, self.report.trainable_names)
        if state.is_world_process_zero:
            print(f"[plast] training only decoder layers {self.report.layers} ({self.modules})\n"
                  f"{self.report.format_table()}", flush=True)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.report is None:  # the callback was added after the Trainer was built
            self.on_init_end(args, state, control, model=model)
        # transformers 5 renamed is_gradient_checkpointing (the old name warns there)
        checkpointing = (model.is_activation_checkpointing if hasattr(model, "is_activation_checkpointing")
                         else getattr(model, "is_gradient_checkpointing", False))
        if checkpointing:
            # Reentrant checkpointing with frozen embeddings gives the trained layers no gradient
            # (transformers #21381): make the embedding output require grad, as LLaVA's train() does.
            model.enable_input_require_grads()
        if optimizer is None:
            raise PlastError("PLAST: the Trainer passed no optimizer to check; refusing to train unchecked")
        check_optimizer(model, optimizer, self.report.trainable_names)
        if state.is_world_process_zero:
            print(f"[plast] checked: the optimizer holds exactly the {len(self.report.trainable_names)} selected "
                  f"parameters", flush=True)
            self._write_records(Path(args.output_dir), model)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        source = Path(args.output_dir)
        checkpoint = source / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if checkpoint.is_dir():
            for name in (SELECTION_FILENAME, TRAINING_RECORD):
                if (source / name).exists():
                    shutil.copyfile(source / name, checkpoint / name)

    def _write_records(self, out: Path, model) -> None:
        """The two files the official-LLaVA integration writes, in the same format."""
        if self.fingerprint is None:
            print("[plast] note: the base model's checkpoint files were not readable here, so the record has no "
                  "base fingerprint; `plast export --merge-into` cannot check the base it merges into", flush=True)
        write_records(out, model, self.selection, self.report, layers=self.report.layers, modules=self.modules,
                      plast_layers=self.source or "(SelectionFile object)", base_fingerprint=self.fingerprint,
                      trainer="transformers.Trainer + plast_plugin.trainers.hf.PlastCallback")
