"""PLAST's short backward (plast_plugin/llava/short_backward.py): same loss and same updated
weights as LLaVA's own checkpointing path, frozen tensors untouched, and the counted-FLOP goals
at the LLaVA-1.5-7B shape (meta device, the benchmark's cost model in scripts/llava_cost_model.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import base_env, check_only_layers_changed, llava_args, run_train

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))  # the benchmark's cost model is a script module, not in the package
from llava_cost_model import (Setup, activation_profile, base_llava, build_llava, count_step_flops,  # noqa: E402
                              embed, multimodal_inputs, prepare_for_training, training_step)


# ----------------------------------------------------------------------------- in process
def _tiny_step(setup, seed=0):
    """One forward + backward of the tiny LLaVA shape (32 layers, d 64) on CPU; (loss, grads)."""
    torch.manual_seed(seed)
    model = build_llava("tiny", device="cpu", dtype=torch.float32, attn_implementation="eager")
    model = prepare_for_training(model, setup)
    images, input_ids, labels = multimodal_inputs(base_llava(model), 2, 96, device="cpu", seed=seed)
    loss = training_step(model, images, input_ids, labels)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return model, loss.item(), grads


@pytest.mark.parametrize("layers", [(0, 1, 2, 3, 4), (16, 17, 18, 19, 20), (29, 30, 31)])
def test_short_backward_same_gradients_as_llava_path(layers):
    short_model, short_loss, short = _tiny_step(Setup("plast", layers, short_backward=True))
    _, long_loss, long = _tiny_step(Setup("plast", layers, short_backward=False))
    assert short_loss == pytest.approx(long_loss, rel=1e-6)
    assert sorted(short) == sorted(long)
    for name in long:
        assert short[name] is not None and long[name] is not None, name
        assert short[name].abs().sum() > 0, f"{name}: zero gradient"
        torch.testing.assert_close(short[name], long[name], rtol=1e-5, atol=1e-7)
    # The short path records no input grads: the embeddings' output does not require grad.
    embeddings = short_model.get_input_embeddings()
    assert not any(getattr(h, "__name__", "").startswith("make_inputs_require_grad")
                   for h in embeddings._forward_hooks.values())


def test_reentrant_without_input_grads_would_zero_gradients():
    """Why the short path must be non-reentrant (transformers #21381): checkpointing reentrantly
    with the input-grad hook removed cuts the trained layers out of the graph."""
    from plast_plugin.core.freeze import freeze_for_plast

    model = build_llava("tiny", device="cpu", dtype=torch.float32)
    freeze_for_plast(model, [3, 4])
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    images, input_ids, labels = multimodal_inputs(model, 1, 64, device="cpu")
    loss = model(inputs_embeds=embed(model, images, input_ids), labels=labels).loss
    assert not loss.requires_grad  # layers 3-4 would get no gradient at all


def test_shorten_backward_refuses_what_it_cannot_shorten():
    from types import SimpleNamespace

    from plast_plugin.core.freeze import freeze_for_plast
    from plast_plugin.llava.short_backward import shorten_backward

    def args(**kw):
        return SimpleNamespace(**{"gradient_checkpointing": True, "gradient_checkpointing_kwargs": None,
                                  "plast_short_backward": True, **kw})

    model = build_llava("tiny", device="meta")
    freeze_for_plast(model, [2])
    model.enable_input_require_grads()
    assert not shorten_backward(model, args(plast_short_backward=False)).applied
    assert not shorten_backward(model, args(gradient_checkpointing=False)).applied
    refused = shorten_backward(model, args(gradient_checkpointing_kwargs={"use_reentrant": True}))
    assert not refused.applied and "use_reentrant=True" in refused.reason
    model.get_model().mm_projector.requires_grad_(True)  # something below layer 2 trains
    refused = shorten_backward(model, args())
    assert not refused.applied and "outside the decoder layers" in refused.reason
    assert model._require_grads_hook is not None  # LLaVA's hook kept in every refused case
    model.get_model().mm_projector.requires_grad_(False)
    done = shorten_backward(model, args())
    assert done.applied and done.lowest_layer == 2 and done.input_grad_hooks_removed == 1


# ----------------------------------------------------------------------------- counted FLOPs
def test_counted_flop_goals_at_llava7b_shape():
    """Checkpointing on, seq 2048: PLAST / full <= 0.75 (layers 0-4) and <= 0.55 (layers 16-20);
    LLaVA's own path (the old one) was 0.804 for both."""
    full = count_step_flops("llava7b", Setup("full")).flops
    shallow = count_step_flops("llava7b", Setup("plast", tuple(range(0, 5))))
    deep = count_step_flops("llava7b", Setup("plast", tuple(range(16, 21))))
    upstream = count_step_flops("llava7b", Setup("plast", tuple(range(0, 5)), short_backward=False))
    assert shallow.flops / full <= 0.75
    assert deep.flops / full <= 0.55
    assert upstream.flops / full > 0.80  # the old path, for contrast
    assert shallow.trainable_params == 5 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096)
    assert shallow.total_params == 7_062_902_784  # LLaVA-1.5-7B: LLaMA 6.74 B + CLIP-L 0.30 B + projector


