"""Probing the transformers 5 vision-language families through the model's own processor:
Qwen2.5-VL and Qwen3-VL (dynamic resolution), LLaVA-OneVision (anyres) and InternVL (tiles).

The prompt is the one the model is used with: the processor's chat template, rendered for one
user turn (the image, then the question) awaiting the answer. The question's tokens are found in
it as for LLaVA (``probe_inputs``): the tokens that appear when the question is added to the text
before it and stay when the text after it is added. The image stays one placeholder token until
``run``, where the processor itself turns each image into its model inputs and into the tokens
that stand for it (any number: Qwen's grid of merged patches, OneVision's tiles and newlines,
InternVL's ``<img>`` + tiles + ``</img>``); these replace the placeholder, and the model's
multimodal body runs on the result, so its own code places the image features and (Qwen) builds
the 3-d rotary positions. Replacing one special token by special tokens leaves every other token
of the text as the processor's own tokenization of the expanded text has it.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from plast_plugin.core.model_layout import model_architecture
from plast_plugin.data.parallel_data import load_image
from plast_plugin.errors import PlastError
from plast_plugin.models.model_source import HF_MODEL_CLASSES, HF_VLM_FAMILY_MODEL_TYPES
from plast_plugin.models.probe_family import TextFamily, splice_image_tokens
from plast_plugin.models.probe_inputs import IMAGE, QUESTION, SUFFIX, SYSTEM, EncodedPrompt, PaddedBatch, common_prefix

# The families of this module, by the transformers class that builds them.
PROCESSOR_FAMILY_CLASSES = frozenset(HF_MODEL_CLASSES[kind] for kind in HF_VLM_FAMILY_MODEL_TYPES.values())
# Stands for the question while the chat template is rendered, to cut the text around it.
_MARK = "\u2063PLAST-QUESTION\u2063"


def is_processor_family(model) -> bool:
    return bool({model_architecture(model), type(model).__name__} & PROCESSOR_FAMILY_CLASSES)


class ProcessorFamily(TextFamily):
    """A vision-language model whose images go through its processor (``AutoProcessor``). Without
    images the question runs through the language model alone, in the same chat template."""

    supports_images = True

    def __init__(self, model, layout, processor=None):
        super().__init__(model, layout)
        self.name = model_architecture(model) or type(model).__name__
        if processor is not None and not callable(getattr(processor, "apply_chat_template", None)):
            raise PlastError(
                f"{self.name} is probed through its processor (AutoProcessor.from_pretrained(MODEL)); got a "
                f"{type(processor).__name__}")
        self.processor = processor
        config = model.config
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(config, "image_token_index", None)
        self.body = model.model
        forward = inspect.signature(self.body.forward).parameters
        self.body_inputs = set(forward)
        # Qwen-VL computes its own 3-d rotary positions from the ids and the image grids (and the
        # attention mask, so padding does not shift them); the others take 1-d positions.
        self.own_positions = callable(getattr(self.body, "get_rope_index", None))

    def _need_processor(self) -> None:
        if self.processor is None or getattr(self.processor, "image_processor", None) is None:
            raise PlastError(
                f"probing this {self.name} with images needs its processor, and the model folder has none "
                "(processor_config.json / preprocessor_config.json with the tokenizer): save it there with "
                "AutoProcessor.from_pretrained(<the base model>).save_pretrained(<model folder>), or pass "
                "--images off to probe the questions as text only")

    def image_ids(self) -> list[int]:
        self._need_processor()
        return [self.image_token_id]  # one placeholder per image, replaced in run()

    def _render(self, text: str, with_image: bool, tokenizer) -> str:
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
        messages = [{"role": "user", "content": content}]
        for owner in (self.processor, tokenizer):
            if owner is not None and getattr(owner, "chat_template", None):
                return owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        raise PlastError(
            f"this {self.name} has no chat template (neither its processor nor its tokenizer carries one): "
            "save the base model's processor into the model folder, or use prompt='plain'")

    def _around_question(self, tokenizer, question: str, prompt: str, with_image: bool) -> tuple[str, str]:
        """The prompt's text before and after the question."""
        if prompt == "plain":  # the image token, a newline, the question (as LLaVA's plain prompt)
            return (self._image_token() + "\n" if with_image else ""), ""
        before, mark, after = self._render(_MARK, with_image, tokenizer).partition(_MARK)
        if not mark or _MARK in after:
            raise PlastError(f"the chat template of this {self.name} does not hold the question once as given")
        if self._render(question, with_image, tokenizer) != before + question + after:
            raise PlastError(
                f"the chat template of this {self.name} changes the question text (e.g. trims it): "
                f"{question[:60]!r}; clean the data so that the template keeps it, or use prompt='plain'")
        return before, after

    def _image_token(self) -> str:
        token = getattr(self.processor, "image_token", None)
        if not token:
            self._need_processor()
            raise PlastError(f"the processor of this {self.name} names no image token (processor.image_token)")
        return token

    def encode(self, tokenizer, question: str, *, prompt: str, max_question_tokens: int, image_ids,
               group: int, image: str | None = None, conv_template: str = "v1",
               question_index: int = -1) -> EncodedPrompt:
        """The prompt the model is used with; ``conv_template`` (LLaVA's) does not apply."""
        with_image = image_ids is not None
        if with_image and self._image_token() in question:
            raise PlastError(
                f"a question holds the literal text {self._image_token()!r}, this {self.name}'s image token: "
                f"{question[:60]!r}; remove it from the data, or pass --images off")
        before, after = self._around_question(tokenizer, question, prompt, with_image)
        # As the processor's apply_chat_template(tokenize=True) does: no second BOS before a
        # template that writes its own.
        bos = getattr(tokenizer, "bos_token", None)
        plain = {"add_special_tokens": False} if bos and (before + question).startswith(bos) else {}

        def tokens(text: str) -> list[int]:
            return list(tokenizer(text, **plain)["input_ids"])

        ids_before, ids_with_question, ids = tokens(before), tokens(before + question), tokens(before + question + after)
        start = common_prefix(ids_before, ids_with_question)
        end = max(start, common_prefix(ids_with_question, ids))
        kinds = [SYSTEM] * start + [QUESTION] * (end - start) + [SUFFIX] * (len(ids) - end)
        if with_image:
            at = [i for i, token in enumerate(ids) if token == self.image_token_id]
            if len(at) != 1 or at[0] >= start:
                raise PlastError(
                    f"the prompt of this {self.name} holds {len(at)} image token(s) (id {self.image_token_id}) "
                    "before the question, not one: the tokenizer does not keep the processor's image token "
                    f"{self._image_token()!r} as one token")
            kinds[at[0]] = IMAGE
        keep = [i for i, kind in enumerate(kinds) if kind != QUESTION or i < start + max_question_tokens]
        return EncodedPrompt(group, [ids[i] for i in keep], [kinds[i] for i in keep], image,
                             question_tokens=end - start, question=question_index)

    def run(self, batch: PaddedBatch, positions: str, set_mask: Callable[[torch.Tensor], None]) -> None:
        if all(image is None for image in batch.images):
            return super().run(batch, positions, set_mask)
        if any(image is None for image in batch.images):
            raise PlastError("a batch mixes questions with and without images")
        self._need_processor()
        images = [load_image(ref) for ref in batch.images]
        # One text of the image token alone per image: the processor's own preprocessing and
        # expansion; the pixels come back as tensors, the ids as lists (their lengths differ).
        processed = self.processor(text=[self._image_token()] * len(images), images=[[image] for image in images],
                                   add_special_tokens=False, images_kwargs={"return_tensors": "pt"})
        ids, attention_mask, position_ids, count_mask = splice_image_tokens(
            batch, self.image_token_id, [list(row) for row in processed["input_ids"]], positions)
        inputs = {key: value for key, value in processed.items() if isinstance(value, torch.Tensor)
                  and key in self.body_inputs and key not in ("input_ids", "attention_mask", "mm_token_type_ids")}
        inputs = {key: value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)
                  for key, value in inputs.items()}
        if "mm_token_type_ids" in self.body_inputs:
            inputs["mm_token_type_ids"] = torch.tensor(self.processor.create_mm_token_type_ids(ids),
                                                       dtype=torch.long, device=self.device)
        if not self.own_positions:
            inputs["position_ids"] = position_ids.to(self.device)
        set_mask(count_mask)
        self.body(input_ids=ids.to(self.device), attention_mask=attention_mask.to(self.device), use_cache=False,
                  **inputs)
