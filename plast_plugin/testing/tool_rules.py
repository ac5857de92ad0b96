"""How each training tool turns an exported setting into the set of parameters it trains, restated
from the tools' own sources (none of the tools is in the project's environments), so tests can apply
`plast export-config` output to a model's names exactly as the tool would. Pure `re`, no torch.

- axolotl: ``LayerNamePattern`` (axolotl/utils/freeze.py) makes each '.' not followed by '+' a literal
  dot and ``re.match``-es ``named_parameters()``.
- ms-swift: ``activate_parameters`` ``re.search``-es one regex.
- plain regexes: anchored at both ends, so ``re.fullmatch``, ``re.match`` and ``re.search`` agree.
- LLaMA-Factory 0.9.5: ``_setup_freeze_tuning`` (llamafactory/model/adapter.py) trains every parameter
  whose name contains ``.{index}.{module}`` and none of the ``get_forbidden_modules`` substrings, which
  come from ``COMPOSITE_MODELS[model_type]`` (llamafactory/model/model_utils/visual.py).
- lmms-engine 0.1.4: ``TrainRunner.run`` (lmms_engine/train/runner.py) splits each ``freeze_modules``
  entry on '.', walks it from the model with ``getattr(o, k, None)``, and sets ``requires_grad = False``
  on every parameter of what it reaches (skipping None); everything else stays trainable.
"""
from __future__ import annotations

import re
from functools import reduce

# LLaMA-Factory 0.9.5 COMPOSITE_MODELS: (vision_model_keys, projector_keys) of the model types the
# tests build; llava_onevision has no entry there.
LLAMAFACTORY_COMPOSITE = {
    "llava": (["vision_tower"], ["multi_modal_projector"]),
    "llava_next": (["vision_tower"], ["multi_modal_projector"]),
    "internvl": (["vision_tower"], ["multi_modal_projector"]),
    "qwen2_5_vl": (["visual.patch_embed", "visual.blocks"], ["visual.merger"]),
    "qwen3_vl": (["visual.pos_embed", "visual.patch_embed", "visual.blocks", "visual.deepstack_merger_list"],
                 ["visual.merger"]),
}


def axolotl_trains(patterns, names):
    compiled = [re.compile(re.sub(r"\.(?!\+)", "\\.", p)) for p in patterns]  # axolotl's LayerNamePattern
    return {n for n in names if any(c.match(n) for c in compiled)}


def swift_trains(pattern, names):
    compiled = re.compile(pattern)  # ms-swift activate_parameters: re.search over named_parameters
    return {n for n in names if compiled.search(n)}


def regex_trains(patterns, names):
    hits = {n for n in names if any(re.fullmatch(p, n) for p in patterns)}
    # Anchored both ends: match and search agree with fullmatch.
    assert hits == {n for n in names if any(re.search(p, n) for p in patterns)}
    return hits


# The tools whose exported setting expresses any selection exactly.
EXACT_TOOLS = ("axolotl", "swift", "regex")


def exact_tool_trains(tool: str, exported: str, names) -> set:
    """What ``tool`` (one of ``EXACT_TOOLS``) trains of ``names`` given the text `plast export-config --for
    tool` wrote: axolotl's YAML ``unfrozen_parameters``, ms-swift's single regex line, a regex per line."""
    if tool == "axolotl":
        import yaml

        return axolotl_trains(yaml.safe_load(exported)["unfrozen_parameters"], names)
    if tool == "swift":
        assert len(exported.strip().splitlines()) == 1, "ms-swift takes one regex"
        return swift_trains(exported.strip(), names)
    if tool == "regex":
        return regex_trains(exported.split(), names)
    raise ValueError(f"{tool!r} is not one of {EXACT_TOOLS}")


def llamafactory_trains(config, names, num_layers, model_type=None):
    """``model_type``: the model's config.model_type (None: a plain causal LM, no composite entry)."""
    count = config["freeze_trainable_layers"]
    ids = range(max(0, num_layers - count), num_layers) if count > 0 else range(min(-count, num_layers))
    module = config["freeze_trainable_modules"]
    trainable = [".{:d}.{}".format(i, module if module != "all" else "") for i in ids]
    forbidden = set()
    if model_type in LLAMAFACTORY_COMPOSITE:
        assert config["freeze_vision_tower"] is True and config["freeze_multi_modal_projector"] is True
        vision_keys, projector_keys = LLAMAFACTORY_COMPOSITE[model_type]
        forbidden = set(vision_keys) | set(projector_keys)
    return {n for n in names if any(t in n for t in trainable) and not any(f in n for f in forbidden)}


def lmms_engine_trains(freeze_modules, model):
    """The names of ``model.named_parameters()`` left trainable by lmms-engine's freezing, on a model
    whose parameters all start trainable. Every entry must reach something: lmms-engine skips one that
    does not, silently, which would leave its parameters trained."""
    frozen = set()
    for entry in freeze_modules or []:
        reached = reduce(lambda o, k: getattr(o, k, None), entry.split("."), model)
        assert reached is not None, f"freeze_modules entry {entry!r} reaches nothing in {type(model).__name__}"
        frozen |= {id(p) for p in reached.parameters()}  # a Parameter here would raise, as in lmms-engine
    return {n for n, p in model.named_parameters() if id(p) not in frozen}
