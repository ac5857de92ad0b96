"""Every option of the PLAST method, with its default.

The paper's exact formulas are not public (see docs/method.md); each choice below is a named,
documented reconstruction, and the selection file records the options that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from plast_plugin.errors import PlastError

RULE_HELP = (
    "How layers are chosen. 'auto' = 'msd-above-mean' (layers whose MSD exceeds the mean MSD over "
    "all layers; then the shallow block, see contiguous_shallow); 'msd-above:X' (fixed MSD threshold); 'msd-top:K' (the K layers of largest MSD); "
    "'msd-above-max:F' (MSD >= F * max MSD); or a manual spec: '0-4', '1,3,5', and the ablations "
    "'first:K', 'last:K', 'random:K' (seeded by --seed)."
)


@dataclass
class SelectionOptions:
    rule: str = field(default="auto", metadata={"help": RULE_HELP})
    statistic: str = field(
        default="overlap",
        metadata={"help": "What MSD is computed on: 'overlap' (1 - overlap ratio with the pivot; scale-free, "
                  "so layers of different activation density compare fairly), 'rate' (per-neuron activation "
                  "rate, averaged over neurons; grows with a layer's activation density), 'count' (fraction "
                  "of the FFN in the activated set)."},
    )
    msd_reference: str = field(
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
    overlap_denominator: str = field(
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
    positions: str = field(
        default="question",
        metadata={"help": "Token positions whose activations are counted: 'question' (the question's "
                  "text tokens), 'all' (every non-padding token, system prompt and image included), "
                  "'image' (image tokens only; needs images)."},
    )
    images: str = field(
        default="auto",
        metadata={"help": "'auto' uses the questions' images when the data has them and the model has a "
                  "vision tower; 'on' requires them; 'off' probes text only."},
    )
    prompt: str = field(
        default="llava",
        metadata={"help": "'llava': the LLaVA conversation (--conv-template) around the question; 'plain': "
                  "BOS + question."},
    )
    conv_template: str = field(
        default="v1",
        metadata={"help": "LLaVA conversation template of prompt='llava', named as in llava.conversation: "
                  "'v1' (= 'vicuna_v1', \"curious user\"; LLaVA-1.5's --version v1, what training and "
                  "`plast export --to-hf` use) or 'llava_v1' (\"curious human\")."},
    )
    modules: str = field(
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SelectionOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlastError(f"unknown selection options {unknown}; known: {sorted(known)}")
        return cls(**data)

    def validate(self) -> "SelectionOptions":
        choices = {
            "statistic": ("rate", "count", "overlap"),
            "msd_reference": ("pivot", "variance"),
            "overlap_denominator": ("pivot", "language", "jaccard"),
            "positions": ("question", "all", "image"),
            "images": ("auto", "on", "off"),
            "prompt": ("llava", "plain"),
            "conv_template": ("v1", "vicuna_v1", "llava_v1"),
            "modules": ("layer", "mlp", "attn"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise PlastError(f"option {name}={value!r} is not one of: {', '.join(allowed)}")
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
        from plast_plugin.core.selection import check_rule

        check_rule(self.rule, None, self.seed)  # its shape and numbers now; the layer range once a model is known
        return self
