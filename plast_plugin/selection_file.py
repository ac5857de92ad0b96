"""The selection file `plast_layers.json`: one format from `plast select` to training, reports
and plots. Versioned; loading it for a model of another shape is an error."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .model_layout import find_decoder_layers, model_architecture

SCHEMA = "plast-layers/1"
SELECTION_FILENAME = "plast_layers.json"
PLOT_FILENAME = "plast_layers.png"


class SelectionMismatchError(ValueError):
    pass


class SelectionFileError(ValueError):
    pass


@dataclass
class ModelIdentity:
    architecture: str
    num_layers: int
    ffn_width: int
    hidden_size: int
    name_or_path: str | None = None

    @classmethod
    def of(cls, model, name_or_path: str | None = None) -> "ModelIdentity":
        layout = find_decoder_layers(model)
        if name_or_path is None:
            name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        return cls(model_architecture(model), layout.num_layers, layout.ffn_width, layout.hidden_size,
                   str(name_or_path) if name_or_path else None)

    def shape(self) -> tuple[int, int, int]:
        return (self.num_layers, self.ffn_width, self.hidden_size)


@dataclass
class SelectionFile:
    selected_layers: list[int]
    model: ModelIdentity
    rule: str
    options: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    trainable: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    created_by: str = f"plast-plugin {__version__}"

    def to_dict(self) -> dict:
        out = asdict(self)
        # Stable key order: identity and result first, the long per-layer table last.
        order = ["schema", "created_by", "model", "selected_layers", "rule", "trainable", "options", "data", "layers"]
        return {key: out[key] for key in order}

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a reader never sees a half-written file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
            tmp.write(text)
        os.replace(tmp.name, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SelectionFile":
        path = Path(path)
        if path.is_dir():
            path = path / SELECTION_FILENAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SelectionFileError(f"selection file {path} does not exist; create it with `plast select`") from None
        except json.JSONDecodeError as err:
            raise SelectionFileError(f"selection file {path} is not valid JSON: {err}") from None
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            found = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
            raise SelectionFileError(
                f"{path} is not a PLAST selection file of schema {SCHEMA!r} (found {found!r})"
            )
        try:
            model = ModelIdentity(**raw["model"])
            layers = [int(i) for i in raw["selected_layers"]]
            selection = cls(
                selected_layers=layers, model=model, rule=raw["rule"], options=raw.get("options", {}),
                data=raw.get("data", {}), layers=raw.get("layers", []), trainable=raw.get("trainable", {}),
                schema=raw["schema"], created_by=raw.get("created_by", "unknown"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise SelectionFileError(f"selection file {path} is malformed: {err!r}") from None
        bad = [i for i in layers if not 0 <= i < model.num_layers]
        if not layers or bad:
            raise SelectionFileError(
                f"selection file {path} selects {layers}, not a non-empty subset of 0-{model.num_layers - 1}"
            )
        return selection

    def check_model(self, model_or_identity) -> None:
        """Raise if the file was made for a model of another shape."""
        other = model_or_identity if isinstance(model_or_identity, ModelIdentity) else ModelIdentity.of(model_or_identity)
        if self.model.shape() != other.shape():
            raise SelectionMismatchError(
                f"selection file was made for {self.model.architecture} ({self.model.name_or_path}) with "
                f"{self.model.num_layers} layers, FFN width {self.model.ffn_width}, hidden size "
                f"{self.model.hidden_size}; this model ({other.architecture}, {other.name_or_path}) has "
                f"{other.num_layers} layers, FFN width {other.ffn_width}, hidden size {other.hidden_size}. "
                f"Run `plast select` on this model."
            )


def load_selected_layers(path: str | os.PathLike, model) -> list[int]:
    selection = SelectionFile.load(path)
    selection.check_model(model)
    return list(selection.selected_layers)
