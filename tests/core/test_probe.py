"""The probe counts what the method defines, and nothing else."""

from __future__ import annotations

import copy

import pytest
import torch

from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.pipeline import probe_questions
from plast_plugin.models.probe_inputs import QUESTION, count_flags, encode_prompt, split_pivot


def reference_counts(model, tokenizer, questions, options):
    """Brute force: each prompt alone (no padding), the FFN input captured by a pre-hook,
    act_fn(gate_proj(h)) > 0 recomputed by hand at the counted positions."""
    layout = find_decoder_layers(model)
    groups = [*questions.other_languages, questions.pivot + "#a", questions.pivot + "#b"]
    halves = split_pivot(len(questions.ids), options.seed)
    counts = torch.zeros(len(groups), layout.num_layers, layout.ffn_width, dtype=torch.long)
    tokens = torch.zeros(len(groups), dtype=torch.long)
    captured = {}
    handles = [layer.mlp.register_forward_pre_hook(lambda m, args, i=i: captured.__setitem__(i, args[0]))
               for i, layer in enumerate(layout.layers)]
    try:
        for lang in questions.languages:
            for position, qid in enumerate(questions.ids):
                group = groups.index(lang) if lang != questions.pivot else len(groups) - 2 + halves[position]
                prompt = encode_prompt(tokenizer, questions.question(qid, lang), prompt=options.prompt,
                                       max_question_tokens=options.max_question_tokens, image_ids=None, group=group)
                flags = torch.tensor(count_flags(prompt.kinds, options.positions))
                with torch.no_grad():
                    model(input_ids=torch.tensor([prompt.input_ids]))
                tokens[group] += int(flags.sum())
                for index, layer in enumerate(layout.layers):
                    h = captured[index][0]
                    act = layer.mlp.act_fn(layer.mlp.gate_proj(h))
                    counts[group, index] += (act[flags] > 0).sum(0)
    finally:
        for handle in handles:
            handle.remove()
    return counts, tokens


@pytest.fixture()
def questions(questions_jsonl):
    return load_parallel_questions(questions_jsonl, ["zh", "pt", "ar", "tr", "ru"], "en")


@pytest.fixture()
def llama64(tiny_llama):
    model, tokenizer = tiny_llama
    # transformers 4.37 builds its causal mask with torch.full(..., finfo(float64).min) in the
    # default dtype, which overflows float32: float64 models need float64 as the default.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield copy.deepcopy(model).double(), tokenizer
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("prompt, positions", [("llava", "question"), ("plain", "question"), ("llava", "all")])
def test_counts_equal_brute_force_reference(llama64, questions, prompt, positions):
    model, tokenizer = llama64
    options = SelectionOptions(prompt=prompt, positions=positions, batch_size=3)
    result = probe_questions(model, tokenizer, questions, options, progress=False)
    counts, tokens = reference_counts(model, tokenizer, questions, options)
    assert torch.equal(result.counts.tokens, tokens)
    assert torch.equal(result.counts.counts, counts)
    assert result.counts.counts.sum() > 0  # the comparison is not vacuous


@pytest.mark.parametrize("batch_size, padding_side", [(1, "right"), (2, "left"), (4, "right"), (5, "left"), (16, "left")])
def test_float64_counts_identical_across_batching_and_padding(llama64, questions, batch_size, padding_side):
    model, tokenizer = llama64
    base = probe_questions(model, tokenizer, questions, SelectionOptions(batch_size=1), progress=False)
    other = probe_questions(model, tokenizer, questions, SelectionOptions(batch_size=batch_size),
                            progress=False, padding_side=padding_side)
    assert torch.equal(base.counts.counts, other.counts.counts)
    assert torch.equal(base.counts.tokens, other.counts.tokens)


@pytest.mark.parametrize("prompt", ["plain", "llava"])
def test_padding_and_prompt_positions_are_not_counted(tiny_llama, questions, prompt):
    model, tokenizer = tiny_llama
    question_only = probe_questions(model, tokenizer, questions, SelectionOptions(batch_size=5, prompt=prompt),
                                    progress=False)
    every_token = probe_questions(model, tokenizer, questions,
                                  SelectionOptions(batch_size=5, positions="all", prompt=prompt), progress=False)
    # Exactly the question tokens are counted. 'plain': the question tokenized alone. 'llava': the
    # question's tokens inside LLaVA's conversation text (tokenized whole, as LLaVA does), which
    # decode back to the question; the space before it is the conversation's.
    for group, lang in enumerate(questions.other_languages):
        expected = 0
        for q in questions.ids:
            text = questions.question(q, lang)
            if prompt == "plain":
                expected += len(tokenizer(text, add_special_tokens=False)["input_ids"])
                continue
            encoded = encode_prompt(tokenizer, text, prompt="llava", max_question_tokens=10_000, image_ids=None, group=0)
            ids = [i for i, k in zip(encoded.input_ids, encoded.kinds) if k == QUESTION]
            assert tokenizer.decode(ids).strip() == text.strip()
            expected += len(ids)
        assert int(question_only.counts.tokens[group]) == expected
    assert (every_token.counts.tokens > question_only.counts.tokens).all()


def test_prompt_kinds_mark_the_question_exactly(tiny_llama):
    _, tokenizer = tiny_llama
    prompt = encode_prompt(tokenizer, "Where is the station?", prompt="llava", max_question_tokens=3,
                           image_ids=[-200], group=0)
    assert prompt.kinds.count(QUESTION) == 3  # truncated to max_question_tokens
    assert prompt.input_ids[prompt.kinds.index("image")] == -200


def test_memory_does_not_grow_with_the_data(tiny_llama, questions):
    """Counts live in a fixed [groups, layers, neurons] tensor, whatever the number of tokens."""
    model, tokenizer = tiny_llama
    result = probe_questions(model, tokenizer, questions, SelectionOptions(), progress=False)
    layout = find_decoder_layers(model)
    assert result.counts.counts.shape == (len(result.groups), layout.num_layers, layout.ffn_width)
    assert result.counts.counts.dtype == torch.long


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_probe_counts_the_same_tokens(tiny_llama, questions, dtype):
    """bf16/fp16 (as on GPU) count the same positions; activations agree with fp32 up to sign
    flips of near-zero gates."""
    model, tokenizer = tiny_llama
    full = probe_questions(model, tokenizer, questions, SelectionOptions(), progress=False)
    half = probe_questions(copy.deepcopy(model).to(dtype), tokenizer, questions, SelectionOptions(), progress=False)
    assert torch.equal(full.counts.tokens, half.counts.tokens)
    differing = (full.counts.counts - half.counts.counts).abs().sum().item()
    assert differing <= 0.02 * full.counts.counts.sum().item()
