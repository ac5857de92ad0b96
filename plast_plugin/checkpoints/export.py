"""Export a PLAST-trained checkpoint as a small delta (only the trained layers), and merge it back.

A PLAST run changes only the selected layers, yet saves the whole model. ``export_delta``
writes just those tensors (``plast_delta.safetensors``) and a manifest (``plast_delta.json``)
naming the base model, the layers and a SHA-256 per tensor. ``merge_delta`` copies a base
checkpoint and overwrites exactly those tensors: the result is bit-identical to the trained
checkpoint (the test checks every byte of every tensor).

Works on the files alone (no model is built): safetensors or ``pytorch_model*.bin``, single
file or sharded with an index.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json_object
from plast_plugin.models.model_source import local_dir

DELTA_WEIGHTS = "plast_delta.safetensors"
DELTA_MANIFEST = "plast_delta.json"
DELTA_FORMAT = "plast-delta/1"
# Decoder-layer containers, in the order tried (official LLaVA / LLaMA, llava-hf 4.x, llava-hf 5.x).
LAYER_PATHS = ("model.layers", "language_model.model.layers", "model.language_model.layers")
MODULE_PARTS = {"layer": None, "mlp": ".mlp.", "attn": ".self_attn."}


class ExportError(PlastError):
    pass


# ----------------------------------------------------------------------------- files
def _weight_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ExportError(f"{directory} is not a folder; give a checkpoint folder (config.json + weights)")
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.exists():
            weight_map = read_json_object(index, "weights index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ExportError(f"weights index {index} has no 'weight_map' object; the checkpoint is incomplete")
            files = [directory / str(f) for f in sorted(set(weight_map.values()))]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise ExportError(f"weights index {index} names missing file(s) {missing[:3]}; the checkpoint is incomplete")
            return files
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (directory / single).exists():
            return [directory / single]
    raise ExportError(f"{directory}: no model.safetensors / pytorch_model.bin (or their index) found")


def _load(path: Path) -> tuple[dict, dict | None]:
    """(tensors, safetensors metadata or None for .bin). An unreadable file is the input's fault:
    one ExportError naming it."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        import torch

        return torch.load(str(path), map_location="cpu", weights_only=True), None
    except OSError:
        raise
    except Exception as err:  # SafetensorError, UnpicklingError, ...: a truncated or foreign file
        raise ExportError(f"cannot read weights file {path} ({type(err).__name__}: {err}); it is truncated or "
                          f"not a weights file, write it again") from None


def _save(tensors: dict, path: Path, metadata: dict | None) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata=metadata if metadata is not None else {"format": "pt"})
    else:
        import torch

        torch.save(tensors, str(path))


def tensor_sha256(tensor) -> str:
    import torch

    t = tensor.detach().contiguous().cpu()
    raw = t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------- layer discovery
TRAINING_RECORD = "plast_training.json"  # written by the LLaVA integration


def _training_record(checkpoint: Path) -> tuple[dict, Path | None]:
    """plast_training.json (written by the LLaVA integration) in the checkpoint or its parent
    (Trainer's checkpoint-N folders). Nothing else is read: export never guesses what was trained."""
    for folder in (checkpoint, checkpoint.parent):
        record = folder / TRAINING_RECORD
        if record.exists():
            raw = read_json_object(record, "training record")
            layers, modules = raw.get("layers"), raw.get("modules")
            if (not isinstance(layers, list) or not layers
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)):
                raise ExportError(f"training record {record}: 'layers' must be a non-empty list of layer indices")
            if modules not in MODULE_PARTS:
                raise ExportError(f"training record {record}: 'modules' must be one of {', '.join(MODULE_PARTS)}")
            return raw, record
    return {}, None


def _num_layers(checkpoint: Path, names, path: str) -> int:
    config = checkpoint / "config.json"
    if config.is_file():
        value = read_json_object(config, "config").get("num_hidden_layers")
        if isinstance(value, int) and value > 0:
            return value
    return 1 + max(int(n[len(path) + 1:].split(".", 1)[0]) for n in names if n.startswith(path + "."))


def _layers_path(names, explicit: str | None) -> str:
    if explicit:
        return explicit
    for candidate in LAYER_PATHS:
        if any(re.match(re.escape(candidate) + r"\.\d+\.", n) for n in names):
            return candidate
    raise ExportError(f"cannot find the decoder layers among the tensor names (tried {LAYER_PATHS}); pass layers_path")


def delta_tensor_names(names, layers, modules: str = "layer", layers_path: str | None = None) -> list[str]:
    if modules not in MODULE_PARTS:
        raise ExportError(f"modules={modules!r}: use one of {', '.join(MODULE_PARTS)}")
    path = _layers_path(names, layers_path)
    prefixes = tuple(f"{path}.{i}." for i in layers)
    part = MODULE_PARTS[modules]
    return sorted(n for n in names if n.startswith(prefixes) and (part is None or part in n))


