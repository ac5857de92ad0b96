"""The probe and the freeze find the decoder layers of every supported family, in both
transformers lines (4.37 in the training env, 5.x in the eval env)."""

from __future__ import annotations

import pytest
import torch
import transformers

from plast_plugin.core.freeze import freeze_for_plast
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.pipeline import run_selection

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=600, max_position_embeddings=256)


def _qwen2():
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SMALL))


def _gemma3():
    if not hasattr(transformers, "Gemma3ForCausalLM"):
        pytest.skip(f"Gemma3 needs transformers >= 4.50 (this env has {transformers.__version__})")
    config = transformers.Gemma3TextConfig(**SMALL, head_dim=8, sliding_window=64)
    return transformers.Gemma3ForCausalLM(config)


def _llava_hf():
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=28, patch_size=14)
    text = transformers.LlamaConfig(**SMALL)
    return transformers.LlavaForConditionalGeneration(
        transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=599))


def _llava_next_hf():
    if not hasattr(transformers, "LlavaNextForConditionalGeneration"):
        pytest.skip(f"LLaVA-NeXT needs transformers >= 4.39 (this env has {transformers.__version__})")
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=28, patch_size=14)
    return transformers.LlavaNextForConditionalGeneration(transformers.LlavaNextConfig(
        vision_config=vision, text_config=transformers.LlamaConfig(**SMALL), image_token_index=599,
        image_grid_pinpoints=[[28, 56], [56, 28]]))


@pytest.mark.parametrize("build, path", [
    (_qwen2, "model.layers"),
    (_gemma3, "model.layers"),
    (_llava_hf, None),  # language_model.model.layers (4.37) or model.language_model.layers (5.x)
    (_llava_next_hf, None),  # the same two namings (LLaVA-NeXT exists from 4.39 on)
])
def test_supported_families_probe_and_freeze(build, path, tiny_llama, questions_jsonl):
    torch.manual_seed(0)
    model = build().eval()
    layout = find_decoder_layers(model)
    major = int(transformers.__version__.split(".")[0])
    expected = path or ("model.language_model.layers" if major >= 5 else "language_model.model.layers")
    assert layout.path == expected and layout.num_layers == 3 and layout.ffn_width == 64

    tokenizer = tiny_llama[1]  # any tokenizer with ids < 600 works for random models
    questions = load_parallel_questions(questions_jsonl, ["zh", "ru"], "en")
    selection = run_selection(model, tokenizer, questions, SelectionOptions(rule="msd-top:1"), progress=False)
    assert len(selection.layers) == 3 and len(selection.selected_layers) == 1
    assert sum(selection.data["tokens_counted"].values()) > 0

    report = freeze_for_plast(model, [1])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(f"{expected}.1.") for n in trainable)
    assert report.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
