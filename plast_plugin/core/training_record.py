"""The training record `plast_training.json`: what a PLAST run trained, written next to its checkpoints.

Both training paths write it (the LLaVA patch and ``PlastCallback``); ``plast export`` reads it to
know which tensors form the delta (it never guesses), and ``plast ablate`` to check that each run
trained exactly its planned layers. The base fingerprint (a SHA-256 of each trained tensor before
the first step) lets ``plast export --merge-into`` refuse another base of the same shapes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plast_plugin.atomic import write_text_atomic
from plast_plugin.core.model_layout import MODULE_CHOICES
from plast_plugin.core.selection_file import SELECTION_FILENAME
from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json_object

TRAINING_RECORD = "plast_training.json"
FINGERPRINT_METHOD = "sha256 of each trained tensor in the base model, before training"


@dataclass
class TrainingRecord:
    layers: list[int]  # every layer that differs from the base (a resumed run's union included)
    modules: str
    plast_layers: str | None = None  # what selected them: --plast_layers, or the selection file given
    base_model: str | None = None
    base_fingerprint: dict | None = None  # {"method", "tensors": {name: {"dtype", "sha256"}}}
    trainable: dict = field(default_factory=dict)  # TrainableReport.to_dict()
    trainable_names: list[str] = field(default_factory=list)
    history: list[dict] | None = None  # the selection of each (resumed) run, oldest first
    trainer: str | None = None

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/plast_training.json`` atomically; unset fields are left out."""
        record = {key: value for key, value in asdict(self).items() if value is not None}
        return write_text_atomic(Path(folder) / TRAINING_RECORD, json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainingRecord":
        """Read and check a record (a folder means its plast_training.json); keys it does not know
        are ignored, so a record of a newer version still names its layers."""
        path = Path(path)
        if path.is_dir():
            path = path / TRAINING_RECORD
        raw = read_json_object(path, "training record")
        layers, fingerprint = raw.get("layers"), raw.get("base_fingerprint")
        for key, ok, expected in [
            ("layers", isinstance(layers, list) and bool(layers)
             and all(isinstance(i, int) and not isinstance(i, bool) for i in layers),
             "a non-empty list of layer indices"),
            ("modules", raw.get("modules") in MODULE_CHOICES, f"one of {', '.join(MODULE_CHOICES)}"),
            ("base_fingerprint", fingerprint is None
             or isinstance(fingerprint, dict) and isinstance(fingerprint.get("tensors"), dict),
             "an object with 'tensors'"),
            ("trainable", isinstance(raw.get("trainable") or {}, dict), "an object"),
            ("trainable_names", isinstance(raw.get("trainable_names") or [], list), "a list"),
            ("history", isinstance(raw.get("history") or [], list), "a list"),
        ]:
            if not ok:
                raise PlastError(f"training record {path}: {key!r} must be {expected}; the file is damaged or not "
                                 f"PLAST's (train into a new output_dir to write it again)")
        known = {name: raw[name] for name in cls.__dataclass_fields__ if raw.get(name) is not None}
        return cls(**known)

    @staticmethod
    def find(checkpoint: str | os.PathLike) -> Path | None:
        """The record of a checkpoint: in its folder, else in the parent (the Trainer's checkpoint-N)."""
        candidates = (Path(checkpoint) / TRAINING_RECORD, Path(checkpoint).parent / TRAINING_RECORD)
        return next((path for path in candidates if path.exists()), None)


def tensor_sha256(tensor) -> str:
    import torch

    t = tensor.detach().contiguous().cpu()
    raw = t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()


def base_fingerprint(model, names, file_names: dict[str, str] | None = None) -> dict:
    """SHA-256 (and dtype) of each named parameter of ``model`` as it is now, i.e. the base's values
    when called before the first step. Keyed by ``file_names[name]`` when given (the names the
    base's checkpoint files use). Under ZeRO-3 the caller gathers the parameters first."""
    params = dict(model.named_parameters())
    file_names = file_names or {}
    return {"method": FINGERPRINT_METHOD,
            "tensors": {file_names.get(n, n): {"dtype": str(params[n].dtype).replace("torch.", ""),
                                               "sha256": tensor_sha256(params[n].data)} for n in sorted(names)}}


def optimizer_parameters(optimizer) -> list:
    """The model parameters an optimizer updates, through the wrappers a Trainer may add:
    accelerate's ``AcceleratedOptimizer`` (``.optimizer``) and DeepSpeed's ZeRO optimizers, whose
    ``param_groups`` hold flat fp32 partitions while ``bit16_groups`` (ZeRO-1/2) or
    ``fp16_groups`` (ZeRO-3) hold the model's own parameters."""
    inner = optimizer
    while inner is not None:
        for attr in ("bit16_groups", "fp16_groups"):
            groups = getattr(inner, attr, None)
            if groups:
                return [p for group in groups for p in group]
        inner = getattr(inner, "optimizer", None)
    return [p for group in optimizer.param_groups for p in group["params"]]


def check_optimizer(model, optimizer, expected_names) -> None:
    """Raise ``PlastError`` unless ``optimizer`` holds exactly the parameters named: an
    optimizer built before the freeze (over ``model.parameters()``) would train the whole model."""
    names = {id(p): n for n, p in model.named_parameters()}
    held = {names.get(id(p), "<not a parameter of the model>") for p in optimizer_parameters(optimizer)}
    expected = set(expected_names)
    if held != expected:
        extra, missing = sorted(held - expected), sorted(expected - held)
        raise PlastError(
            f"PLAST: the optimizer does not hold exactly the selected parameters ({len(extra)} extra, e.g. "
            f"{extra[:3]}; {len(missing)} missing, e.g. {missing[:3]}): refusing to train. Build the optimizer "
            f"after PLAST froze the model, from the parameters with requires_grad, or let the Trainer build it."
        )


def write_records(out: Path, model, selection, report, **record) -> None:
    """The selection (with what it trains) and the training record (``record``'s fields) in ``out``:
    the two files a resumed run and `plast export` read, alike for the LLaVA patch and PlastCallback."""
    out.mkdir(parents=True, exist_ok=True)
    selection.trainable = report.to_dict()
    selection.save(out / SELECTION_FILENAME)
    TrainingRecord(base_model=getattr(getattr(model, "config", None), "_name_or_path", None),
                   trainable=report.to_dict(), trainable_names=report.trainable_names, **record).save(out)
