#!/usr/bin/env python
"""Training-step benchmark: PLAST vs full fine-tuning vs LoRA, side by side on one model.

One LLaVA is built from a LLaMA checkpoint (``--llama PATH``, e.g. the demo's SmolLM2-135M at
.cache/demo/smollm2) with a tiny random vision tower, or from a random LLaMA of SmolLM2's shape
(``--tiny``: 30 layers, d 576, FFN 1536, 9 heads, 3 KV heads, vocab 49152). Three copies are
trained on the *same* batches, their steps interleaved round by round so that machine noise
hits all three alike:

- full: LLaVA-1.5 finetuning (language model + projector; vision tower frozen),
- plast: only the selected decoder layers (``--layers``, default 1-5: five layers),
- lora: LLaVA's finetune_lora.sh recipe (r 128, alpha 256 on every linear layer of the LM, +
  projector).

All use gradient checkpointing with input grads enabled, as LLaVA's ``train()`` does, and
``torch.optim.AdamW``. Reported: median step time (forward + backward + optimizer step),
trainable parameters, optimizer-state bytes, and the ratios PLAST / full and PLAST / LoRA.

    python scripts/bench_train.py --tiny --json bench.json
    python scripts/bench_train.py --llama .cache/demo/smollm2 --steps 5
    python scripts/bench_train.py --shape llava7b --device cuda --modes plast,lora   # on a GPU
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

SMOLLM2_SHAPE = dict(num_layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, vocab=49152, tie=True)
LLAVA7B_SHAPE = dict(num_layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=32000, tie=False)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--llama", help="a LLaMA checkpoint directory (safetensors + tokenizer)")
    src.add_argument("--tiny", action="store_true", help="a random LLaMA of SmolLM2-135M's shape")
    src.add_argument("--shape", choices=("smollm2", "llava7b"), help="random weights of this shape")
    p.add_argument("--layers", default="1-5", help="PLAST layers (spec, default 1-5)")
    p.add_argument("--modules", default="layer", choices=("layer", "mlp", "attn"))
    p.add_argument("--modes", default="full,plast,lora", help="comma-separated subset of full,plast,lora")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=128, help="tokens per sequence (incl. image tokens)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--lora-r", type=int, default=128)
    p.add_argument("--lora-alpha", type=int, default=256)
    p.add_argument("--no-gc", action="store_true", help="no gradient checkpointing")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="where the LLaVA is built (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the numbers here")
    return p.parse_args(argv)


def _random_llama(out: Path, shape: dict, seed: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from plast_plugin.testing.tiny_models import train_tiny_sentencepiece

    train_tiny_sentencepiece(out)  # the benchmark feeds random ids; the tokenizer is only carried along
    cfg = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
                      num_hidden_layers=shape["num_layers"], num_attention_heads=shape["heads"],
                      num_key_value_heads=shape["kv_heads"], tie_word_embeddings=shape["tie"],
                      max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(str(out), safe_serialization=True)
    return out


def build_model(args, work: Path):
    import torch

    from plast_plugin.testing.tiny_models import build_llava_from_llama, make_tiny_clip_vision

    if args.llama:
        llama = Path(args.llama)
        name = str(llama)
    else:
        shape = LLAVA7B_SHAPE if args.shape == "llava7b" else SMOLLM2_SHAPE
        llama = _random_llama(work / "llama", shape, args.seed)
        name = f"random {args.shape or 'smollm2'}-shaped LLaMA"
    clip = make_tiny_clip_vision(work / "clip", seed=args.seed)
    llava_dir = build_llava_from_llama(llama, clip, work / "llava", seed=args.seed)
    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = LlavaLlamaForCausalLM.from_pretrained(str(llava_dir), torch_dtype=dtype)
    model.get_model().get_vision_tower().load_model()
    model.config.use_cache = False
    return model, name


def make_batches(model, args, n):
    import torch

    from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

    gen = torch.Generator().manual_seed(args.seed + 1)
    tower = model.get_model().get_vision_tower()
    size = tower.config.image_size
    num_image_tokens = tower.num_patches
    text_len = args.seq - num_image_tokens + 1
    batches = []
    for _ in range(n):
        ids = torch.randint(3, model.config.vocab_size, (args.batch, text_len), generator=gen)
        ids[:, 0] = 1
        ids[:, 1] = IMAGE_TOKEN_INDEX
        labels = ids.clone()
        labels[:, : text_len // 2] = IGNORE_INDEX  # loss on the "answer" half only
        batches.append(dict(input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids, dtype=torch.bool),
                            images=torch.randn(args.batch, 3, size, size, generator=gen)))
    return batches


def _lm_linear_names(model):
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(k in name for k in ("mm_projector", "vision_tower", "lm_head")):
            names.add(name.split(".")[-1])
    return sorted(names)


def prepare(mode, base, args):
    import torch

    from plast_plugin.freeze import freeze_for_plast
    from plast_plugin.layer_spec import parse_layer_spec
    from plast_plugin.model_layout import find_decoder_layers

    model = copy.deepcopy(base)
    if mode == "full":
        model.requires_grad_(True)
        model.get_model().get_vision_tower().requires_grad_(False)
    elif mode == "plast":
        layers = parse_layer_spec(args.layers, find_decoder_layers(model).num_layers)
        freeze_for_plast(model, layers, args.modules)
    elif mode == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.05, bias="none",
                            target_modules=_lm_linear_names(model), task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
        for p in model.get_model().mm_projector.parameters():  # LLaVA's LoRA recipe also trains it
            p.requires_grad_(True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    if not args.no_gc:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.to(args.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)
    return dict(model=model, optimizer=optimizer, trainable=sum(p.numel() for p in params), times=[])


def step(state, batch, device):
    import torch

    model, optimizer = state["model"], state["optimizer"]
    batch = {k: v.to(device) for k, v in batch.items()}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss.item()


def optimizer_state_bytes(optimizer) -> int:
    import torch

    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if isinstance(v, torch.Tensor))


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="plast_bench_") as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        base, name = build_model(args, work)
        batches = make_batches(base, args, args.warmup + args.steps)
        base_params = sum(p.numel() for p in base.parameters())  # LoRA's adapters not counted
        states = {mode: prepare(mode, base, args) for mode in modes}
        del base
        for i, batch in enumerate(batches):  # round robin: every mode sees the same batch in turn
            for mode in modes:
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                seconds, loss = step(states[mode], batch, args.device)
                if i >= args.warmup:
                    states[mode]["times"].append(seconds)
                if args.device.startswith("cuda"):
                    states[mode]["peak_bytes"] = max(states[mode].get("peak_bytes", 0), torch.cuda.max_memory_allocated())
                print(f"step {i} {mode:>5}: {seconds:7.3f} s  loss {loss:.4f}", flush=True)

    results = {}
    for mode, st in states.items():
        results[mode] = {
            "step_s_median": statistics.median(st["times"]),
            "step_s_all": st["times"],
            "trainable_params": st["trainable"],
            "total_params": base_params,
            "optimizer_state_bytes": optimizer_state_bytes(st["optimizer"]),
            **({"peak_bytes": st["peak_bytes"]} if "peak_bytes" in st else {}),
        }
    ratios = {}
    for ref in ("full", "lora"):
        if "plast" in results and ref in results:
            r, p = results[ref], results["plast"]
            ratios[f"plast/{ref}"] = {
                "step_time": p["step_s_median"] / r["step_s_median"],
                "optimizer_state": p["optimizer_state_bytes"] / r["optimizer_state_bytes"],
                "trainable_params": p["trainable_params"] / r["trainable_params"],
            }
    report = {
        "model": name, "modes": modes, "layers": args.layers, "modules": args.modules, "batch": args.batch,
        "seq": args.seq, "steps": args.steps, "gradient_checkpointing": not args.no_gc, "dtype": args.dtype,
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "threads": args.threads, "machine": platform.processor() or platform.machine(), "python": sys.version.split()[0],
        "torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "results": results, "ratios": ratios,
    }
    print(f"\n{name}; batch {args.batch} x {args.seq} tokens; {report['device']}; gc={not args.no_gc}")
    print(f"{'mode':>6} {'step (s)':>9} {'trainable':>13} {'of total':>9} {'optim state':>12}")
    for mode, r in results.items():
        print(f"{mode:>6} {r['step_s_median']:9.3f} {r['trainable_params']:13,} "
              f"{100 * r['trainable_params'] / r['total_params']:8.2f}% {r['optimizer_state_bytes'] / 2**20:9.1f} MiB"
              + (f"  peak {r['peak_bytes'] / 2**30:.1f} GiB" if "peak_bytes" in r else ""))
    for key, r in ratios.items():
        print(f"{key:>11}: step time {r['step_time']:.3f}, optimizer state {r['optimizer_state']:.3f}, "
              f"trainable params {r['trainable_params']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
