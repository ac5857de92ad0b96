"""A PLAST selection as the settings other trainers read: axolotl, ms-swift, LLaMA-Factory, lmms-engine,
plain regexes.

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
  Its ``freeze_vision_tower`` / ``freeze_multi_modal_projector`` exclude name substrings listed per
  ``model_type`` (``COMPOSITE_MODELS``, llamafactory 0.9.5 ``model/model_utils/visual.py``); a vision model
  without an entry there (LLaVA-OneVision) would also train its vision encoder's layers of those indices,
  so it is refused.
- lmms-engine ``trainer_args.freeze_modules`` (lmms-engine 0.1.4, ``TrainRunner.run`` in
  ``lmms_engine/train/runner.py``): each entry is split on ``.`` and walked from the model with
  ``getattr`` (a step that does not exist gives None and the entry is skipped, silently), and every
  parameter of the module it reaches is frozen; nothing else is frozen. So the list names the largest
  modules holding no PLAST parameter. A parameter held directly by a module that also holds trained
  ones (LLaVA-OneVision's ``model.image_newline``) cannot be named: refused, or with ``approximate=True``
  left trainable, loudly.
- plain regexes: anchored at both ends (``re.fullmatch``, ``re.match`` and ``re.search`` agree).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from plast_plugin.errors import PlastError
from plast_plugin.core.freeze import plast_parameter_names
from plast_plugin.core.model_layout import MODULE_PARTS, find_decoder_layers, model_architecture
from plast_plugin.core.selection_file import SelectionFile
from plast_plugin.trainers.tools import TOOLS

# The kinds LLaMA-Factory knows as composite models (COMPOSITE_MODELS keys llava, llava_next, qwen2_5_vl,
# qwen3_vl, internvl), whose vision tower and projector its two flags keep frozen.
LLAMAFACTORY_COMPOSITE_KINDS = ("llava-hf", "llava-next-hf", "qwen2.5-vl", "qwen3-vl", "internvl-hf")


@dataclass
class TargetModel:
    """The names the training tool will see: built on the meta device from the model's config."""
    name: str
    kind: str  # checkpoint_kind: llava-hf | llava-next-hf | causal-lm | a vision-language family
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
    if tool == "lmms-engine":
        return _lmms_engine(target, plast_parameter_names(target.model, layers, modules), layers, header, approximate)
    return _llamafactory(target, layers, modules, header, approximate)


def freeze_modules_for(model, trained: set[str]) -> tuple[list[str], list[str]]:
    """(module paths, parameter names): the largest modules of ``model`` holding no parameter of
    ``trained`` (names as in ``named_parameters()``), in module order, and the untrained parameters
    no module path can reach (held directly by a module that also holds trained ones)."""
    trained_ids = {id(p) for name, p in model.named_parameters() if name in trained}
    paths: list[str] = []
    unreachable: list[str] = []

    def visit(module, prefix: str) -> None:
        params = list(module.parameters())
        if not params or all(id(p) in trained_ids for p in params):
            return  # nothing to freeze below here
        if not any(id(p) in trained_ids for p in params):
            paths.append(prefix)
            return
        unreachable.extend(f"{prefix}{'.' if prefix else ''}{name}" for name, p in module.named_parameters(recurse=False)
                           if id(p) not in trained_ids)
        for name, child in module.named_children():
            visit(child, f"{prefix}{'.' if prefix else ''}{name}")

    visit(model, "")
    return paths, unreachable


def _lmms_engine(target, trained: set[str], layers, header, approximate) -> ExportedConfig:
    paths, unreachable = freeze_modules_for(target.model, trained)
    warning = None
    if unreachable:
        explain = (f"lmms-engine's freeze_modules freezes whole modules, and {', '.join(unreachable)} "
                   f"{'is a parameter' if len(unreachable) == 1 else 'are parameters'} of a module that also holds "
                   f"the trained layers")
        if not approximate:
            raise PlastError(f"{explain}, so no freeze_modules list leaves exactly the selection trainable. Use --for "
                             f"axolotl, --for swift or --for regex (exact), or pass --approximate to leave "
                             f"{', '.join(unreachable)} trainable too")
        warning = (f"APPROXIMATION: {explain}; this list leaves {', '.join(unreachable)} trainable besides the PLAST "
                   f"selection. That is not exactly the PLAST selection.")
    lines = header + ([f"# WARNING {warning}"] if warning else []) + [
        "# lmms-engine: merge into the trainer_args of your config YAML (every module but the selection is frozen)",
        "trainer_args:",
        "  freeze_modules:",
    ] + [f"    - {_quoted(path)}" for path in paths]
    return ExportedConfig("lmms-engine", "\n".join(lines) + "\n", layers, warning)


def _llamafactory(target, layers, modules, header, approximate) -> ExportedConfig:
    if target.kind not in LLAMAFACTORY_COMPOSITE_KINDS and target.kind != "causal-lm":
        raise PlastError(
            f"LLaMA-Factory (0.9.5) has no composite-model entry for model_type "
            f"{getattr(target.model.config, 'model_type', target.kind)!r}, so freeze_vision_tower does not apply and "
            f"freeze_trainable_layers would also train the vision encoder's layers of the same indices. Use --for "
            f"axolotl, --for swift, --for regex or --for lmms-engine (exact)")
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
    if target.kind in LLAMAFACTORY_COMPOSITE_KINDS:
        # LLaMA-Factory trains every parameter whose name contains '.{index}.': vision tower layers
        # too, unless these keep the tower and projector frozen.
        lines += ["freeze_vision_tower: true", "freeze_multi_modal_projector: true", "freeze_language_model: false"]
    return ExportedConfig("llamafactory", "\n".join(lines) + "\n", trained, warning)
