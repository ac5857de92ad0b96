"""A PLAST selection as the settings other trainers read: axolotl, ms-swift, LLaMA-Factory, plain regexes.

Each tool matches parameter names of the model it loads, and llava-hf / LLaVA-NeXT names depend on
the transformers line (``language_model.model.layers.N.`` up to 4.51, ``model.language_model.layers.N.``
from 4.52, 5.x included). So the names come from the target model, built on the meta device (no
weights) by the transformers installed here: run the export in the environment you train in.
How each tool applies them (read in their sources):

- axolotl ``unfrozen_parameters``: each entry, with every ``.`` not followed by ``+`` made a literal
  dot, is ``re.match``-ed against ``model.named_parameters()``: plain dots, no ``.*`` wildcard.
- ms-swift ``--trainable_parameters_regex`` (with ``--freeze_parameters_ratio 1``): one regex, ``re.search``-ed.
- LLaMA-Factory ``freeze_trainable_layers: N`` trains the last N decoder layers, ``-N`` the first N: each
  parameter whose name holds ``.{index}.{module}`` outside the frozen vision tower and projector. Any
  other layer set is refused, or with ``approximate=True`` widened to the smallest such block, loudly.
- plain regexes: anchored at both ends (``re.fullmatch``, ``re.match`` and ``re.search`` agree).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from plast_plugin.errors import PlastError
from plast_plugin.core.freeze import plast_parameter_names
from plast_plugin.core.model_layout import MODULE_PARTS, find_decoder_layers, model_architecture
from plast_plugin.core.selection_file import SelectionFile

TOOLS = ("axolotl", "swift", "llamafactory", "regex")


@dataclass
class TargetModel:
    """The names the training tool will see: built on the meta device from the model's config."""
    name: str
    kind: str  # checkpoint_kind: llava-hf | llava-next-hf | causal-lm
    model: object  # the meta-device model (no weights)
    transformers_version: str
    architecture: str

    @property
    def layers_path(self) -> str:  # e.g. "model.language_model.layers"
        return find_decoder_layers(self.model).path

    @property
    def num_layers(self) -> int:
        return find_decoder_layers(self.model).num_layers


def build_target_model(name_or_path: str, revision: str | None = None) -> TargetModel:
    """The model's module tree with this environment's transformers, without loading weights."""
    import torch
    import transformers
    from transformers import AutoConfig

    from plast_plugin.models.model_source import HF_MODEL_CLASSES, checkpoint_kind, local_dir, read_config

    kind = checkpoint_kind(read_config(name_or_path, revision))
    if kind == "official-llava":
        raise PlastError(
            f"{name_or_path} is an official LLaVA checkpoint (model_type llava_*): axolotl, ms-swift and "
            f"LLaMA-Factory load transformers' ports; convert it first (`plast export {name_or_path} --to-hf "
            f"--out DIR`) and export the config for DIR"
        )
    if not hasattr(transformers, HF_MODEL_CLASSES[kind]):
        raise PlastError(f"{name_or_path}: transformers {transformers.__version__} has no {HF_MODEL_CLASSES[kind]}; "
                         f"export the config in the environment you train in")
    config = AutoConfig.from_pretrained(str(local_dir(name_or_path, revision)))
    model_class = getattr(transformers, HF_MODEL_CLASSES[kind])
    with torch.device("meta"):
        model = model_class.from_config(config) if kind == "causal-lm" else model_class(config)
    find_decoder_layers(model)  # an unsupported architecture is refused here, before any config is written
    return TargetModel(name_or_path, kind, model, transformers.__version__, model_architecture(model))


@dataclass
class ExportedConfig:
    tool: str
    text: str  # what to write to the file / print
    trained_layers: list[int]  # what the tool will train (may be wider than the selection)
    warning: str | None = None  # set when the tool trains more than the selection (approximation)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"  # YAML single-quoted scalar


