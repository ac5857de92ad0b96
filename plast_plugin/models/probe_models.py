"""How each supported model family is run for the probe (duck-typed: no LLaVA import).

Each family sets the mask of counted positions *in the sequence the decoder sees* (for the
official LLaVA one image token becomes hundreds of features) and runs the decoder stack only:
the probe needs the FFN activations, not the LM head.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from plast_plugin.core.model_layout import DecoderLayout, model_architecture
from plast_plugin.data.parallel_data import load_image
from plast_plugin.models.probe_family import HFPortFamily, TextFamily
from plast_plugin.models.probe_inputs import PaddedBatch
from plast_plugin.models.probe_llava_next import LlavaNextHFFamily
from plast_plugin.models.probe_processor import ProcessorFamily, is_processor_family
from plast_plugin.errors import PlastError

LLAVA_IMAGE_TOKEN_INDEX = -200  # llava.constants.IMAGE_TOKEN_INDEX
LLAVA_IGNORE_INDEX = -100  # llava.constants.IGNORE_INDEX


def expand2square(image, background: tuple[int, ...]):
    """LLaVA-1.5's padding to a square (``llava.mm_utils.expand2square``): the image centred on
    a canvas of the background colour, nothing cropped."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def llava_pixel_values(images: list, image_processor, image_aspect_ratio: str | None) -> torch.Tensor:
    """Pixel values as LLaVA's ``process_images`` makes them: for ``image_aspect_ratio`` ``pad``
    (LLaVA-1.5) each image padded to a square with the processor's mean colour first."""
    if image_aspect_ratio == "pad":
        background = tuple(int(x * 255) for x in image_processor.image_mean)
        return torch.stack([image_processor.preprocess(expand2square(img, background), return_tensors="pt")
                            ["pixel_values"][0] for img in images])
    if image_aspect_ratio not in (None, "", "square"):
        raise PlastError(
            f"image_aspect_ratio {image_aspect_ratio!r} (e.g. LLaVA-NeXT's anyres) is not supported by the "
            "probe; use images='off'")
    return image_processor.preprocess(images, return_tensors="pt")["pixel_values"]


