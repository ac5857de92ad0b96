"""The understanding measure's scoring: the NLL of an English reference answer given the question in
each language, through LLaVA's own template and masking, batched, equals a per-question brute force."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import PROBE

ANSWERS = {"1": "The car is red.", "2": "Three people are standing there.", "3": "A cat sits on it.",
           "4": "B"}


@pytest.fixture(scope="module")
def problems(assets, tmp_path_factory):
    from plast_plugin.data.parallel_problems import load_parallel_problems

    path = tmp_path_factory.mktemp("problems") / "problems.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for qid, en, zh, ru in PROBE:
            for lang, text in (("en", en), ("zh", zh), ("ru", ru)):
                row = {"id": qid, "lang": lang, "question": text, **({"answer": ANSWERS[qid]} if lang == "en" else {})}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return load_parallel_problems(path)


@pytest.fixture(scope="module")
def model(assets):
    from plast_plugin.models.loading import load_for_probe

    model, tokenizer, _ = load_for_probe(str(assets["model"]), "cpu", "fp32")
    return model, tokenizer


def brute_force(model, tokenizer, question: str, answer: str) -> tuple[float, int]:
    """One conversation at a time, no masking code: the prompt up to the assistant's turn is a prefix of
    the whole conversation's tokens; everything after it (the answer and the turn's end) is scored."""
    from llava.conversation import conv_templates
    from plast_plugin.models.translation_loss import ANSWER_INSTRUCTION

    conv = conv_templates["v1"].copy()
    conv.append_message(conv.roles[0], f"{question}\n{ANSWER_INSTRUCTION}")
    conv.append_message(conv.roles[1], None)
    prompt = tokenizer(conv.get_prompt()).input_ids
    conv.messages[-1][1] = answer
    whole = tokenizer(conv.get_prompt()).input_ids
    assert whole[: len(prompt)] == prompt
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    nll = -sum(float(logp[t - 1, whole[t]]) for t in range(len(prompt), len(whole)))
    return nll, len(whole) - len(prompt)


@pytest.mark.parametrize("fast", [False, True])
def test_answer_nll_equals_a_per_question_brute_force(model, problems, fast):
    from plast_plugin.models.translation_loss import answer_losses

    model, tokenizer = model
    losses = answer_losses(model, tokenizer, problems, batch_size=3, fast=fast, model_max_length=256)
    assert set(losses) == {"en", "zh", "ru"}  # the pivot's questions are scored too: retention and the gap's base
    questions = problems.questions
    for lang, result in losses.items():
        assert set(result.per_question) == set(questions.ids)
        for qid, (total, tokens) in result.per_question.items():
            expected_total, expected_tokens = brute_force(model, tokenizer, questions.question(qid, lang),
                                                          problems.answers[qid])
            assert tokens == expected_tokens, (lang, qid)
            assert total == pytest.approx(expected_total, rel=1e-4, abs=1e-4), (lang, qid)
        assert result.loss == pytest.approx(sum(t for t, _ in result.per_question.values()) / result.tokens)
    # the same answer tokens whatever the question's language: what makes the gap a paired difference
    assert losses["zh"].tokens == losses["en"].tokens == losses["ru"].tokens


def test_understanding_gap_is_each_language_minus_the_pivot(model, problems):
    from plast_plugin.models.translation_loss import answer_losses, understanding_gaps

    losses = answer_losses(*model, problems, batch_size=4, model_max_length=256)
    gaps = understanding_gaps(losses)
    assert set(gaps) == {"zh", "ru"}
    for lang in gaps:
        assert gaps[lang] == pytest.approx(losses[lang].loss - losses["en"].loss)
