"""The ablation's reference runs that are not budget-matched, on the tiny LLaVA, each a real
LLaVA ``train()`` launched the way `plast ablate` launches it (``python -m plast_plugin.llava.train``,
so the PLAST hook is active but, without ``--plast_layers``, leaves training as upstream):

- ``lora``: LLaVA's own ``--lora_enable`` path, merged by LLaVA's own ``load_pretrained_model``;
- ``full``: LLaVA's stage-2 default, the whole language model (and the projector) trained.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import llava_args, run_train
from plast_plugin.errors import PlastError
from plast_plugin.llava.lora import LORA_1_5, load_merged_lora, lora_flags, lora_trainable_params

R, ALPHA = 4, 8
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _is_vision(name: str) -> bool:
    return ".vision_tower." in name


def _train(assets, out, record, *extra):
    proc = run_train(llava_args(assets, out, *extra, steps=2), mode="module",
                     env={"PLAST_TEST_OPTIMIZER_RECORD": record})
    assert proc.returncode == 0, proc.stdout[-6000:]
    return json.loads(record.read_text())["groups"]


@pytest.fixture(scope="module")
def lora_run(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_run")
    groups = _train(assets, root / "out", root / "opt.json", *lora_flags(r=R, alpha=ALPHA))
    return {"out": root / "out", "optimized": {n for g in groups for n in g}}


@pytest.fixture(scope="module")
def full_run(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("full_run")
    groups = _train(assets, root / "out", root / "opt.json")
    return {"out": root / "out", "optimized": {n for g in groups for n in g}}


def test_lora_flags_are_llava_1_5_recipe_and_refuse_a_non_positive_rank():
    assert LORA_1_5 == {"lora_r": 128, "lora_alpha": 256}
    assert lora_flags() == ["--lora_enable", "True", "--lora_r", "128", "--lora_alpha", "256"]
    with pytest.raises(PlastError, match="r=0"):
        lora_flags(r=0)


def test_lora_run_merged_by_llava_changes_each_targeted_weight_by_a_rank_r_delta_and_nothing_else(assets, lora_run):
    out = lora_run["out"]
    # What LLaVA's LoRA path writes with --save_strategy no: the adapter, the non-LoRA trainables
    # and the config, no base weights and no PLAST records (the hook stayed out of the way).
    assert {"adapter_config.json", "adapter_model.safetensors", "non_lora_trainables.bin", "config.json"} <= \
        {p.name for p in out.iterdir()}
    assert not (out / "model.safetensors").exists() and not (out / "plast_training.json").exists()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (R, ALPHA)
    assert sorted(adapter_config["target_modules"]) == sorted(LORA_TARGETS)
    # The optimizer held exactly the LoRA matrices and the projector (LLaVA re-enables its grads).
    assert lora_run["optimized"] and all(".lora_A." in n or ".lora_B." in n or ".mm_projector." in n
                                         for n in lora_run["optimized"])

    model, tokenizer = load_merged_lora(out, assets["model"])
    assert not model.training and len(tokenizer) > 0
    merged = model.state_dict()
    assert {t.dtype for t in merged.values()} == {torch.float32}
    assert {t.device.type for t in merged.values()} == {"cpu"}
    base = load_file(str(assets["model"] / "model.safetensors"))
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert set(merged) == set(base)  # merge_and_unload left no LoRA module behind

    targeted, problems = 0, []
    for name in sorted(base):
        if _is_vision(name) or ".mm_projector." in name:
            continue
        if name.endswith(tuple(f"{t}.weight" for t in LORA_TARGETS)):
            targeted += 1
            delta = merged[name].double() - base[name].double()
            # merged = fp32(W + s·BA): the rounding adds a full-rank error E with |E_ij| <= 2^-24·max|merged|,
            # so every singular value it adds is <= ||E||_F <= sqrt(m·n)·2^-24·max|merged| (Weyl). On this
            # model that is ~1e-6, while the trained delta's r singular values are ~1e-3..1e-2 and the
            # (r+1)-th is ~2e-8: the tolerance separates them by orders of magnitude on both sides.
            tol = math.sqrt(delta.numel()) * merged[name].abs().max().item() * 2 ** -24
            rank = int(torch.linalg.matrix_rank(delta, atol=tol))
            if not 1 <= rank <= R:
                problems.append(f"{name}: delta rank {rank}, expected 1..{R}")
            # The delta is the saved adapter's own (alpha/r)·B·A: LLaVA's merge used this run's adapter.
            prefix = "base_model.model." + name[: -len(".weight")]
            lora_a, lora_b = adapter[prefix + ".lora_A.weight"], adapter[prefix + ".lora_B.weight"]
            expected = (ALPHA / R) * lora_b.double() @ lora_a.double()
            if not torch.allclose(delta, expected, rtol=0, atol=tol):
                problems.append(f"{name}: delta differs from (alpha/r)·B·A by {(delta - expected).abs().max():.3g}")
        elif not torch.equal(merged[name], base[name]):  # embeddings, norms, lm_head
            problems.append(f"non-LoRA tensor changed: {name}")
    assert not problems, problems
    assert targeted == 4 * len(LORA_TARGETS)  # four decoder layers
    # The projector is LLaVA's non-LoRA trainable: loaded from non_lora_trainables.bin, and it moved.
    projector = [n for n in base if ".mm_projector." in n]
    assert projector and all(not torch.equal(merged[n], base[n]) for n in projector)


def test_lora_trainable_params_counts_the_adapter_matrices_and_the_projector(assets, lora_run):
    from llava.model import LlavaLlamaForCausalLM

    base = LlavaLlamaForCausalLM.from_pretrained(str(assets["model"]))
    expected = 0
    for name, module in base.model.layers.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS:
            expected += R * (module.in_features + module.out_features)  # A: r x in, B: out x r
    expected += sum(p.numel() for p in base.model.mm_projector.parameters())
    assert lora_trainable_params(lora_run["out"]) == expected == 23_680


def test_a_folder_without_lora_adapter_is_refused_naming_it_and_the_missing_files(assets, full_run):
    for call in (lambda: load_merged_lora(full_run["out"], assets["model"]),
                 lambda: lora_trainable_params(full_run["out"])):
        with pytest.raises(PlastError) as err:
            call()
        message = str(err.value)
        assert str(full_run["out"]) in message
        assert "adapter_config.json" in message and "non_lora_trainables.bin" in message


def test_full_run_changes_every_language_model_and_projector_tensor_and_never_the_vision_tower(assets, full_run):
    start = load_file(str(assets["model"] / "model.safetensors"))
    end = load_file(str(full_run["out"] / "model.safetensors"))
    assert set(start) == set(end)
    assert not (full_run["out"] / "plast_training.json").exists()  # the hook left this run upstream's
    changed = {n for n in end if not torch.equal(start[n].to(end[n].dtype), end[n])}
    # Everything outside the vision tower gets a gradient: every decoder weight and norm, the final
    # norm, embed_tokens and lm_head (untied here; only the rows of tokens seen move, but each tensor
    # changes), and the projector (half the conversations have an image). The tower is frozen.
    assert changed == {n for n in end if not _is_vision(n)}
    assert any(_is_vision(n) for n in end)
    # The optimizer held every such parameter and nothing of the tower.
    assert full_run["optimized"] == changed


def test_lora_merge_in_fp16_is_the_builders_own_path_and_agrees_with_fp32(assets, lora_run):
    fp16, _ = load_merged_lora(lora_run["out"], assets["model"], dtype="fp16")
    fp32, _ = load_merged_lora(lora_run["out"], assets["model"], dtype="fp32")
    half, full = fp16.state_dict(), fp32.state_dict()
    assert {t.dtype for t in half.values()} == {torch.float16}
    # fp16 keeps 11 significant bits: the base rounded to fp16 and fp16's own merge each add at most
    # half an fp16 ulp of the tensor's largest magnitude (2^-11 relative), the delta's fp16 product
    # far less (its entries are ~1e-3 here): 2^-10 of the largest magnitude bounds the difference.
    for name, tensor in full.items():
        bound = 2 ** -10 * tensor.abs().max().item()
        assert (half[name].float() - tensor).abs().max().item() <= bound, name
