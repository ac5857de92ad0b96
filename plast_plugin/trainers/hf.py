"""PLAST with the Hugging Face ``Trainer`` (and trainers built on it, such as TRL's ``SFTTrainer``).

Two pieces, usable alone or together::

    from plast_plugin.trainers.hf import PlastCallback, apply_selection

    model = LlavaForConditionalGeneration.from_pretrained("llava-hf/llava-1.5-7b-hf")
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate,
                      callbacks=[PlastCallback("runs/select/plast_layers.json")])
    trainer.train()

- ``apply_selection(model, selection)`` freezes every parameter but the selected decoder layers
  (for a training loop of your own); a selection file made for a model of another shape is
  refused (``SelectionMismatchError``).
- ``PlastCallback(selection)`` does the same when the ``Trainer`` is built (``on_init_end``, before
  any optimizer exists), then, before the first step, checks that the optimizer holds exactly the
  selected parameters (an optimizer built by hand over ``model.parameters()`` is refused), and
  writes ``plast_layers.json`` + ``plast_training.json`` into ``output_dir`` and every
  ``checkpoint-N``: the records ``plast export`` reads, so delta export and merge work for these
  checkpoints as for the official LLaVA script's.

Works for llava-hf (``LlavaForConditionalGeneration``), LLaVA-NeXT
(``LlavaNextForConditionalGeneration``) and the causal LMs ``plast select`` supports, in both
transformers lines (parameter names differ between them; the layout is found on the model).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Union

from transformers import TrainerCallback

from plast_plugin.atomic import write_text_atomic
from plast_plugin.errors import PlastError
from plast_plugin.core.freeze import TrainableReport, freeze_for_plast
from plast_plugin.llava.integration import TRAINING_RECORD
from plast_plugin.core.selection_file import SELECTION_FILENAME, SelectionFile

logger = logging.getLogger("plast_plugin.trainers.hf")

SelectionLike = Union[SelectionFile, str, os.PathLike]


class PlastOptimizerError(PlastError):
    """The optimizer does not hold exactly the selected parameters."""


def load_selection(selection: SelectionLike) -> SelectionFile:
    """A ``SelectionFile`` as given, or loaded from a file / a folder holding ``plast_layers.json``."""
    return selection if isinstance(selection, SelectionFile) else SelectionFile.load(selection)


def apply_selection(model, selection: SelectionLike, modules: str | None = None) -> TrainableReport:
    """Freeze everything of ``model`` but the selection's decoder layers (``modules``: what of each
    layer, 'layer' | 'mlp' | 'attn'; default: the selection file's own). Refuses a model whose
    shape (layers, FFN width, hidden size) differs from the one the file was made for; warns for
    one of another name or architecture."""
    import warnings

    from plast_plugin.core.model_layout import find_decoder_layers
    from plast_plugin.models.model_source import converted_from

    selection = load_selection(selection)
    layout = find_decoder_layers(model)  # once, for the check and the freeze
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    for warning in selection.check_identity(model, layout=layout, also_named=converted_from(name)):
        warnings.warn(warning, stacklevel=2)
    modules = modules or selection.options.get("modules") or "layer"
    return freeze_for_plast(model, list(selection.selected_layers), modules, layout=layout)


def optimizer_parameters(optimizer) -> list:
    """The model parameters an optimizer updates, through the wrappers the Trainer may add:
    accelerate's ``AcceleratedOptimizer`` (``.optimizer``) and DeepSpeed's ZeRO optimizers, whose
    ``param_groups`` hold flat fp32 partitions while ``bit16_groups`` (ZeRO-1/2) or
    ``fp16_groups`` (ZeRO-3) hold the model's own parameters."""
    inner, seen = optimizer, set()
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        for attr in ("bit16_groups", "fp16_groups"):
            groups = getattr(inner, attr, None)
            if groups:
                return [p for group in groups for p in group]
        inner = getattr(inner, "optimizer", None)
    return [p for group in optimizer.param_groups for p in group["params"]]


def check_optimizer(model, optimizer, expected_names) -> None:
    """Raise ``PlastOptimizerError`` unless ``optimizer`` holds exactly the parameters named."""
    names = {id(p): n for n, p in model.named_parameters()}
    held = {names.get(id(p), "<not a parameter of the model>") for p in optimizer_parameters(optimizer)}
    expected = set(expected_names)
    if held != expected:
        extra, missing = sorted(held - expected), sorted(expected - held)
        raise PlastOptimizerError(
            f"PLAST: the optimizer does not hold exactly the selected parameters ({len(extra)} extra, e.g. "
            f"{extra[:3]}; {len(missing)} missing, e.g. {missing[:3]}): refusing to train. Build the optimizer "
            f"after apply_selection() from the parameters with requires_grad, or let the Trainer build it."
        )


