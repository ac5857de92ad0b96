"""Held-out losses of a checkpoint on text-only conversations, tokenized and masked as its training path
does (the loss falls on the answer tokens only, exactly as training computes it): a LLaVA checkpoint
through LLaVA's conversation template (``conv_version``; needs the `llava` package, training env), a
transformers model (``conv_version=None``) through its own chat template as the HF Trainer path trains it
(``models.chat_template``):

- translation loss: how well it produces the English question from a non-English one, per language;
  the PLAST training objective measured on questions the model did not train on;
- answer loss: the NLL of an English reference answer given the question in each language, the
  English question included. Its gap to the English question's (``understanding_gaps``) is what
  aligning non-English questions with English should shrink; the English question's own value is
  the English retention measure."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from plast_plugin.data.parallel_data import ParallelQuestions
from plast_plugin.data.parallel_problems import ParallelProblems
from plast_plugin.data.translation_data import DEFAULT_TEMPLATE, build_translation_data
from plast_plugin.models.chat_template import IGNORE_INDEX, ChatRenderer
from plast_plugin.models.probe_inputs import pad_rows

# Appended to every language's question: the reference answer is English, so the request is too, and
# the gap measures the question's understanding rather than the choice of the answer's language.
ANSWER_INSTRUCTION = "Answer in English."


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


def _chat_labelled(items, processor, max_length: int):
    """((language, id), question, answer) -> (language, id), token ids, labels of a text-only conversation
    in the model's chat template, exactly as the HF Trainer path (``trainers.hf_data``) trains it."""
    render = ChatRenderer(processor)
    for key, question, answer in items:
        ids, labels = render.text_ids(question, answer, max_length)
        if all(label == IGNORE_INDEX for label in labels):
            raise ValueError(f"question {key[1]!r} ({key[0]}): no answer token left within --max-length "
                             f"{max_length}; the run would score nothing")
        yield key, torch.tensor(ids), torch.tensor(labels)


def _translation_items(records):
    for record in records:
        qid, lang = record["id"].rsplit("-", 1)
        human, gpt = record["conversations"]
        yield (lang, qid), human["value"], gpt["value"]


def _answer_items(problems: ParallelProblems, instruction: str):
    questions = problems.questions
    for qid in questions.ids:
        for lang in questions.languages:
            yield (lang, qid), f"{questions.question(qid, lang)}\n{instruction}", problems.answers[qid]


def _answer_nll(model, input_ids, mask, labels):
    """NLL at the answer positions only: the decoder runs on every position, the LM head (and the
    softmax over the vocabulary) only where a label is scored. Same as the model's forward without
    images: LLaVA's LlamaForCausalLM body (``get_model()``) or a transformers model's ``model``, then
    lm_head."""
    body = model.get_model() if callable(getattr(model, "get_model", None)) else model.model
    hidden = body(input_ids=input_ids, attention_mask=mask, use_cache=False)[0]
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    picked = model.lm_head(hidden[:, :-1][valid]).float()
    nll = torch.zeros(targets.shape, dtype=picked.dtype, device=picked.device)
    nll[valid] = torch.nn.functional.cross_entropy(picked, targets[valid], reduction="none")
    return nll, valid


def _prepare(tokenizer, model_max_length: int) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # what LLaVA's train() does for v1 templates
    # As train()'s --model_max_length (some tokenizers say 1e30, which truncation cannot take;
    # a checkpoint's tokenizer keeps the training run's value, which may truncate held-out text).
    tokenizer.model_max_length = model_max_length


def _answer_labelled(problems: ParallelProblems, instruction: str, tokenizer, conv_version: str):
    """(language, id), token ids, labels of each problem's question in each language with its reference answer:
    the conversation in the model's own template, labelled from the assistant's turn on (the answer and
    the turn's end). Not LLaVA's `preprocess`: its v1 masking is off by a token for some tokenizers
    (it scores the ':' of 'ASSISTANT:' with a SentencePiece tokenizer of the tests), which here would
    add a prompt token to every answer."""
    from llava import conversation as conversation_lib

    for key, question, answer in _answer_items(problems, instruction):
        lang, qid = key
        conv = conversation_lib.conv_templates[conv_version].copy()
        conv.append_message(conv.roles[0], question)
        conv.append_message(conv.roles[1], None)
        prompt = tokenizer(conv.get_prompt(), truncation=True).input_ids
        conv.messages[-1][1] = answer
        ids = tokenizer(conv.get_prompt(), truncation=True).input_ids
        if ids[: len(prompt)] != prompt or len(ids) == len(prompt):
            raise ValueError(f"question {qid!r} ({lang}): the prompt's tokens are not a prefix of the whole "
                             f"conversation's (or the answer was truncated away at --model_max_length "
                             f"{tokenizer.model_max_length}): its answer tokens cannot be told apart")
        labels = torch.tensor(ids)
        labels[: len(prompt)] = IGNORE_INDEX
        yield (lang, qid), torch.tensor(ids), labels


