"""Held-out translation loss: how well a LLaVA checkpoint produces the English question from a
non-English one, per language. It is the PLAST training objective measured on questions the
model did not train on, tokenized and masked by LLaVA's own `preprocess` (so exactly what
training optimizes). Needs the `llava` package (training env); text-only."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from plast_plugin.data.parallel_data import ParallelQuestions
from plast_plugin.data.translation_data import DEFAULT_TEMPLATE, build_translation_data
from plast_plugin.models.probe_inputs import pad_rows

IGNORE_INDEX = -100


@dataclass
class LanguageLoss:
    language: str
    loss: float  # mean negative log-likelihood per answer token (nats)
    tokens: int
    questions: int
    # question id -> (sum of the answer tokens' NLL in nats, answer tokens): what paired comparisons
    # of two checkpoints on the same questions need (`plast ablate`).
    per_question: dict[str, tuple[float, int]] = field(default_factory=dict, repr=False)


def _labelled(records, tokenizer, conv_version: str):
    from llava import conversation as conversation_lib
    from llava.train.train import preprocess

    conversation_lib.default_conversation = conversation_lib.conv_templates[conv_version]
    for record in records:
        sample = preprocess([record["conversations"]], tokenizer, has_image=False)
        labels = sample["labels"][0]
        if (labels == IGNORE_INDEX).all():
            raise ValueError(
                f"LLaVA's preprocess masked every token of {record['id']!r} (its 'tokenization mismatch'): "
                f"the tokenizer does not fit conversation template {conv_version!r}; the model would learn nothing"
            )
        qid, lang = record["id"].rsplit("-", 1)
        yield (lang, qid), sample["input_ids"][0], labels


def _answer_nll(model, input_ids, mask, labels):
    """NLL at the answer positions only: the decoder runs on every position, the LM head (and the
    softmax over the vocabulary) only where a label is scored. Same as LLaVA's forward without
    images: LlamaForCausalLM's body, then lm_head."""
    hidden = model.get_model()(input_ids=input_ids, attention_mask=mask, use_cache=False)[0]
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    picked = model.lm_head(hidden[:, :-1][valid]).float()
    nll = torch.zeros(targets.shape, dtype=picked.dtype, device=picked.device)
    nll[valid] = torch.nn.functional.cross_entropy(picked, targets[valid], reduction="none")
    return nll, valid


def translation_losses(model, tokenizer, questions: ParallelQuestions, *, template: str = DEFAULT_TEMPLATE,
                       conv_version: str = "v1", batch_size: int = 8, model_max_length: int = 2048,
                       progress: bool = False, fast: bool = False) -> dict[str, LanguageLoss]:
    """Per language: mean NLL per answer token, and each question's NLL sum and token count.

    ``fast`` batches questions of similar length together (less padding) and computes the LM head only
    at the answer positions (about 6 in 7 positions are prompt); the values then differ from the
    default path's only by float rounding of differently shaped matmuls, so compare runs scored the
    same way (`plast ablate` scores every run with it)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # what LLaVA's train() does for v1 templates
    # As train()'s --model_max_length (some tokenizers say 1e30, which truncation cannot take;
    # a checkpoint's tokenizer keeps the training run's value, which may truncate held-out text).
    tokenizer.model_max_length = model_max_length
    data = build_translation_data(questions, template=template, images="off")
    items = list(_labelled(data.records, tokenizer, conv_version))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(items)), key=lambda i: len(items[i][1])) if fast else list(range(len(items)))
    scored: dict[int, tuple[float, int]] = {}
    batches = tqdm(range(0, len(items), batch_size), desc="translation loss", unit="batch", disable=not progress)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in batches:
                indices = order[start : start + batch_size]
                chunk = [items[i] for i in indices]
                input_ids = pad_rows([ids for _, ids, _ in chunk], torch.long, left=False, fill=pad)
                labels = pad_rows([lab for _, _, lab in chunk], torch.long, left=False, fill=IGNORE_INDEX)
                mask = pad_rows([[1] * len(ids) for _, ids, _ in chunk], torch.long, left=False)
                if fast:
                    nll, valid = _answer_nll(model, input_ids.to(device), mask.to(device), labels.to(device))
                else:
                    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
                    nll = torch.nn.functional.cross_entropy(
                        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1).to(device),
                        ignore_index=IGNORE_INDEX, reduction="none",
                    ).view(len(chunk), -1)
                    valid = (labels[:, 1:] != IGNORE_INDEX).to(device)
                for row, index in enumerate(indices):
                    scored[index] = (float(nll[row][valid[row]].sum()), int(valid[row].sum()))
    finally:
        model.train(was_training)
    out = {}
    for lang in questions.other_languages:
        rows = {qid: scored[index] for index, ((row_lang, qid), _, _) in enumerate(items) if row_lang == lang}
        tokens = sum(count for _, count in rows.values())
        # Summed in question order, whatever the batching: the same float result either way.
        loss = sum(total for total, _ in rows.values()) / tokens
        out[lang] = LanguageLoss(lang, loss, tokens, len(questions.ids), rows)
    return out
