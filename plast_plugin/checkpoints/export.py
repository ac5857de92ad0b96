"""Export a PLAST-trained checkpoint as a small delta (only the trained layers), and merge it back.

A PLAST run changes only the selected layers, yet saves the whole model. ``export_delta``
writes just those tensors (``plast_delta.safetensors``) and a manifest (``plast_delta.json``)
naming the base model, the layers and a SHA-256 per tensor. ``merge_delta`` copies a base
checkpoint and overwrites exactly those tensors: the result is bit-identical to the trained
checkpoint.

Works on the files alone (no model is built): safetensors or ``pytorch_model*.bin``, single
file or sharded with an index.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from plast_plugin import __version__
from plast_plugin.atomic import check_new_directory, staged_directory, write_text_atomic
from plast_plugin.errors import PlastError
from plast_plugin.checkpoints.weights import CheckpointWeights, read_weights_file
from plast_plugin.core.model_layout import known_layer_paths, layer_index, layer_prefix, layers_path_of_names
from plast_plugin.core.layer_spec import parse_layer_spec
from plast_plugin.core.selection_file import SELECTION_FILENAME
from plast_plugin.core.training_record import TRAINING_RECORD, TrainingRecord, tensor_sha256
from plast_plugin.json_files import read_json_object
from plast_plugin.models.model_source import local_dir

DELTA_WEIGHTS = "plast_delta.safetensors"
DELTA_MANIFEST = "plast_delta.json"
DELTA_FORMAT = "plast-delta/1"


def _save(tensors: dict, path: Path, metadata: dict | None) -> None:
    if path.suffix == ".safetensors":
        save_file(tensors, str(path), metadata=metadata if metadata is not None else {"format": "pt"})
    else:
        torch.save(tensors, str(path))


def _num_layers(checkpoint: Path, names, path: str) -> int:
    config = checkpoint / "config.json"
    if config.is_file():
        value = read_json_object(config, "config").get("num_hidden_layers")
        if isinstance(value, int) and value > 0:
            return value
    indices = [layer_index(path, n) for n in names]
    return 1 + max(i for i in indices if i is not None)


def delta_tensor_names(names, layers, modules: str = "layer", layers_path: str | None = None) -> list[str]:
    path = layers_path or layers_path_of_names(names)
    if path is None:
        raise PlastError(f"cannot find the decoder layers among the tensor names (tried {known_layer_paths()}); "
                          f"pass layers_path")
    prefixes = tuple(layer_prefix(path, i, modules) for i in layers)
    return sorted(n for n in names if n.startswith(prefixes))


def export_delta(checkpoint, out_dir, *, layers=None, modules: str | None = None,
                 base_model: str | None = None) -> Path:
    """Write only the trained layers of ``checkpoint`` to ``out_dir`` (a new folder, written beside
    and renamed into place). Layers and modules come from the run's plast_training.json (in the
    checkpoint or its parent); given ``layers`` (a list or a spec such as '0-4') and ``modules``
    must match it. Without a record both must be given: export never guesses what was trained."""
    checkpoint, out = Path(checkpoint), Path(out_dir)
    check_new_directory(out)
    weights = CheckpointWeights(checkpoint)
    record_path = TrainingRecord.find(checkpoint)
    record = TrainingRecord.load(record_path) if record_path else None
    modules = _modules_to_export(checkpoint, record_path, record, layers, modules)
    delta, path, layers = _read_trained_tensors(checkpoint, weights, record_path, record, layers, modules)
    if base_model is None and record is not None:
        base_model = record.base_model
    if base_model is None and (checkpoint / "config.json").exists():
        base_model = read_json_object(checkpoint / "config.json", "config").get("_name_or_path")
    manifest = {"format": DELTA_FORMAT, "created_by": f"plast-plugin {__version__}", "base_model": base_model,
                "layers": layers, "modules": modules, "layers_path": path, "source": str(checkpoint.resolve()),
                "tensors": {n: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                                "sha256": tensor_sha256(t)} for n, t in sorted(delta.items())}}
    fingerprint = _delta_fingerprint(record_path, record, delta)
    if fingerprint:
        manifest["base_fingerprint"] = fingerprint
    _write_delta(out, delta, manifest, checkpoint)
    return out


def _modules_to_export(checkpoint: Path, record_path, record, layers, modules) -> str:
    """The record's modules; ``modules`` when given must agree with it (the CLI offers only valid ones)."""
    if record is None and (layers is None or modules is None):
        raise PlastError(
            f"{checkpoint}: no {TRAINING_RECORD} here or in its parent, so what was trained is unknown; "
            f"pass both --layers and --modules (export never guesses)"
        )
    if record is not None and modules is not None and modules != record.modules:
        raise PlastError(
            f"--modules {modules} does not match {record_path}, which says {record.modules!r} was "
            f"trained; drop --modules"
        )
    return modules or record.modules