def _score(model, tokenizer, items, *, batch_size: int, progress: bool, fast: bool,
           desc: str) -> dict[tuple[str, str], tuple[float, int]]:
    """(language, question id) -> (NLL sum over the labelled tokens, labelled tokens) of each item.

    ``fast`` batches records of similar length together (less padding) and computes the LM head only
    at the answer positions (about 6 in 7 positions are prompt); the values then differ from the
    default path's only by float rounding of differently shaped matmuls, so compare runs scored the
    same way (`plast ablate` scores every run with it)."""
    items = list(items)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(items)), key=lambda i: len(items[i][1])) if fast else list(range(len(items)))
    scored: dict[tuple[str, str], tuple[float, int]] = {}
    batches = tqdm(range(0, len(items), batch_size), desc=desc, unit="batch", disable=not progress)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in batches:
                chunk = [items[i] for i in order[start : start + batch_size]]
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
                for row, (key, _, _) in enumerate(chunk):
                    scored[key] = (float(nll[row][valid[row]].sum()), int(valid[row].sum()))
    finally:
        model.train(was_training)
    return scored


def _per_language(scored: dict, languages, ids: list[str]) -> dict[str, LanguageLoss]:
    out = {}
    for lang in languages:
        rows = {qid: scored[(lang, qid)] for qid in ids}
        tokens = sum(count for _, count in rows.values())
        # Summed in question order, whatever the batching: the same float result either way.
        loss = sum(total for total, _ in rows.values()) / tokens
        out[lang] = LanguageLoss(lang, loss, tokens, len(ids), rows)
    return out


def _text_tokenizer(tokenizer_or_processor, model_max_length: int):
    """The tokenizer (a processor's own), prepared as training prepares it."""
    tokenizer = getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)
    _prepare(tokenizer, model_max_length)
    return tokenizer


def translation_losses(model, tokenizer, questions: ParallelQuestions, *, template: str = DEFAULT_TEMPLATE,
                       conv_version: str | None = "v1", batch_size: int = 8, model_max_length: int = 2048,
                       progress: bool = False, fast: bool = False) -> dict[str, LanguageLoss]:
    """Per non-pivot language: the mean NLL per token of the pivot translation, and each question's NLL
    sum and token count (``fast``: see ``_score``). ``conv_version`` None: a transformers model, scored
    through its chat template, and ``tokenizer`` may be its processor (where the template lives)."""
    processor, tokenizer = tokenizer, _text_tokenizer(tokenizer, model_max_length)
    records = build_translation_data(questions, template=template, images="off").records
    items = (_chat_labelled(_translation_items(records), processor, model_max_length) if conv_version is None
             else _labelled(records, tokenizer, conv_version))
    scored = _score(model, tokenizer, items, batch_size=batch_size, progress=progress, fast=fast,
                    desc="translation loss")
    return _per_language(scored, questions.other_languages, questions.ids)


def answer_losses(model, tokenizer, problems: ParallelProblems, *, instruction: str = ANSWER_INSTRUCTION,
                  conv_version: str | None = "v1", batch_size: int = 8, model_max_length: int = 2048,
                  progress: bool = False, fast: bool = False) -> dict[str, LanguageLoss]:
    """Per language, the pivot included: the mean NLL per token of each problem's (English) reference
    answer given the question in that language, followed by ``instruction``, in the model's own
    conversation template; and each problem's NLL sum and token count (``fast``: see ``_score``;
    ``conv_version`` None: see ``translation_losses``)."""
    processor, tokenizer = tokenizer, _text_tokenizer(tokenizer, model_max_length)
    items = (_chat_labelled(_answer_items(problems, instruction), processor, model_max_length)
             if conv_version is None else _answer_labelled(problems, instruction, tokenizer, conv_version))
    scored = _score(model, tokenizer, items, batch_size=batch_size, progress=progress, fast=fast,
                    desc="answer loss")
    return _per_language(scored, problems.questions.languages, problems.questions.ids)


def understanding_gaps(losses: dict[str, LanguageLoss], pivot: str = "en") -> dict[str, float]:
    """Per non-pivot language: its answer loss minus the pivot question's, in nats per answer token
    (the same answer tokens on both sides)."""
    if pivot not in losses:
        raise ValueError(f"the answer losses have no {pivot!r} row: score the pivot's questions as well")
    return {lang: loss.loss - losses[pivot].loss for lang, loss in losses.items() if lang != pivot}
