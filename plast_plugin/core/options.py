"""Every option of the PLAST method, with its default.

The paper's exact formulas are not public (see docs/method.md); each choice below is a named,
documented reconstruction, and the selection file records the options that produced it.

`SelectionOptions` is validated when it is built (`__post_init__`, as peft's `LoraConfig`), and
frozen: an invalid options object cannot exist, whether made by a constructor, `from_dict`,
`dataclasses.replace` or the CLI. The rule is parsed there once (`selection_rule`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Literal

from plast_plugin.errors import PlastError
from plast_plugin.core.model_layout import ModuleChoice
from plast_plugin.core.rule import SelectionRule

Statistic = Literal["rate", "count", "overlap"]
MsdReference = Literal["pivot", "variance"]
OverlapDenominator = Literal["pivot", "language", "jaccard"]
Positions = Literal["question", "all", "image"]
Images = Literal["auto", "on", "off"]
PromptStyle = Literal["llava", "plain"]
ConvTemplate = Literal["v1", "vicuna_v1", "llava_v1"]
_KINDS = {bool: "true or false", int: "a whole number", str: "a string"}  # how a wrong type is refused

RULE_HELP = (
    "How layers are chosen. 'auto' = 'msd-above-mean' (layers whose MSD exceeds the mean MSD over "
    "all layers; then the shallow block, see contiguous_shallow); 'msd-above:X' (fixed MSD threshold); 'msd-top:K' (the K layers of largest MSD); "
    "'msd-above-max:F' (MSD >= F * max MSD); or a manual spec: '0-4', '1,3,5', and the ablations "
    "'first:K', 'last:K', 'random:K' (seeded by --seed)."
)


@dataclass(frozen=True)
class SelectionOptions:
    rule: str = field(default="auto", metadata={"help": RULE_HELP})
    statistic: Statistic = field(
        default="overlap",
        metadata={"help": "What MSD is computed on: 'overlap' (1 - overlap ratio with the pivot; scale-free, "
                  "so layers of different activation density compare fairly), 'rate' (per-neuron activation "
                  "rate, averaged over neurons; grows with a layer's activation density), 'count' (fraction "
                  "of the FFN in the activated set)."},
    )
    msd_reference: MsdReference = field(
        default="pivot",
        metadata={"help": "'pivot': mean squared deviation of each language from the pivot; 'variance': "
                  "variance across all languages, pivot included."},
    )
    activated_set: str = field(
        default="top:0.1",
        metadata={"help": "Which neurons count as activated for a language: 'top:F' (rate above the "
                  "(1-F) quantile of the rates of all languages pooled, per layer: one threshold shared "
                  "by all languages; rates tied at the layer's maximum count when the quantile reaches it) or 'rate:T' (activation rate above T)."},
    )
    overlap_denominator: OverlapDenominator = field(
        default="pivot",
        metadata={"help": "Overlap ratio R = |A_L & A_pivot| / |A_pivot| ('pivot'), / |A_L| ('language'), "
                  "or Jaccard |A_L & A_pivot| / |A_L | A_pivot| ('jaccard')."},
    )
    contiguous_shallow: bool = field(
        default=True,
        metadata={"help": "After the rule, keep only the contiguous block of selected layers that starts at "
                  "the shallowest selected layer (the paper finds the language-specific layers shallow; deep "
                  "layers that also differ by language are shown in the statistics but not trained). "
                  "Off: every layer the rule selects."},
    )
    positions: Positions = field(
        default="question",
        metadata={"help": "Token positions whose activations are counted: 'question' (the question's "
                  "text tokens), 'all' (every non-padding token, system prompt and image included), "
                  "'image' (image tokens only; needs images)."},
    )
    images: Images = field(
        default="auto",
        metadata={"help": "'auto' uses the questions' images when the data has them and the model has a "
                  "vision tower; 'on' requires them; 'off' probes text only."},
    )
    prompt: PromptStyle = field(
        default="llava",
        metadata={"help": "'llava': the model's conversation around the question: LLaVA's (--conv-template), "
                  "or for Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and InternVL their processor's chat template; "
                  "'plain': BOS + question (after the image token and a newline when images are used)."},
    )
    conv_template: ConvTemplate = field(
        default="v1",
        metadata={"help": "LLaVA conversation template of prompt='llava', named as in llava.conversation: "
                  "'v1' (= 'vicuna_v1', \"curious user\"; LLaVA-1.5's --version v1, what training and "
                  "`plast export --to-hf` use) or 'llava_v1' (\"curious human\")."},
    )
    modules: ModuleChoice = field(
        default="layer",
        metadata={"help": "What of each selected layer is trained: 'layer' (attention + FFN + norms), "
                  "'mlp' (FFN only, SLAM style), 'attn' (attention only)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed for 'random:K' and the pivot split."})
    batch_size: int = field(
        default=0,
        metadata={"help": "Questions per forward pass while probing; 0: 8 on a CPU, 32 on a GPU."},
    )
    max_question_tokens: int = field(
        default=256, metadata={"help": "Longer questions are truncated to this many tokens."}
    )

    def __post_init__(self):
        hints = typing.get_type_hints(SelectionOptions)  # the annotations are strings here
        for option in fields(self):
            value, kind = getattr(self, option.name), hints[option.name]
            if typing.get_origin(kind) is Literal:
                allowed = typing.get_args(kind)
                if value not in allowed:
                    raise PlastError(f"option {option.name}={value!r} is not one of: {', '.join(allowed)}")
            elif kind in _KINDS and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise PlastError(f"option {option.name}={value!r} must be {_KINDS[kind]}")
        kind, _, value = self.activated_set.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if kind not in ("top", "rate") or not 0.0 < number < 1.0:
            raise PlastError(f"option activated_set={self.activated_set!r}: use 'top:F' or 'rate:T' with 0 < F, T < 1")
        if self.batch_size < 0 or self.max_question_tokens < 1:
            raise PlastError("batch_size must be >= 0 (0: by device) and max_question_tokens positive")
        if self.positions == "image" and self.images == "off":
            raise PlastError("positions='image' counts image tokens, but images='off'")
        # Parsed once, here: its shape and numbers now; the layer range once a model is known.
        object.__setattr__(self, "_selection_rule", SelectionRule.parse(self.rule))

    @property
    def selection_rule(self) -> SelectionRule:
        return self._selection_rule

    def to_dict(self) -> dict:
        return {option.name: getattr(self, option.name) for option in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SelectionOptions":
        """Options from a dict such as a selection file's "options" (validated like any other)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlastError(f"unknown selection options {unknown}; known: {sorted(known)}")
        return cls(**data)