def _layers_to_export(checkpoint: Path, record_path, record, layers, names, path: str) -> list[int]:
    """The record's layers; ``layers`` when given must name the same ones (a delta of other layers
    would drop trained tensors). A spec is read against the checkpoint's number of layers."""
    if layers is None:
        return sorted(set(record.layers))
    if isinstance(layers, str):
        parsed = parse_layer_spec(layers, _num_layers(checkpoint, names, path))
    else:
        parsed = sorted(set(int(i) for i in layers))
    if record is not None and parsed != sorted(set(record.layers)):
        raise PlastError(
            f"--layers {layers if isinstance(layers, str) else parsed} does not match {record_path}, "
            f"which says layers {record.layers} were trained; a delta of other layers would drop "
            f"trained tensors. Drop --layers"
        )
    return parsed


def _read_trained_tensors(checkpoint: Path, weights, record_path, record, layers,
                          modules: str) -> tuple[dict, str, list[int]]:
    """(tensors of the trained layers, the layer-list path, the layers), file by file: the headers
    say where the layers are, and only the delta's tensors are read."""
    delta, path, parsed = {}, None, None
    with weights:
        for file in weights.files:
            names = weights.names_in(file)
            path = path or layers_path_of_names(names)
            if path is not None:  # else a shard without decoder layers
                if parsed is None:
                    parsed = _layers_to_export(checkpoint, record_path, record, layers, names, path)
                wanted = delta_tensor_names(names, parsed, modules, path)
                delta.update({name: t.contiguous() for name, t in weights.read_from(file, wanted).items()})
            weights.release(file)
    if path is None:
        raise PlastError(f"{checkpoint}: cannot find the decoder layers among the tensor names "
                          f"(tried {known_layer_paths()})")
    if not delta:
        raise PlastError(f"{checkpoint}: no tensor of layers {parsed} ({modules}) found")
    found = {layer_index(path, n) for n in delta}
    if found != set(parsed):
        raise PlastError(f"{checkpoint}: layers {sorted(set(parsed) - found)} have no tensors in the checkpoint")
    return delta, path, parsed


def _delta_fingerprint(record_path, record, delta: dict) -> dict | None:
    """The record's base fingerprint of the delta's tensors, for the merge to check its base."""
    fingerprint = (record.base_fingerprint or {}).get("tensors") if record is not None else None
    if not fingerprint:
        return None
    missing = sorted(set(delta) - set(fingerprint))
    if missing:
        raise PlastError(f"{record_path}: its base fingerprint lacks trained tensor(s) {missing[:3]}; the record "
                          f"does not belong to this checkpoint")
    return {"method": record.base_fingerprint.get("method"), "tensors": {n: fingerprint[n] for n in sorted(delta)}}


def _write_delta(out: Path, delta: dict, manifest: dict, checkpoint: Path) -> None:
    """The delta folder: weights, manifest and the run's selection file, complete or absent."""
    with staged_directory(out) as stage:
        _save(delta, stage / DELTA_WEIGHTS, {"format": "pt"})
        write_text_atomic(stage / DELTA_MANIFEST, json.dumps(manifest, indent=2) + "\n")
        for folder in (checkpoint, checkpoint.parent):
            if (folder / SELECTION_FILENAME).exists():
                shutil.copyfile(folder / SELECTION_FILENAME, stage / SELECTION_FILENAME)
                break