# ----------------------------------------------------------------------------- export / merge
@dataclass
class DeltaManifest:
    base_model: str | None
    layers: list[int]
    modules: str
    layers_path: str
    tensors: dict
    source: str
    format: str = DELTA_FORMAT

    def to_dict(self) -> dict:
        from plast_plugin import __version__

        return {"format": self.format, "created_by": f"plast-plugin {__version__}", "base_model": self.base_model,
                "layers": self.layers, "modules": self.modules, "layers_path": self.layers_path,
                "source": self.source, "tensors": self.tensors}


def export_delta(checkpoint, out_dir, *, layers=None, modules: str | None = None, base_model: str | None = None,
                 layers_path: str | None = None) -> Path:
    """Write only the trained layers of ``checkpoint`` to ``out_dir`` (a new folder, written beside
    and renamed into place). Layers and modules come from the run's plast_training.json; given
    ``layers`` (a list or a spec such as '0-4') and ``modules`` must match it. Without a record
    both must be given."""
    from plast_plugin.atomic import check_new_directory, staged_directory, write_text_atomic
    from plast_plugin.core.layer_spec import format_layer_spec, parse_layer_spec

    checkpoint, out = Path(checkpoint), Path(out_dir)
    check_new_directory(out)
    files = _weight_files(checkpoint)
    record, record_path = _training_record(checkpoint)
    if record_path is None and (layers is None or modules is None):
        raise ExportError(
            f"{checkpoint}: no {TRAINING_RECORD} here or in its parent, so what was trained is unknown; "
            f"pass both --layers and --modules (export never guesses)"
        )
    if modules is not None and modules not in MODULE_PARTS:
        raise ExportError(f"--modules {modules!r}: use one of {', '.join(MODULE_PARTS)}")
    delta, path_used, parsed = {}, layers_path, None
    for file in files:
        tensors, _ = _load(file)
        if path_used is None:
            try:
                path_used = _layers_path(tensors, None)
            except ExportError:
                continue  # a shard without decoder layers
        if parsed is None:
            if layers is None:
                parsed = sorted(set(record["layers"]))
            elif isinstance(layers, str):
                parsed = parse_layer_spec(layers, _num_layers(checkpoint, tensors, path_used))
            else:
                parsed = sorted(set(int(i) for i in layers))
            if record_path is not None and parsed != sorted(set(record["layers"])):
                raise ExportError(
                    f"--layers {format_layer_spec(parsed)} does not match {record_path}, which says layers "
                    f"{record['layers']} were trained; a delta of other layers would drop trained tensors. "
                    f"Drop --layers"
                )
            if record_path is not None and modules is not None and modules != record["modules"]:
                raise ExportError(
                    f"--modules {modules} does not match {record_path}, which says {record['modules']!r} was "
                    f"trained; drop --modules"
                )
            modules = modules or record["modules"]
        for name in delta_tensor_names(tensors, parsed, modules, path_used):
            delta[name] = tensors[name].contiguous()
    if path_used is None:
        raise ExportError(f"{checkpoint}: cannot find the decoder layers among the tensor names (tried {LAYER_PATHS})")
    if not delta:
        raise ExportError(f"{checkpoint}: no tensor of layers {parsed} ({modules}) found")
    found = {int(n[len(path_used) + 1:].split(".", 1)[0]) for n in delta}
    if found != set(parsed):
        raise ExportError(f"{checkpoint}: layers {sorted(set(parsed) - found)} have no tensors in the checkpoint")
    if base_model is None:
        base_model = record.get("base_model")
    if base_model is None and (checkpoint / "config.json").exists():
        base_model = read_json_object(checkpoint / "config.json", "config").get("_name_or_path")
    fingerprint = (record.get("base_fingerprint") or {}).get("tensors") or {}
    manifest = DeltaManifest(
        base_model=base_model, layers=parsed, modules=modules, layers_path=path_used, source=str(checkpoint.resolve()),
        tensors={n: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "sha256": tensor_sha256(t)}
                 for n, t in sorted(delta.items())},
    ).to_dict()
    if fingerprint:
        missing = sorted(set(delta) - set(fingerprint))
        if missing:
            raise ExportError(f"{record_path}: its base fingerprint lacks trained tensor(s) {missing[:3]}; the record "
                              f"does not belong to this checkpoint")
        manifest["base_fingerprint"] = {"method": record["base_fingerprint"].get("method"),
                                        "tensors": {n: fingerprint[n] for n in sorted(delta)}}
    with staged_directory(out) as stage:
        _save(delta, stage / DELTA_WEIGHTS, {"format": "pt"})
        write_text_atomic(stage / DELTA_MANIFEST, json.dumps(manifest, indent=2) + "\n")
        for folder in (checkpoint, checkpoint.parent):
            if (folder / "plast_layers.json").exists():
                shutil.copyfile(folder / "plast_layers.json", stage / "plast_layers.json")
                break
    return out


