"""The selection file `plast_layers.json`: one format from `plast select` to training, reports
and plots. Versioned; loading it for a model of another shape is an error."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from plast_plugin import __version__
from plast_plugin.atomic import write_text_atomic
from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json
from plast_plugin.core.statistics import LayerRecord
from plast_plugin.core.model_layout import MODULE_CHOICES, find_decoder_layers, model_architecture

SCHEMA = "plast-layers/1"
SELECTION_FILENAME = "plast_layers.json"
PLOT_FILENAME = "plast_layers.png"


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
    layers: list[LayerRecord] = field(default_factory=list)  # per-layer statistics (empty for a manual choice)
    trainable: dict[str, Any] = field(default_factory=dict)
    # Written by `plast ablate`: that an ablation of this selection was run, where, and its verdicts.
    ablation: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    created_by: str = f"plast-plugin {__version__}"

    def __post_init__(self):
        # Records given as the file's objects are typed here, once.
        self.layers = [r if isinstance(r, LayerRecord) else LayerRecord.from_dict(r) for r in self.layers]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = [record.to_dict() for record in self.layers]
        # Stable key order: identity and result first, the long per-layer table last.
        order = ["schema", "created_by", "model", "selected_layers", "rule", "trainable", "ablation", "options",
                 "data", "layers"]
        # A file without an ablation keeps exactly its former keys.
        return {key: out[key] for key in order if key != "ablation" or out[key]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a reader never sees a half-written file), with the user's umask.
        Undefined statistics (NaN) are written as null: JSON has no NaN."""
        text = json.dumps(_nan_to_none(self.to_dict()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        return write_text_atomic(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SelectionFile":
        """Load and validate strictly: types, ranges and duplicates, each error naming the field."""
        path, raw = _read_selection_json(path)

        def bad(field_name: str, problem: str) -> PlastError:
            return PlastError(
                f"selection file {path} is malformed: field {field_name!r} {problem}; fix the file or write it "
                f"again with `plast select`"
            )

        model = _checked_identity(raw.get("model"), bad)
        layers = _checked_selected_layers(raw.get("selected_layers"), model, bad)
        if not isinstance(raw.get("rule"), str):
            raise bad("rule", f"must be a string, got {_shown(raw.get('rule'))}")
        for key in ("options", "data", "trainable", "ablation"):
            if not isinstance(raw.get(key, {}), dict):
                raise bad(key, f"must be an object, got {_shown(raw.get(key))}")
        modules = raw.get("options", {}).get("modules", "layer")
        if modules not in MODULE_CHOICES:
            raise bad("options.modules", f"must be one of {', '.join(map(repr, MODULE_CHOICES))}, got {_shown(modules)}")
        records = raw.get("layers", [])
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise bad("layers", "must be a list of per-layer objects")
        typed = []
        for position, record in enumerate(records):
            try:
                typed.append(LayerRecord.from_dict(record))
            except ValueError as err:
                raise bad(f"layers[{position}]", str(err)) from None
        return cls(
            selected_layers=sorted(layers), model=model, rule=raw["rule"], options=raw.get("options", {}),
            data=raw.get("data", {}), layers=typed, trainable=raw.get("trainable", {}),
            ablation=raw.get("ablation", {}), schema=raw["schema"], created_by=str(raw.get("created_by", "unknown")),
        )

    def check_model(self, model_or_identity) -> None:
        """Raise if the file was made for a model of another shape."""
        other = (model_or_identity if isinstance(model_or_identity, ModelIdentity)
                 else ModelIdentity.of(model_or_identity))
        if self.model.shape() != other.shape():
            raise PlastError(
                f"selection file was made for {self.model.architecture} ({self.model.name_or_path}) with "
                f"{self.model.num_layers} layers, FFN width {self.model.ffn_width}, hidden size "
                f"{self.model.hidden_size}; this model ({other.architecture}, {other.name_or_path}) has "
                f"{other.num_layers} layers, FFN width {other.ffn_width}, hidden size {other.hidden_size}. "
                f"Run `plast select` on this model."
            )


    def check_identity(self, model_or_identity, *, name_or_path: str | None = None, also_named=()) -> list[str]:
        """The one check of every path that applies a selection to a model: a model of another
        shape is refused (:meth:`check_model`); one of the same shapes but another architecture
        or name gets the returned warnings. Same shapes do not prove the same model (vicuna-7b and
        llava-v1.5-7b, or an LLM and the LLaVA built on it), but a copy or conversion under
        another name is legitimate, so these warn rather than refuse. `name_or_path`: the name the
        user gave the model (default: its config's); `also_named`: other names of the same model
        (e.g. the checkpoint a converted folder was made from)."""
        other = (model_or_identity if isinstance(model_or_identity, ModelIdentity)
                 else ModelIdentity.of(model_or_identity, name_or_path))
        self.check_model(other)
        if name_or_path is not None:
            other = replace(other, name_or_path=str(name_or_path))
        warnings = []
        mine, theirs = self.model.architecture, other.architecture
        if _ARCHITECTURE_FAMILY.get(mine, mine) != _ARCHITECTURE_FAMILY.get(theirs, theirs):
            warnings.append(
                f"the selection was made on a {mine} ({self.model.name_or_path}) but is applied to a {theirs} "
                f"({other.name_or_path}); the shapes match, but layers selected on one model (e.g. the base "
                f"LLM) are not the language-specific layers of another (the LLaVA built on it): run `plast "
                f"select` on the model you train")
        names = {_name_key(n) for n in (other.name_or_path, *also_named) if n}
        if self.model.name_or_path and names and _name_key(self.model.name_or_path) not in names:
            warnings.append(
                f"the selection was made on {self.model.name_or_path!r} but is applied to {other.name_or_path!r}; "
                f"the shapes match, but the layers are only meaningful for the model they were selected on "
                f"(PLAST tunes the released LLaVA checkpoint it probed, e.g. liuhaotian/llava-v1.5-7b, not "
                f"the base LLM); a local copy under another name is fine")
        return warnings


# The official LLaVA classes and the transformers ports `plast export --to-hf` converts them to:
# one model under two class names, so they do not count as other architectures.
_ARCHITECTURE_FAMILY = {name: "LLaVA" for name in (
    "LlavaLlamaForCausalLM", "LlavaMistralForCausalLM", "LlavaForConditionalGeneration",
    "LlavaNextForConditionalGeneration")}


def _name_key(name: str) -> str:
    """What names one model: the last path part, letters and digits only, lower case
    ("liuhaotian/llava-v1.5-7b/" and "/ckpt/llava-v1.5-7b" are one model; "tinyvicuna" and
    "llava_tinyvicuna" are two), a hub cache snapshot folder by its repository's name."""
    parts = Path(str(name).rstrip("/")).parts
    for part in parts:
        if part.startswith("models--") and "snapshots" in parts:
            return "".join(ch for ch in part.rsplit("--", 1)[-1].lower() if ch.isalnum())
    return "".join(ch for ch in (parts[-1] if parts else "").lower() if ch.isalnum())


def _read_selection_json(path) -> tuple[Path, dict]:
    """The file (``plast_layers.json`` inside a folder) and its object, refused unless of this schema."""
    path = Path(path)
    if path.is_dir():
        path = path / SELECTION_FILENAME
    raw = read_json(path, "selection file", "create it with `plast select`")
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        found = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise PlastError(f"{path} is not a PLAST selection file of schema {SCHEMA!r} (found {found!r})")
    return path, raw


def _checked_identity(model_raw, bad) -> ModelIdentity:
    """The file's ``model`` object as a ModelIdentity; ``bad(field, problem)`` makes the error."""
    if not isinstance(model_raw, dict):
        raise bad("model", f"must be an object, got {_shown(model_raw)}")
    known = {f.name for f in fields(ModelIdentity)}
    unknown = sorted(set(model_raw) - known)
    if unknown:
        raise bad("model", f"has unknown key(s) {unknown}")
    if not isinstance(model_raw.get("architecture"), str):
        raise bad("model.architecture", f"must be a string, got {_shown(model_raw.get('architecture'))}")
    for key in ("num_layers", "ffn_width", "hidden_size"):
        if not _is_int(model_raw.get(key)) or model_raw[key] < 1:
            raise bad(f"model.{key}", f"must be a positive integer, got {_shown(model_raw.get(key))}")
    if model_raw.get("name_or_path") is not None and not isinstance(model_raw["name_or_path"], str):
        raise bad("model.name_or_path", f"must be a string or null, got {_shown(model_raw['name_or_path'])}")
    return ModelIdentity(**model_raw)


def _checked_selected_layers(layers, model: ModelIdentity, bad) -> list[int]:
    """``selected_layers``: distinct indices of layers the model has."""
    if not isinstance(layers, list) or not layers or not all(_is_int(i) for i in layers):
        raise bad("selected_layers", f"must be a non-empty list of integer layer indices, got {_shown(layers)}")
    out_of_range = [i for i in layers if not 0 <= i < model.num_layers]
    if out_of_range:
        raise bad("selected_layers", f"selects {layers}, not a non-empty subset of 0-{model.num_layers - 1} "
                  f"(layer(s) {out_of_range} do not exist; model.num_layers is {model.num_layers})")
    duplicates = sorted({i for i in layers if layers.count(i) > 1})
    if duplicates:
        raise bad("selected_layers", f"lists layer(s) {duplicates} more than once")
    return layers


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no layer index


def _shown(value) -> str:
    return f"{value!r} ({type(value).__name__})" if value is not None else "nothing (null or missing)"


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def load_selected_layers(path: str | os.PathLike, model) -> list[int]:
    """The file's layers for `model`: another shape refused, another name or architecture warned."""
    import warnings

    selection = SelectionFile.load(path)
    for warning in selection.check_identity(model):
        warnings.warn(f"{path}: {warning}", stacklevel=2)
    return list(selection.selected_layers)