def load_delta(delta_dir) -> tuple[dict, dict]:
    delta_dir = Path(delta_dir)
    manifest_path = delta_dir / DELTA_MANIFEST
    manifest = read_json_object(manifest_path, "delta manifest",
                                "create the delta with `plast export CHECKPOINT --out DIR`")
    if manifest.get("format") != DELTA_FORMAT:
        raise PlastError(f"{manifest_path}: format {manifest.get('format')!r}, expected {DELTA_FORMAT!r}")
    listed = manifest.get("tensors")
    if not isinstance(listed, dict) or not listed or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in listed.values()):
        raise PlastError(f"{manifest_path}: 'tensors' must map each tensor name to its dtype, shape and sha256; "
                         f"export the delta again")
    if not isinstance(manifest.get("layers"), list):
        raise PlastError(f"{manifest_path}: 'layers' must be a list of layer indices; export the delta again")
    if not (delta_dir / DELTA_WEIGHTS).is_file():
        raise PlastError(f"{delta_dir} has no {DELTA_WEIGHTS}; export the delta again")
    tensors, _ = read_weights_file(delta_dir / DELTA_WEIGHTS)
    if set(tensors) != set(listed):
        raise PlastError(f"{delta_dir}: the weights file and the manifest list different tensors")
    for name, tensor in tensors.items():
        if tensor_sha256(tensor) != listed[name]["sha256"]:
            raise PlastError(f"{delta_dir}: tensor {name} does not match its checksum (corrupt file?)")
    return tensors, manifest


def _check_base_tensor(name: str, tensor, manifest: dict, base: Path) -> None:
    """Refuse a base whose value of ``name`` differs from the one the training run started from."""
    recorded = ((manifest.get("base_fingerprint") or {}).get("tensors") or {}).get(name)
    if not recorded:
        return
    dtype = getattr(torch, str(recorded.get("dtype", "")), None)
    value = tensor.to(dtype) if isinstance(dtype, torch.dtype) and dtype != tensor.dtype else tensor
    if tensor_sha256(value) != recorded["sha256"]:
        raise PlastError(
            f"--merge-into {base} is not the model this delta was trained from: its {name} differs from the "
            f"training run's base (fingerprint in the delta's {DELTA_MANIFEST}; base_model "
            f"{manifest.get('base_model')!r}). Merge into that base"
        )


def merge_delta(base_dir, delta_dir, out_dir, revision: str | None = None) -> Path:
    """Copy ``base_dir`` to ``out_dir`` and overwrite the delta's tensors (same dtype and shape).
    The base must be the model the run started from (its fingerprint, when the delta has one).
    ``out_dir`` is built beside and renamed into place: a failure leaves nothing."""
    base, out = local_dir(str(base_dir), revision), Path(out_dir)  # a folder or a hub id (HF cache)
    if out.resolve() == base.resolve():
        raise PlastError("merge writes a new checkpoint: --out must differ from the base checkpoint")
    check_new_directory(out)
    delta, manifest = load_delta(delta_dir)
    weights = CheckpointWeights(base)
    files = weights.files
    if not manifest.get("base_fingerprint"):
        print(f"plast export: warning: {Path(delta_dir) / DELTA_MANIFEST} has no base fingerprint (exported without "
              f"a training record); cannot check that {base} is the model it was trained from", file=sys.stderr)
    with weights, staged_directory(out) as stage:
        shutil.copytree(base, stage, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*[f.name for f in files]))
        remaining = dict(delta)
        for file in files:
            if not any(name in remaining for name in weights.names_in(file)):
                weights.release(file)
                shutil.copyfile(file, stage / file.name)  # no delta tensor in it: the same bytes
                continue
            tensors, metadata = weights.read_file(file)
            weights.release(file)
            for name in [n for n in tensors if n in remaining]:
                new = remaining.pop(name)
                if tuple(new.shape) != tuple(tensors[name].shape) or new.dtype != tensors[name].dtype:
                    raise PlastError(
                        f"{name}: delta has {new.dtype} {tuple(new.shape)}, base has {tensors[name].dtype} "
                        f"{tuple(tensors[name].shape)}; the delta was made from another model"
                    )
                _check_base_tensor(name, tensors[name], manifest, base)
                tensors[name] = new
            _save(tensors, stage / file.name, metadata)
        if remaining:
            raise PlastError(f"base checkpoint {base} lacks {len(remaining)} delta tensor(s), e.g. {sorted(remaining)[:3]}")
        for extra in (DELTA_MANIFEST, SELECTION_FILENAME):
            if (Path(delta_dir) / extra).exists():
                shutil.copyfile(Path(delta_dir) / extra, stage / extra)
    return out