def load_delta(delta_dir) -> tuple[dict, dict]:
    delta_dir = Path(delta_dir)
    manifest_path = delta_dir / DELTA_MANIFEST
    manifest = read_json_object(manifest_path, "delta manifest",
                                "create the delta with `plast export CHECKPOINT --out DIR`")
    if manifest.get("format") != DELTA_FORMAT:
        raise ExportError(f"{manifest_path}: format {manifest.get('format')!r}, expected {DELTA_FORMAT!r}")
    listed = manifest.get("tensors")
    if not isinstance(listed, dict) or not listed or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in listed.values()):
        raise ExportError(f"{manifest_path}: 'tensors' must map each tensor name to its dtype, shape and sha256; "
                          f"export the delta again")
    if not isinstance(manifest.get("layers"), list):
        raise ExportError(f"{manifest_path}: 'layers' must be a list of layer indices; export the delta again")
    if not (delta_dir / DELTA_WEIGHTS).is_file():
        raise ExportError(f"{delta_dir} has no {DELTA_WEIGHTS}; export the delta again")
    tensors, _ = _load(delta_dir / DELTA_WEIGHTS)
    if set(tensors) != set(listed):
        raise ExportError(f"{delta_dir}: the weights file and the manifest list different tensors")
    for name, tensor in tensors.items():
        if tensor_sha256(tensor) != listed[name]["sha256"]:
            raise ExportError(f"{delta_dir}: tensor {name} does not match its checksum (corrupt file?)")
    return tensors, manifest


def _check_base_tensor(name: str, tensor, manifest: dict, base: Path) -> None:
    """Refuse a base whose value of ``name`` differs from the one the training run started from."""
    recorded = ((manifest.get("base_fingerprint") or {}).get("tensors") or {}).get(name)
    if not recorded:
        return
    import torch

    dtype = getattr(torch, str(recorded.get("dtype", "")), None)
    value = tensor.to(dtype) if isinstance(dtype, torch.dtype) and dtype != tensor.dtype else tensor
    if tensor_sha256(value) != recorded["sha256"]:
        raise ExportError(
            f"--merge-into {base} is not the model this delta was trained from: its {name} differs from the "
            f"training run's base (fingerprint in the delta's {DELTA_MANIFEST}; base_model "
            f"{manifest.get('base_model')!r}). Merge into that base"
        )


def merge_delta(base_dir, delta_dir, out_dir, revision: str | None = None) -> Path:
    """Copy ``base_dir`` to ``out_dir`` and overwrite the delta's tensors (same dtype and shape).
    The base must be the model the run started from (its fingerprint, when the delta has one).
    ``out_dir`` is built beside and renamed into place: a failure leaves nothing."""
    import sys

    from plast_plugin.atomic import check_new_directory, staged_directory

    base, out = local_dir(str(base_dir), revision), Path(out_dir)  # a folder or a hub id (HF cache)
    if out.resolve() == base.resolve():
        raise ExportError("merge writes a new checkpoint: --out must differ from the base checkpoint")
    check_new_directory(out)
    delta, manifest = load_delta(delta_dir)
    files = _weight_files(base)
    if not manifest.get("base_fingerprint"):
        print(f"plast export: warning: {Path(delta_dir) / DELTA_MANIFEST} has no base fingerprint (exported without "
              f"a training record); cannot check that {base} is the model it was trained from", file=sys.stderr)
    with staged_directory(out) as stage:
        shutil.copytree(base, stage, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*[f.name for f in files]))
        remaining = dict(delta)
        for file in files:
            tensors, metadata = _load(file)
            for name in [n for n in tensors if n in remaining]:
                new = remaining.pop(name)
                if tuple(new.shape) != tuple(tensors[name].shape) or new.dtype != tensors[name].dtype:
                    raise ExportError(
                        f"{name}: delta has {new.dtype} {tuple(new.shape)}, base has {tensors[name].dtype} "
                        f"{tuple(tensors[name].shape)}; the delta was made from another model"
                    )
                _check_base_tensor(name, tensors[name], manifest, base)
                tensors[name] = new
            _save(tensors, stage / file.name, metadata)
        if remaining:
            raise ExportError(f"base checkpoint {base} lacks {len(remaining)} delta tensor(s), e.g. {sorted(remaining)[:3]}")
        for extra in (DELTA_MANIFEST, "plast_layers.json"):
            if (Path(delta_dir) / extra).exists():
                shutil.copyfile(Path(delta_dir) / extra, stage / extra)
    return out
