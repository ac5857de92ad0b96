"""Shared fixtures of the core tests: a tiny random LLaMA (built locally, no network) and a
small set of parallel questions in six languages. These tests run in both environments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from core_testutil import question_rows, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from plast_plugin.testing.tiny_models import make_tiny_llama

    out = tmp_path_factory.mktemp("tiny_llama")
    make_tiny_llama(out, num_layers=4, hidden=64, intermediate=128, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # SDPA, not eager: eager upcasts float64 scores to float32 before the softmax, turning
    # the mask value into -inf, so left-padded rows become NaN and poison the batch.
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa")
    return model.eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture()
def questions_jsonl(tmp_path) -> Path:
    return write_jsonl(tmp_path / "questions.jsonl", question_rows())