def test_activation_profile_at_llava7b_shape():
    """Saved activations (meta device): checkpointing keeps one hidden state per layer with a
    graph; without it PLAST's layers below the selection save nothing and frozen layers less."""
    full = activation_profile("llava7b", Setup("full"), 1, 2048)
    deep = activation_profile("llava7b", Setup("plast", tuple(range(16, 21))), 1, 2048)
    assert full.hidden_state == 2048 * 4096 * 2
    assert all(b == full.per_layer[0] for b in full.per_layer)
    assert deep.per_layer[:16] == [0] * 16 and 0 < deep.per_layer[21] < deep.per_layer[16] <= full.per_layer[16]
    assert deep.without_checkpointing < full.without_checkpointing
    assert full.with_checkpointing < full.without_checkpointing / 5
    upstream = activation_profile("llava7b", Setup("plast", tuple(range(16, 21)), short_backward=False), 1, 2048)
    assert upstream.without_checkpointing == deep.without_checkpointing  # no input grads without checkpointing
    assert deep.with_checkpointing < upstream.with_checkpointing


def test_meta_construction_reads_no_weights_and_no_hub(monkeypatch):
    import huggingface_hub
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("build_llava must not load weights or reach the hub")

    monkeypatch.setattr(transformers.CLIPVisionModel, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.CLIPImageProcessor, "from_pretrained", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(transformers.utils.hub, "cached_file", refuse)
    model = build_llava("llava7b", device="meta", dtype=torch.bfloat16)
    assert all(p.is_meta for p in model.parameters())
    assert type(model).__name__ == "LlavaLlamaForCausalLM"
    assert model.get_model().get_vision_tower().num_patches == 576
    assert not any(p.requires_grad for p in model.get_model().get_vision_tower().parameters())


def test_count_cli_prints_parseable_lines(tmp_path):
    """scripts/bench_train.py --count in a reduced configuration (tiny shape, one selection)."""
    out = tmp_path / "count.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_train.py"), "--shape", "tiny", "--count",
                           "--seq", "128", "--selections", "0-4", "--gpus", "8", "--batches", "16", "--json", str(out)],
                          env=base_env(PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    ratio = re.compile(r"^flops-ratio (plast|plast-upstream)/(full|lora) layers=0-4 gc=(on|off) \d+\.\d{3}$")
    ratios = [line for line in lines if line.startswith("flops-ratio ")]
    assert len(ratios) == 8 and all(ratio.match(line) for line in ratios), ratios
    assert any(line.startswith("memory-gb plast layers=0-4 stage=zero2 gpus=8 ") for line in lines)
    assert any(re.match(r"^activations-gb plast layers=0-4 gc=on batch=16 \d+\.\d$", line) for line in lines)
    report = json.loads(out.read_text())
    assert report["ratios"]["plast/full layers=0-4 gc=on"] < report["ratios"]["plast-upstream/full layers=0-4 gc=on"]


# ----------------------------------------------------------------------------- LLaVA's train()
def _losses(stdout: str) -> list[float]:
    return [float(m) for m in re.findall(r"'loss': ([0-9.eE+-]+)", stdout)]


@pytest.mark.parametrize("layers", [[1, 2], [3]])
def test_llava_train_short_backward_equals_llava_path(assets, tmp_path, layers):
    """LLaVA's own train() (gradient checkpointing on): the short path and --plast_short_backward
    False log the same losses and save the same weights; frozen tensors stay bit-identical."""
    from safetensors.torch import load_file

    spec = ",".join(map(str, layers))
    runs = {}
    for name, extra in (("short", []), ("llava", ["--plast_short_backward", "False"])):
        out = tmp_path / name
        proc = run_train(llava_args(assets, out, "--plast_layers", spec, *extra, steps=3))
        assert proc.returncode == 0, proc.stdout[-6000:]
        runs[name] = (proc.stdout, out)
        check_only_layers_changed(assets["model"], out, layers)
    assert f"backward stops at layer {layers[0]}" in runs["short"][0]
    assert "backward not shortened: --plast_short_backward False" in runs["llava"][0]
    short_losses, llava_losses = _losses(runs["short"][0]), _losses(runs["llava"][0])
    assert len(short_losses) == 3 and short_losses == pytest.approx(llava_losses, rel=1e-5)
    short_w, llava_w = load_file(str(runs["short"][1] / "model.safetensors")), load_file(str(runs["llava"][1] / "model.safetensors"))
    for name in short_w:
        torch.testing.assert_close(short_w[name], llava_w[name], rtol=1e-5, atol=1e-6)