def export_config(selection: SelectionFile, target: TargetModel, tool: str, *, modules: str | None = None,
                  approximate: bool = False) -> ExportedConfig:
    if tool not in TOOLS:
        raise PlastError(f"--for {tool!r}: use one of {', '.join(TOOLS)}")
    selection.check_model(target.model)
    modules = modules or selection.options.get("modules") or "layer"
    layers = sorted(selection.selected_layers)
    plast_parameter_names(target.model, layers, modules)  # raises when nothing would be trained
    sub = MODULE_PARTS[modules]
    sub_dots = f"{sub}." if sub else ""
    header = [
        f"# PLAST selection: decoder layers {list(selection.selected_layers)} (modules={modules}) of "
        f"{selection.model.name_or_path or selection.model.architecture}",
        f"# parameter names of {target.architecture} ({target.name}) as transformers {target.transformers_version} "
        f"names them: {target.layers_path}.N.",
    ]
    if tool == "axolotl":
        # Plain dots: axolotl turns each '.' into a literal dot itself (a '\.' here would break).
        patterns = [f"^{target.layers_path}.{i}.{sub_dots}" for i in layers]
        text = "\n".join(header + ["unfrozen_parameters:"] + [f"  - {_quoted(p)}" for p in patterns]) + "\n"
        return ExportedConfig(tool, text, layers)
    escaped = re.escape(target.layers_path)
    if tool == "swift":
        alternation = "|".join(map(str, layers))
        return ExportedConfig(tool, rf"^{escaped}\.(?:{alternation})\.{re.escape(sub_dots)}" + "\n", layers)
    if tool == "regex":
        patterns = [rf"^{escaped}\.{i}\.{re.escape(sub_dots)}.+$" for i in layers]
        return ExportedConfig(tool, "\n".join(patterns) + "\n", layers)
    return _llamafactory(target, layers, modules, header, approximate)


def _llamafactory(target, layers, modules, header, approximate) -> ExportedConfig:
    n = target.num_layers
    first, last = list(range(len(layers))), list(range(n - len(layers), n))
    warning = None
    if layers == first:
        count, trained = -len(layers), layers
    elif layers == last:
        count, trained = len(layers), layers
    else:
        cover_first, cover_last = max(layers) + 1, n - min(layers)
        count = -cover_first if cover_first <= cover_last else cover_last
        trained = list(range(cover_first)) if count < 0 else list(range(n - cover_last, n))
        block = f"the first {cover_first}" if count < 0 else f"the last {cover_last}"
        explain = (f"LLaMA-Factory's freeze_trainable_layers trains only the first N or the last N decoder layers; "
                   f"the selection {layers} of {n} layers is neither")
        if not approximate:
            raise PlastError(
                f"{explain}. Use --for axolotl, --for swift or --for regex (exact), or pass --approximate to train "
                f"{block} layers ({len(trained) - len(layers)} more than selected: "
                f"{sorted(set(trained) - set(layers))})")
        warning = (f"APPROXIMATION: {explain}; this config trains {block} layers {trained[0]}-{trained[-1]}, "
                   f"{len(trained) - len(layers)} layers more than PLAST selected "
                   f"({sorted(set(trained) - set(layers))}). That is not the PLAST selection.")
    lines = header + ([f"# WARNING {warning}"] if warning else []) + [
        "finetuning_type: freeze",
        f"freeze_trainable_layers: {count}",
        # LLaMA-Factory names a layer's sub-modules as the model does, and the whole layer "all".
        f"freeze_trainable_modules: {MODULE_PARTS[modules] or 'all'}",
    ]
    if target.kind in ("llava-hf", "llava-next-hf"):
        # LLaMA-Factory trains every parameter whose name contains '.{index}.': vision tower layers
        # too, unless these keep the tower and projector frozen.
        lines += ["freeze_vision_tower: true", "freeze_multi_modal_projector: true", "freeze_language_model: false"]
    return ExportedConfig("llamafactory", "\n".join(lines) + "\n", trained, warning)
