"""From parallel questions to model inputs with a per-token "count here" mask.

The probe counts activations only at the positions the options select (the question's text
tokens by default). Image tokens are expanded by the model family adapter (`probe_models`).

With ``prompt="llava"`` the ids are the ones LLaVA itself feeds for the question
(``conv_templates[...]`` + ``tokenizer_image_token``): the conversation text is cut at the
image, each chunk is tokenized whole, and the question's tokens are found inside its chunk as
the tokens that appear when the question is added to the text before it and stay when the
text after it is added (so a token merged across a boundary is never counted as question).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ConvTemplate:
    """A LLaVA ``SeparatorStyle.TWO`` conversation: ``system + sep + ROLE: message + sep ...``."""

    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "


# llava.conversation: conv_vicuna_v1 ("v1", "vicuna_v1"; LLaVA-1.5's --version v1, used by its
# training and by hf_convert's chat template) and conv_llava_v1 ("llava_v1").
CONV_TEMPLATES: dict[str, ConvTemplate] = {
    "v1": ConvTemplate(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."),
    "llava_v1": ConvTemplate(
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."),
}
CONV_TEMPLATES["vicuna_v1"] = CONV_TEMPLATES["v1"]
IMAGE_PLACEHOLDER = "<image>"  # llava.constants.DEFAULT_IMAGE_TOKEN


def _conversation_parts(conv_template: str, with_image: bool) -> tuple[str, str, str]:
    """(text before the question, between image and question, after the question)."""
    conv = CONV_TEMPLATES[conv_template]
    user, assistant = conv.roles
    return f"{conv.system}{conv.sep}{user}: ", "\n" if with_image else "", f"{conv.sep}{assistant}:"


def conversation_text(question: str, conv_template: str = "v1", with_image: bool = False) -> str:
    """The prompt LLaVA builds for one question awaiting the answer (``conv.get_prompt()``)."""
    head, between, tail = _conversation_parts(conv_template, with_image)
    return head + (IMAGE_PLACEHOLDER if with_image else "") + between + question + tail


# Token kinds in an encoded prompt.
SYSTEM, IMAGE, QUESTION, SUFFIX = "system", "image", "question", "suffix"


@dataclass
class EncodedPrompt:
    group: int
    input_ids: list[int]
    kinds: list[str]  # one per input id
    image: str | None = None
    question_tokens: int = 0  # of the question before clipping to max_question_tokens
    question: int = -1  # index of the parallel question (the same in every language); -1: unknown

    def __len__(self) -> int:
        return len(self.input_ids)


def _tokens(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _chunk_with_question(tokenizer, before: str, question: str, after: str) -> list[tuple[str, list[int]]]:
    """`before + question + after` tokenized whole, split into (kind, ids) around the question."""
    ids_before = _tokens(tokenizer, before)
    ids_with_question = _tokens(tokenizer, before + question)
    ids_all = _tokens(tokenizer, before + question + after)
    start = common_prefix(ids_before, ids_with_question)
    end = max(start, common_prefix(ids_with_question, ids_all))
    return [(SYSTEM, ids_all[:start]), (QUESTION, ids_all[start:end]), (SUFFIX, ids_all[end:])]


def encode_prompt(tokenizer, question: str, *, prompt: str, max_question_tokens: int,
                  image_ids: list[int] | None, group: int, image: str | None = None,
                  conv_template: str = "v1", question_index: int = -1) -> EncodedPrompt:
    """`image_ids`: the ids that stand for the image in the text (None: no image).

    A question longer than `max_question_tokens` keeps its first tokens (the rest of the
    conversation is unchanged)."""
    segments: list[tuple[str, list[int]]] = []
    if tokenizer.bos_token_id is not None:
        segments.append((SYSTEM, [tokenizer.bos_token_id]))
    if prompt == "llava":
        head, between, tail = _conversation_parts(conv_template, with_image=image_ids is not None)
        if image_ids is None:  # one chunk: system, question, suffix
            segments += _chunk_with_question(tokenizer, head, question, tail)
        else:  # LLaVA tokenizes the text before and after the image separately
            segments.append((SYSTEM, _tokens(tokenizer, head)))
            segments.append((IMAGE, list(image_ids)))
            segments += _chunk_with_question(tokenizer, between, question, tail)
    else:
        if image_ids is not None:
            segments.append((IMAGE, list(image_ids)))
            segments.append((SYSTEM, _tokens(tokenizer, "\n")))
        segments.append((QUESTION, _tokens(tokenizer, question)))
    ids: list[int] = []
    kinds: list[str] = []
    question_tokens = 0  # before clipping, so callers can say how many questions were clipped
    for kind, seg in segments:
        if kind == QUESTION:
            question_tokens += len(seg)
            seg = seg[:max_question_tokens]
        ids += seg
        kinds += [kind] * len(seg)
    return EncodedPrompt(group, ids, kinds, image, question_tokens=question_tokens, question=question_index)


def count_flags(kinds: list[str], positions: str) -> list[bool]:
    counted = {"question": QUESTION, "image": IMAGE}.get(positions)  # else every position
    return [counted is None or k == counted for k in kinds]


@dataclass
class PaddedBatch:
    groups: torch.Tensor  # [B] group index per row
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    count_mask: torch.Tensor  # [B, T] bool
    images: list[str | None]


def pad_rows(rows: list, dtype: torch.dtype, left: bool, fill: int = 0) -> torch.Tensor:
    """Rows (lists or 1-d tensors) as one [len(rows), longest] tensor, padded with ``fill`` left or right."""
    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), fill, dtype=dtype)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        out[i, span] = torch.as_tensor(row, dtype=dtype)
    return out


def pad_batch(prompts: list[EncodedPrompt], positions: str, pad_id: int, padding_side: str = "right") -> PaddedBatch:
    left = padding_side != "right"
    mask = pad_rows([[1] * len(p) for p in prompts], torch.long, left)
    return PaddedBatch(
        groups=torch.tensor([p.group for p in prompts], dtype=torch.long),
        input_ids=pad_rows([p.input_ids for p in prompts], torch.long, left, fill=pad_id),
        attention_mask=mask,
        # Positions follow the real tokens, so left padding does not shift the rotary phases.
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        count_mask=pad_rows([count_flags(p.kinds, positions) for p in prompts], torch.bool, left),
        images=[p.image for p in prompts],
    )


def split_pivot(num_questions: int, seed: int) -> list[int]:
    """Half index (0 or 1) of each pivot question, for the pivot-vs-pivot noise floor."""
    order = list(range(num_questions))
    random.Random(seed).shuffle(order)
    first_half = set(order[:(num_questions + 1) // 2])
    return [0 if index in first_half else 1 for index in range(num_questions)]


def make_batches(prompts: list[EncodedPrompt], batch_size: int) -> list[list[EncodedPrompt]]:
    """One group per batch, similar lengths together (less padding); deterministic order.

    Prompts with images go question block by question block (``batch_size`` questions, then their
    batch in every group), so ``probe_models.PixelCache`` preprocesses each image once for all
    languages. The counts are sums over batches: the order changes nothing in the result."""
    if prompts and all(p.image is not None and p.question >= 0 for p in prompts):
        return _batches_by_question_block(prompts, batch_size)
    batches: list[list[EncodedPrompt]] = []
    for group in sorted({p.group for p in prompts}):
        members = sorted((p for p in prompts if p.group == group), key=len)
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return batches


def _batches_by_question_block(prompts: list[EncodedPrompt], batch_size: int) -> list[list[EncodedPrompt]]:
    longest: dict[int, int] = {}
    for p in prompts:
        longest[p.question] = max(longest.get(p.question, 0), len(p))
    order = sorted(longest, key=lambda q: (longest[q], q))  # similar lengths in one block
    groups = sorted({p.group for p in prompts})
    batches: list[list[EncodedPrompt]] = []
    for start in range(0, len(order), batch_size):
        block = set(order[start : start + batch_size])
        for group in groups:
            members = sorted((p for p in prompts if p.group == group and p.question in block),
                             key=lambda p: (len(p), p.question))
            if members:
                batches.append(members)
    return batches