class PixelCache:
    """Preprocessed pixels per image reference, so each image is decoded and preprocessed once for
    all languages, not once per language (docs/benchmarks.md). ``make_batches`` puts the batches
    that share images next to each other, so keeping the last two batches' images (``2 x`` the
    largest batch) is enough: memory does not grow with the data."""

    def __init__(self, preprocess: Callable[[list], torch.Tensor]):
        self._preprocess = preprocess  # list of PIL images -> [N, 3, H, W]
        self._entries: OrderedDict[str, tuple[torch.Tensor, tuple[int, int]]] = OrderedDict()
        self.capacity = 0
        self.decoded = 0  # images decoded and preprocessed so far (for tests and benchmarks)

    def get(self, refs: list[str]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Pixels [len(refs), 3, H, W] and the original (width, height) of each image."""
        self.capacity = max(self.capacity, 2 * len(refs))
        missing = list(dict.fromkeys(ref for ref in refs if ref not in self._entries))
        if missing:
            images = [load_image(ref) for ref in missing]
            pixels = self._preprocess(images)
            self.decoded += len(missing)
            for ref, image, row in zip(missing, images, pixels):
                self._entries[ref] = (row, image.size)
        for ref in refs:
            self._entries.move_to_end(ref)
        rows = [self._entries[ref] for ref in refs]
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return torch.stack([row for row, _ in rows]), [size for _, size in rows]


class LlavaOfficialFamily(TextFamily):
    """haotian-liu/LLaVA `LlavaLlamaForCausalLM` (and LLaVA-NeXT): the image is one id (-200)
    in the text, expanded into features by `prepare_inputs_labels_for_multimodal`."""

    name = "llava"
    supports_images = True

    def __init__(self, model, layout, image_processor=None):
        super().__init__(model, layout)
        tower = model.get_vision_tower()
        self.image_processor = image_processor or getattr(tower, "image_processor", None)
        if self.image_processor is None:
            raise PlastError("the LLaVA model's vision tower has no image processor; pass one")
        aspect = getattr(model.config, "image_aspect_ratio", None)
        # LLaVA's own preprocessing (pad to square for LLaVA-1.5), once per image for all languages.
        self.pixels = PixelCache(lambda images: llava_pixel_values(images, self.image_processor, aspect))

    def image_ids(self) -> list[int]:
        return [LLAVA_IMAGE_TOKEN_INDEX]

    def run(self, batch: PaddedBatch, positions: str, set_mask: Callable[[torch.Tensor], None]) -> None:
        if all(image is None for image in batch.images):
            return super().run(batch, positions, set_mask)
        if any(image is None for image in batch.images):
            raise PlastError("a batch mixes questions with and without images")
        pixels, sizes = self.pixels.get(batch.images)
        # The text positions to count ride through LLaVA's expansion as labels (1 = count,
        # 0 = do not); image features and padding come back as IGNORE_INDEX.
        is_image = batch.input_ids == LLAVA_IMAGE_TOKEN_INDEX
        labels = (batch.count_mask & ~is_image).long().to(self.device)
        args = [batch.input_ids.to(self.device), batch.position_ids.to(self.device),
                batch.attention_mask.to(self.device), None, labels, pixels.to(self.device, self.dtype)]
        if "image_sizes" in inspect.signature(self.model.prepare_inputs_labels_for_multimodal).parameters:
            args.append(sizes)
        _, position_ids, attention_mask, _, embeds, new_labels = self.model.prepare_inputs_labels_for_multimodal(*args)
        counted = new_labels == 1
        if positions in ("image", "all"):
            counted |= (new_labels == LLAVA_IGNORE_INDEX) & attention_mask.bool()
        set_mask(counted)
        self.layout.backbone(inputs_embeds=embeds, attention_mask=attention_mask,
                             position_ids=position_ids, use_cache=False)


class LlavaHFFamily(HFPortFamily):
    """transformers `LlavaForConditionalGeneration` (llava-hf). With images (transformers >= 4.47,
    where the text already holds one image token per feature) the multimodal body runs without
    its LM head."""

    name = "llava-hf"

    def __init__(self, model, layout, image_processor=None):
        super().__init__(model, layout, image_processor)
        self.pixels = PixelCache(lambda images: self.image_processor(images, return_tensors="pt")["pixel_values"])

    def image_ids(self) -> list[int]:
        self.check_image_probe("llava-hf models")
        vision = self.model.config.vision_config
        count = (vision.image_size // vision.patch_size) ** 2
        if getattr(self.model.config, "vision_feature_select_strategy", "default") == "full":
            count += 1
        return [self.image_token_id] * count

    def run(self, batch: PaddedBatch, positions: str, set_mask: Callable[[torch.Tensor], None]) -> None:
        if all(image is None for image in batch.images):
            return super().run(batch, positions, set_mask)
        pixels, _ = self.pixels.get(batch.images)
        set_mask(batch.count_mask)
        self.multimodal_body(
            input_ids=batch.input_ids.to(self.device), pixel_values=pixels.to(self.device, self.dtype),
            attention_mask=batch.attention_mask.to(self.device), position_ids=batch.position_ids.to(self.device),
            use_cache=False,
        )


def family_for(model: nn.Module, layout: DecoderLayout, image_processor=None) -> TextFamily:
    if callable(getattr(model, "prepare_inputs_labels_for_multimodal", None)) and callable(
        getattr(model, "get_vision_tower", None)
    ):
        if model.get_vision_tower() is not None:
            return LlavaOfficialFamily(model, layout, image_processor)
    if is_processor_family(model):  # image_processor: the model's processor (AutoProcessor)
        return ProcessorFamily(model, layout, image_processor)
    if "LlavaNextForConditionalGeneration" in (model_architecture(model), type(model).__name__):
        return LlavaNextHFFamily(model, layout, image_processor)
    if "LlavaForConditionalGeneration" in model_architecture(model) or type(model).__name__ == "LlavaForConditionalGeneration":
        return LlavaHFFamily(model, layout, image_processor)
    return TextFamily(model, layout)