def _checkpoint_tensor_names(model) -> list[str] | None:
    """Every tensor name in the files of the model's base checkpoint (``config._name_or_path``),
    read from the safetensors headers or index (no weights); None when they cannot be read."""
    from plast_plugin.checkpoints.weights import CheckpointWeights

    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None)
    if not name:
        return None
    folder = Path(str(name)).expanduser()
    try:
        if not folder.is_dir():
            # The snapshot from_pretrained just read; never a download (a hub repo may hold more
            # than the model needs).
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(name), revision=getattr(config, "_commit_hash", None),
                                            local_files_only=True))
        weights = CheckpointWeights(folder)
    except Exception:  # not cached, not a repo id, an incomplete checkpoint: no fingerprint
        return None
    if any(f.suffix != ".safetensors" for f in weights.files):
        return None  # pytorch_model.bin: reading the names means loading the weights
    with weights:
        return weights.names()  # the headers only


def checkpoint_names(model, names) -> dict[str, str] | None:
    """In-memory parameter name -> the same tensor's name in the base checkpoint's files.

    transformers >= 4.52 names llava-hf / LLaVA-NeXT parameters ``model.language_model.layers.N.``
    in memory but still saves (and ships) them as ``language_model.model.layers.N.``; ``plast
    export`` works on the files, so the training record's fingerprint is keyed by file names.
    None when the base files cannot be read or do not hold every tensor."""
    from plast_plugin.core.model_layout import find_decoder_layers, layers_path_of_names

    file_names = _checkpoint_tensor_names(model)
    if not file_names:
        return None
    file_path = layers_path_of_names(file_names)
    if file_path is None:
        return None
    memory_path = find_decoder_layers(model).path
    mapping = {n: file_path + n[len(memory_path):] for n in names if n.startswith(memory_path + ".")}
    present = set(file_names)
    if len(mapping) != len(list(names)) or not all(v in present for v in mapping.values()):
        return None
    return mapping


def base_fingerprint(model, names) -> dict | None:
    """SHA-256 of each trained tensor as loaded (the base's values), keyed by checkpoint file names,
    the record `plast export --merge-into` checks a base against; None when the names are unknown."""
    from plast_plugin.llava.integration import base_fingerprint as fingerprint_by_parameter_name

    mapping = checkpoint_names(model, names)
    if mapping is None:
        return None
    fingerprint = fingerprint_by_parameter_name(model, sorted(names))
    fingerprint["tensors"] = {mapping[n]: value for n, value in fingerprint["tensors"].items()}
    return fingerprint


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
        if model is None:
            raise PlastError("PlastCallback: the Trainer was built without a model")
        self.report = apply_selection(model, self.selection, self.modules)
        # Hashed now, before any step (and before a resumed run loads its checkpoint's weights).
        self.fingerprint = base_fingerprint(model, self.report.trainable_names)
        if state.is_world_process_zero:
            print(f"[plast] training only decoder layers {self.report.layers} ({self.modules})\n"
                  f"{self.report.format_table()}", flush=True)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.report is None:  # the callback was added after the Trainer was built
            self.on_init_end(args, state, control, model=model)
        checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers 5 renamed it
        if checkpointing is None:
            checkpointing = getattr(model, "is_gradient_checkpointing", False)
        if checkpointing:
            # Reentrant checkpointing with frozen embeddings gives the trained layers no gradient
            # (transformers #21381): make the embedding output require grad, as LLaVA's train() does.
            model.enable_input_require_grads()
        if optimizer is None:
            raise PlastOptimizerError("PLAST: the Trainer passed no optimizer to check; refusing to train unchecked")
        check_optimizer(model, optimizer, self.report.trainable_names)
        if state.is_world_process_zero:
            print(f"[plast] checked: the optimizer holds exactly the {len(self.report.trainable_names)} selected "
                  f"parameters", flush=True)
            self._write_records(Path(args.output_dir), model)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        source = Path(args.output_dir)
        checkpoint = source / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if checkpoint.is_dir():
            for name in (SELECTION_FILENAME, TRAINING_RECORD):
                if (source / name).exists():
                    shutil.copyfile(source / name, checkpoint / name)

    def _write_records(self, out: Path, model) -> None:
        """The two files the official-LLaVA integration writes, in the same format."""
        out.mkdir(parents=True, exist_ok=True)
        selection = self.selection
        selection.trainable = self.report.to_dict()
        selection.save(out / SELECTION_FILENAME)
        record = {
            "layers": self.report.layers,
            "modules": self.modules,
            "plast_layers": self.source or "(SelectionFile object)",
            "base_model": getattr(getattr(model, "config", None), "_name_or_path", None),
            "trainable": self.report.to_dict(),
            "trainable_names": self.report.trainable_names,
            "trainer": "transformers.Trainer + plast_plugin.trainers.hf.PlastCallback",
        }
        if self.fingerprint is not None:
            record["base_fingerprint"] = self.fingerprint
        else:
            print("[plast] note: the base model's checkpoint files were not readable here, so the record has no "
                  "base fingerprint; `plast export --merge-into` cannot check the base it merges into", flush=True)
        write_text_atomic(out / TRAINING_RECORD, json.dumps(record, indent=2) + "\n")
