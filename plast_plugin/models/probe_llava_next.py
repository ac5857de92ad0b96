"""Probing transformers' LLaVA-NeXT (`LlavaNextForConditionalGeneration`, llava-hf/llava-v1.6-*).

LLaVA-NeXT tiles each image ("anyres"), so the number of image features differs from image to
image: the prompt carries one placeholder token per image, and ``run`` widens it to as many
positions as the model's own ``get_image_features`` returns and splices the features in, as the
model's forward does. Feature positions take the placeholder's count flag (set only for
positions 'image' / 'all'); text tokens keep theirs.
"""

from __future__ import annotations

from typing import Callable

import torch

from plast_plugin.data.parallel_data import load_image
from plast_plugin.models.probe_inputs import PaddedBatch
from plast_plugin.models.probe_family import HFPortFamily, splice_image_tokens
from plast_plugin.errors import PlastError


def _per_image_features(output) -> list[torch.Tensor]:
    """``get_image_features`` returns a list of [features_i, hidden] tensors (transformers 4.5x) or
    an output object holding that list as ``pooler_output`` (5.x)."""
    features = getattr(output, "pooler_output", output)
    if isinstance(features, torch.Tensor) or not isinstance(features, (list, tuple)):
        raise PlastError(
            f"LLaVA-NeXT get_image_features returned {type(features).__name__}, not one feature tensor per "
            "image; this transformers version is not supported for probing with images (use images='off')"
        )
    return list(features)


class LlavaNextHFFamily(HFPortFamily):
    """transformers `LlavaNextForConditionalGeneration`: with images the multimodal body's
    ``get_image_features`` computes the tiled features."""

    name = "llava-next-hf"

    def image_ids(self) -> list[int]:
        self.check_image_probe("LLaVA-NeXT")
        return [self.image_token_id]  # one placeholder per image, widened in run()

    def run(self, batch: PaddedBatch, positions: str, set_mask: Callable[[torch.Tensor], None]) -> None:
        if all(image is None for image in batch.images):
            return super().run(batch, positions, set_mask)
        if any(image is None for image in batch.images):
            raise PlastError("a batch mixes questions with and without images")
        processed = self.image_processor([load_image(ref) for ref in batch.images], return_tensors="pt")
        config = self.model.config
        features = _per_image_features(self.multimodal_body.get_image_features(
            processed["pixel_values"].to(self.device, self.dtype), processed["image_sizes"].to(self.device),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        ))
        ids, attention_mask, position_ids, count_mask = splice_image_tokens(
            batch, self.image_token_id, [[self.image_token_id] * f.shape[0] for f in features], positions)
        is_image = (ids == self.image_token_id) & attention_mask.bool()
        embeds = self.multimodal_body.get_input_embeddings()(ids.masked_fill(is_image, 0).to(self.device))
        embeds[is_image.to(self.device)] = torch.cat(features).to(embeds.dtype)
        set_mask(count_mask)
        self.layout.backbone(inputs_embeds=embeds, attention_mask=attention_mask.to(self.device),
                             position_ids=position_ids.to(self.device), use_cache=False)
