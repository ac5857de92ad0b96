"""The text-only probe family and the pieces every image family shares.

A family turns a padded batch into a call of the decoder stack and reports the counted
positions. ``TextFamily`` is the base the image families extend; it lives apart from
``probe_models`` (which picks a family, LLaVA-NeXT's included) so that ``probe_llava_next`` can
extend it without importing the module that imports it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from plast_plugin.core.model_layout import DecoderLayout
from plast_plugin.errors import PlastError
from plast_plugin.models.probe_inputs import EncodedPrompt, PaddedBatch, encode_prompt, pad_rows


def splice_image_tokens(batch: PaddedBatch, image_token_id: int, expansions: list[list[int]], positions: str):
    """Each row's one image token (the placeholder) replaced by ``expansions[row]`` (the ids that
    stand for its image). Returns (input_ids, attention_mask, position_ids, count_mask), padded on the side the
    batch was padded on; position ids follow the real tokens as in ``pad_batch``. In an expansion
    the image-token positions keep the placeholder's count flag (set for positions 'image' and
    'all'); the other ids of an expansion (InternVL's ``<img>``, ``</img>``) are counted as the
    text around the image is: only for positions 'all'."""
    rows_ids, rows_count = [], []
    left_padded = bool((batch.attention_mask[:, 0] == 0).any())
    for row in range(batch.input_ids.shape[0]):
        real = batch.attention_mask[row].bool()
        ids = batch.input_ids[row][real].tolist()
        count = batch.count_mask[row][real].tolist()
        found = [i for i, token in enumerate(ids) if token == image_token_id]
        if len(found) != 1:
            raise PlastError(
                f"a probe prompt must hold exactly one image token (id {image_token_id}), found {len(found)}; does a "
                "question contain the model's image token as text (e.g. '<image>')?")
        at, expansion = found[0], expansions[row]
        flags = [count[at] if token == image_token_id else positions == "all" for token in expansion]
        rows_ids.append(ids[:at] + list(expansion) + ids[at + 1:])
        rows_count.append(count[:at] + flags + count[at + 1:])
    mask = pad_rows([[1] * len(ids) for ids in rows_ids], torch.long, left_padded)
    return (pad_rows(rows_ids, torch.long, left_padded), mask, (mask.cumsum(-1) - 1).clamp(min=0),
            pad_rows(rows_count, torch.bool, left_padded))


class TextFamily:
    """Any decoder used text-only (LLaMA, Qwen2, Gemma3, and LLaVA models without images)."""

    name = "text"
    supports_images = False

    def __init__(self, model: nn.Module, layout: DecoderLayout, image_processor=None):
        self.model, self.layout = model, layout
        param = next(p for p in model.parameters() if p.dtype.is_floating_point)
        self.device, self.dtype = param.device, param.dtype

    def image_ids(self) -> list[int] | None:
        return None

    def encode(self, tokenizer, question: str, **options) -> EncodedPrompt:
        """One question as the probe feeds it (``probe_inputs.encode_prompt``'s arguments): LLaVA's
        conversation or the plain prompt; families with a processor render their chat template."""
        return encode_prompt(tokenizer, question, **options)

    def run(self, batch: PaddedBatch, positions: str, set_mask: Callable[[torch.Tensor], None]) -> None:
        set_mask(batch.count_mask)
        self.layout.backbone(
            input_ids=batch.input_ids.to(self.device),
            attention_mask=batch.attention_mask.to(self.device),
            position_ids=batch.position_ids.to(self.device),
            use_cache=False,
        )


class HFPortFamily(TextFamily):
    """A transformers LLaVA port (llava-hf, LLaVA-NeXT): text-only questions go straight to the
    language model; with images its multimodal body runs, which is None before transformers 4.52
    (where images expand only inside forward())."""

    supports_images = True

    def __init__(self, model, layout, image_processor=None):
        super().__init__(model, layout)
        config, body = model.config, getattr(model, "model", None)
        self.image_processor = image_processor
        self.image_token_id = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
        self.multimodal_body = body if callable(getattr(body, "get_image_features", None)) else None

    def check_image_probe(self, what: str) -> None:
        """Refuse probing with images where it cannot be done."""
        if self.multimodal_body is None:
            raise PlastError(
                f"probing {what} with images needs transformers >= 4.52; use images='off' "
                "or run `plast select` in the evaluation environment"
            )
        if self.image_processor is None:
            raise PlastError(f"pass the model's image processor to probe {what} with images")
