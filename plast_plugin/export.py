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

from .model_source import local_dir

DELTA_WEIGHTS = "plast_delta.safetensors"
DELTA_MANIFEST = "plast_delta.json"
DELTA_FORMAT = "plast-delta/1"
# Decoder-layer containers, in the order tried (official LLaVA / LLaMA, llava-hf 4.x, llava-hf 5.x).
LAYER_PATHS = ("model.layers", "language_model.model.layers", "model.language_model.layers")
MODULE_PARTS = {"layer": None, "mlp": ".mlp.", "attn": ".self_attn."}


class ExportError(ValueError):
    pass


# ----------------------------------------------------------------------------- files
def _weight_files(directory: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [directory / f for f in files]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (directory / single).exists():
            return [directory / single]
    raise ExportError(f"{directory}: no model.safetensors / pytorch_model.bin (or their index) found")


def _load(path: Path) -> tuple[dict, dict | None]:
    """(tensors, safetensors metadata or None for .bin)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True), None


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
def _training_record(checkpoint: Path) -> tuple[dict, Path | None]:
    """plast_training.json (written by the LLaVA integration) in the checkpoint or its parent
    (Trainer's checkpoint-N folders), falling back to plast_layers.json."""
    for folder in (checkpoint, checkpoint.parent):
        record = folder / "plast_training.json"
        if record.exists():
            return json.loads(record.read_text(encoding="utf-8")), record
    for folder in (checkpoint, checkpoint.parent):
        record = folder / "plast_layers.json"
        if record.exists():
            raw = json.loads(record.read_text(encoding="utf-8"))
            return {"layers": raw["selected_layers"], "modules": raw.get("options", {}).get("modules", "layer"),
                    "base_model": raw.get("model", {}).get("name_or_path")}, record
    return {}, None


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
        from . import __version__

        return {"format": self.format, "created_by": f"plast-plugin {__version__}", "base_model": self.base_model,
                "layers": self.layers, "modules": self.modules, "layers_path": self.layers_path,
                "source": self.source, "tensors": self.tensors}


def export_delta(checkpoint, out_dir, *, layers=None, modules: str | None = None, base_model: str | None = None,
                 layers_path: str | None = None) -> Path:
    """Write only the trained layers of ``checkpoint`` to ``out_dir``. Layers and modules come from
    the run's plast_training.json / plast_layers.json unless given."""
    checkpoint, out = Path(checkpoint), Path(out_dir)
    record, _ = _training_record(checkpoint)
    layers = sorted(set(int(i) for i in (layers if layers is not None else record.get("layers", []))))
    if not layers:
        raise ExportError(f"{checkpoint}: no plast_training.json / plast_layers.json found; pass the layers")
    modules = modules or record.get("modules", "layer")
    if base_model is None:
        base_model = record.get("base_model")
    if base_model is None and (checkpoint / "config.json").exists():
        base_model = json.loads((checkpoint / "config.json").read_text()).get("_name_or_path")
    delta, path_used = {}, layers_path
    for file in _weight_files(checkpoint):
        tensors, _ = _load(file)
        if path_used is None:
            try:
                path_used = _layers_path(tensors, None)
            except ExportError:
                continue  # a shard without decoder layers
        for name in delta_tensor_names(tensors, layers, modules, path_used):
            delta[name] = tensors[name].contiguous()
    if not delta:
        raise ExportError(f"{checkpoint}: no tensor of layers {layers} ({modules}) found")
    found = {int(n[len(path_used) + 1:].split(".", 1)[0]) for n in delta}
    if found != set(layers):
        raise ExportError(f"{checkpoint}: layers {sorted(set(layers) - found)} have no tensors in the checkpoint")
    out.mkdir(parents=True, exist_ok=True)
    _save(delta, out / DELTA_WEIGHTS, {"format": "pt"})
    manifest = DeltaManifest(
        base_model=base_model, layers=layers, modules=modules, layers_path=path_used, source=str(checkpoint.resolve()),
        tensors={n: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "sha256": tensor_sha256(t)}
                 for n, t in sorted(delta.items())},
    )
    (out / DELTA_MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    for folder in (checkpoint, checkpoint.parent):
        if (folder / "plast_layers.json").exists():
            shutil.copyfile(folder / "plast_layers.json", out / "plast_layers.json")
            break
    return out


def load_delta(delta_dir) -> tuple[dict, dict]:
    delta_dir = Path(delta_dir)
    try:
        manifest = json.loads((delta_dir / DELTA_MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{delta_dir} has no {DELTA_MANIFEST}; create it with `plast export CHECKPOINT --out DIR`") from None
    if manifest.get("format") != DELTA_FORMAT:
        raise ExportError(f"{delta_dir}/{DELTA_MANIFEST}: format {manifest.get('format')!r}, expected {DELTA_FORMAT!r}")
    tensors, _ = _load(delta_dir / DELTA_WEIGHTS)
    if set(tensors) != set(manifest["tensors"]):
        raise ExportError(f"{delta_dir}: the weights file and the manifest list different tensors")
    for name, tensor in tensors.items():
        if tensor_sha256(tensor) != manifest["tensors"][name]["sha256"]:
            raise ExportError(f"{delta_dir}: tensor {name} does not match its checksum (corrupt file?)")
    return tensors, manifest


def merge_delta(base_dir, delta_dir, out_dir, revision: str | None = None) -> Path:
    """Copy ``base_dir`` to ``out_dir`` and overwrite the delta's tensors (same dtype and shape)."""
    base, out = local_dir(str(base_dir), revision), Path(out_dir)  # a folder or a hub id (HF cache)
    if out.resolve() == base.resolve():
        raise ExportError("merge writes a new checkpoint: --out must differ from the base checkpoint")
    delta, manifest = load_delta(delta_dir)
    files = _weight_files(base)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty")
    shutil.copytree(base, out, dirs_exist_ok=True,
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
            tensors[name] = new
        _save(tensors, out / file.name, metadata)
    if remaining:
        shutil.rmtree(out, ignore_errors=True)
        raise ExportError(f"base checkpoint {base} lacks {len(remaining)} delta tensor(s), e.g. {sorted(remaining)[:3]}")
    for extra in (DELTA_MANIFEST, "plast_layers.json"):
        if (Path(delta_dir) / extra).exists():
            shutil.copyfile(Path(delta_dir) / extra, out / extra)
    return out
