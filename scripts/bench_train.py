#!/usr/bin/env python
"""Training-step benchmark: PLAST vs full fine-tuning vs LoRA, in three ways.

1. ``--count`` (CPU, seconds): counted FLOPs of one training step at the LLaVA-1.5-7B shape
   (``--shape llava7b``; 32 layers, d 4096, FFN 11008, vocab 32000, CLIP-L/336 with 576 image
   tokens), built by LLaVA's own classes on the meta device (no weights, no hub), for full,
   LoRA r128 and PLAST with each of ``--count-layers`` (default 0-4 and 16-20), checkpointing on
   and off; plus the static memory model (weights, gradients, optimizer state) per GPU for plain
   data parallelism, ZeRO-2 and ZeRO-3 on ``--gpus`` GPUs. One line per figure, e.g.
   ``flops-ratio plast/full layers=0-4 gc=on 0.747``. ``plast-upstream`` is PLAST through LLaVA's
   own checkpointing path (``--plast_short_backward False``). See scripts/llava_cost_model.py.

2. ``--shape llava7b|llava13b|tiny`` (GPU): times each method in isolation on random weights
   built directly on the device in bf16 (``--dtype``; default bf16 on CUDA): per configuration
   (method x ``--gc on,off`` x ``--batches``) a fresh model, ``torch.cuda.reset_peak_memory_stats``,
   ``--warmup`` + ``--steps`` steps, the peak, then everything freed. Results go to ``--json``
   after every configuration, so a run cut short keeps what it measured; ``--time-budget`` stops
   starting new configurations. ``scripts/bench_gpu.sh`` is the prepared 10-minute run.
   ``--shape tiny --device cpu`` runs the same code on a CPU (the tests do).

3. ``--llama PATH`` / ``--tiny`` (CPU): one LLaVA from a LLaMA checkpoint (e.g. the demo's
   SmolLM2-135M at .cache/demo/smollm2) with a tiny vision tower, or a random LLaMA of SmolLM2's
   shape; the three methods' steps interleaved round by round on the same batches, so that
   machine noise hits all alike.

All methods use LLaVA's setup (llava_cost_model.prepare_for_training; PLAST's short backward
unless ``--llava-path`` in 3) and AdamW. Reported: step time (median),
trainable parameters, optimizer-state bytes, peak memory (GPU), and PLAST / full, PLAST / LoRA.

    python scripts/bench_train.py --shape llava7b --count
    python scripts/bench_train.py --shape llava7b --device cuda --json runs/bench/gpu.json
    python scripts/bench_train.py --llama .cache/demo/smollm2 --steps 5
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

from llava_cost_model import (SHAPES, ZERO_STAGES, Setup, activation_profile, base_llava, build_llava,
                              count_step_flops, get_shape, multimodal_inputs, prepare_for_training, static_memory,
                              training_step)

SMOLLM2_SHAPE = dict(num_layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, vocab=49152, tie=True)
LLAVA_SHAPES = tuple(SHAPES)  # LLaVA-1.5 built directly on the device


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--llama", help="a LLaMA checkpoint directory (safetensors + tokenizer)")
    src.add_argument("--tiny", action="store_true", help="a random LLaMA of SmolLM2-135M's shape")
    src.add_argument("--shape", choices=("smollm2", *LLAVA_SHAPES),
                     help="random weights of this shape (llava7b/llava13b/tiny: LLaVA-1.5 built on --device)")
    p.add_argument("--count", action="store_true",
                   help="count FLOPs on the meta device and print the memory model (no timing; --shape llava*/tiny)")
    p.add_argument("--selections", nargs="+", default=["0-4", "16-20"],
                   help="PLAST layer specs for --count and --shape llava* (default: 0-4 16-20)")
    p.add_argument("--gpus", nargs="+", type=int, default=[1, 8], help="--count: GPU counts of the memory model")
    p.add_argument("--gc", default="on,off", help="--count / --shape llava*: checkpointing settings to run")
    p.add_argument("--batches", default="4,16",
                   help="--shape llava*: batch sizes to time; --count: batch sizes of the activation estimate")
    p.add_argument("--time-budget", type=float, default=None,
                   help="--shape llava*: seconds after which no new configuration is started")
    p.add_argument("--layers", default="1-5", help="--llama/--tiny: PLAST layers (spec, default 1-5)")
    from plast_plugin.core.model_layout import MODULE_CHOICES

    p.add_argument("--modules", default="layer", choices=MODULE_CHOICES)
    p.add_argument("--modes", default="full,plast,lora", help="comma-separated subset of full,plast,lora")
    p.add_argument("--batch", type=int, default=2, help="--llama/--tiny: batch size")
    p.add_argument("--seq", type=int, default=None,
                   help="tokens per sequence incl. image tokens (default 2048 for llava shapes, else 128)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--lora-r", type=int, default=128)
    p.add_argument("--lora-alpha", type=int, default=256)
    p.add_argument("--no-gc", action="store_true", help="--llama/--tiny: no gradient checkpointing")
    p.add_argument("--llava-path", action="store_true",
                   help="--llama/--tiny: PLAST through LLaVA's own checkpointing path (--plast_short_backward False)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16"), help="default: bf16 on CUDA, else fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="where the LLaVA is built (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    llava_shape = args.shape in LLAVA_SHAPES
    if args.count and not llava_shape:
        p.error(f"--count needs --shape {' or '.join(LLAVA_SHAPES)}")
    if args.seq is None:
        args.seq = 2048 if llava_shape else 128
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    args.gc_settings = [_on_off(v, "--gc") for v in args.gc.split(",") if v.strip()]
    try:
        args.batch_sizes = [int(v) for v in args.batches.split(",") if v.strip()]
    except ValueError:
        p.error(f"--batches {args.batches!r}: comma-separated integers, e.g. 4,16")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.mode_list) - {"full", "plast", "lora"})
    if unknown:
        p.error(f"--modes: unknown {unknown}; choose from full, plast, lora")
    return args


def _on_off(value: str, flag: str) -> bool:
    value = value.strip().lower()
    if value not in ("on", "off"):
        raise SystemExit(f"{flag}: {value!r} is neither 'on' nor 'off'")
    return value == "on"


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
        llama = _random_llama(work / "llama", SMOLLM2_SHAPE, args.seed)
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


def prepare(mode, base, args):
    import torch

    from plast_plugin.core.model_layout import find_decoder_layers

    layers = _selection_layers(args.layers, find_decoder_layers(base).num_layers) if mode == "plast" else ()
    setup = Setup(mode, layers, not args.no_gc, short_backward=not args.llava_path, lora_r=args.lora_r,
                  lora_alpha=args.lora_alpha, modules=args.modules)
    model = prepare_for_training(copy.deepcopy(base), setup)
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


def _selection_layers(spec: str, num_layers: int) -> tuple[int, ...]:
    from plast_plugin.core.layer_spec import parse_layer_spec

    return tuple(parse_layer_spec(spec, num_layers))


def _gc_tag(gc: bool) -> str:
    return "on" if gc else "off"


def run_count(args) -> int:
    """Counted FLOPs per method on the meta device + the static memory model; one line per figure."""
    import torch

    shape = get_shape(args.shape)
    lora = dict(lora_r=args.lora_r, lora_alpha=args.lora_alpha)
    counts = {}
    for gc in args.gc_settings:
        counts[("full", None, gc)] = count_step_flops(shape, Setup("full", gradient_checkpointing=gc), 1, args.seq)
        counts[("lora", None, gc)] = count_step_flops(shape, Setup("lora", gradient_checkpointing=gc, **lora), 1, args.seq)
        for spec in args.selections:
            layers = _selection_layers(spec, shape.layers)
            counts[("plast", spec, gc)] = count_step_flops(shape, Setup("plast", layers, gc), 1, args.seq)
            counts[("plast-upstream", spec, gc)] = count_step_flops(
                shape, Setup("plast", layers, gc, short_backward=False), 1, args.seq)

    print(f"# {shape.name}: {shape.layers} layers, d {shape.hidden}, FFN {shape.ffn}, vocab {shape.vocab}, "
          f"{shape.image_tokens} image tokens; one sample of {args.seq} tokens; eager attention; "
          f"FLOPs of forward + backward (+ recomputation) counted by torch.utils.flop_counter on the meta device; "
          f"torch {torch.__version__}")
    flops, ratios = {}, {}
    for (method, spec, gc), c in counts.items():
        key = f"{method}{f' layers={spec}' if spec else ''} gc={_gc_tag(gc)}"
        flops[key] = c.flops
        print(f"flops {key} {c.flops / 1e12:.3f} TFLOP")
    for gc in args.gc_settings:
        for spec in args.selections:
            for method, ref in (("plast", "full"), ("plast", "lora"), ("plast-upstream", "full"), ("plast-upstream", "lora")):
                key = f"{method}/{ref} layers={spec} gc={_gc_tag(gc)}"
                ratios[key] = counts[(method, spec, gc)].flops / counts[(ref, None, gc)].flops
                print(f"flops-ratio {key} {ratios[key]:.3f}")

    activations = []
    for method, spec in [("full", None), ("lora", None)] + [(m, s) for s in args.selections for m in ("plast", "plast-upstream")]:
        layers = _selection_layers(spec, shape.layers) if spec else ()
        setup = Setup("plast" if spec else method, layers, short_backward=method == "plast", **lora)
        one = activation_profile(shape, setup, 1, args.seq)
        label = f"{method}{f' layers={spec}' if spec else ''}"
        for batch in args.batch_sizes:
            profile = one.scaled(batch)
            for gc, value in ((True, profile.with_checkpointing), (False, profile.without_checkpointing)):
                if gc in args.gc_settings:
                    activations.append(dict(method=method, layers=spec, gc=gc, batch=batch, bytes=value))
                    print(f"activations-gb {label} gc={_gc_tag(gc)} batch={batch} {value / 1e9:.1f}")

    memory = []
    gc0 = args.gc_settings[0]
    methods = [("full", None), ("lora", None)] + [("plast", spec) for spec in args.selections]
    for method, spec in methods:
        c = counts[(method, spec, gc0)]
        label = f"{method}{f' layers={spec}' if spec else ''}"
        print(f"params {label} trainable={c.trainable_params} total={c.total_params}")
        for stage in ZERO_STAGES:
            for gpus in args.gpus:
                m = static_memory(c.total_params, c.trainable_params, stage, gpus)
                memory.append(dict(method=method, layers=spec, stage=stage, gpus=gpus, weights=m.weights,
                                   gradients=m.gradients, optimizer=m.optimizer, total=m.total))
                print(f"memory-gb {label} stage={stage} gpus={gpus} weights={m.weights / 1e9:.2f} "
                      f"grads={m.gradients / 1e9:.2f} optimizer={m.optimizer / 1e9:.2f} total={m.total / 1e9:.2f}")
    if args.json:
        report = dict(shape=shape.name, seq=args.seq, batch=1, torch=torch.__version__,
                      date=datetime.datetime.now().isoformat(timespec="seconds"), flops=flops, ratios=ratios,
                      params={f"{m}{f' layers={s}' if s else ''}": [counts[(m, s, gc0)].trainable_params,
                                                                   counts[(m, s, gc0)].total_params] for m, s in methods},
                      memory=memory, activations=activations)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _isolated_configs(args, num_layers):
    configs = []
    for gc in args.gc_settings:
        for batch in args.batch_sizes:
            for mode in args.mode_list:
                for spec in (args.selections if mode == "plast" else [None]):
                    layers = _selection_layers(spec, num_layers) if spec else ()
                    configs.append((mode, spec, layers, gc, batch))
    return configs


def measure_isolated(args, shape, mode, spec, layers, gc, batch) -> dict:
    """One configuration on a fresh model: build on the device, set up as LLaVA would, time
    ``--warmup`` + ``--steps`` steps; the peak memory is this configuration's alone."""
    import gc as garbage
    import torch

    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    entry = dict(method=mode, layers=spec, gc=gc, batch=batch, seq=args.seq)
    model = optimizer = None

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        model = build_llava(shape, device=args.device, dtype=dtype, attn_implementation="sdpa")
        model = prepare_for_training(model, Setup(mode, layers, gc, lora_r=args.lora_r, lora_alpha=args.lora_alpha))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
        sync()
        entry["build_s"] = time.perf_counter() - start
        if cuda:
            entry["model_bytes"] = torch.cuda.memory_allocated()
        images, input_ids, labels = multimodal_inputs(base_llava(model), batch, args.seq, device=args.device,
                                                      seed=args.seed)
        times, losses = [], []
        for i in range(args.warmup + args.steps):
            sync()
            t = time.perf_counter()
            loss = training_step(model, images, input_ids, labels)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
            losses.append(loss.item())
        entry.update(step_s=times, step_s_median=statistics.median(times), losses=losses,
                     tokens_per_s=batch * args.seq / statistics.median(times),
                     trainable_params=sum(p.numel() for p in params),
                     total_params=sum(p.numel() for p in model.parameters()),
                     optimizer_state_bytes=optimizer_state_bytes(optimizer))
        if cuda:
            entry["peak_bytes"] = torch.cuda.max_memory_allocated()
    except torch.cuda.OutOfMemoryError as err:  # a result too: this method does not fit at this batch
        entry["error"] = f"out of memory: {str(err).splitlines()[0]}"
    finally:
        del model, optimizer
        garbage.collect()
        if cuda:
            torch.cuda.empty_cache()
    return entry


def _isolated_ratios(results) -> dict:
    done = {(r["method"], r["layers"], r["gc"], r["batch"]): r for r in results if "step_s_median" in r}
    ratios = {}
    for (method, spec, gc, batch), r in done.items():
        if method != "plast":
            continue
        for ref in ("full", "lora"):
            other = done.get((ref, None, gc, batch))
            if other:
                key = f"plast/{ref} layers={spec} gc={_gc_tag(gc)} batch={batch}"
                ratios[key] = {"step_time": r["step_s_median"] / other["step_s_median"]}
                if "peak_bytes" in r and "peak_bytes" in other:
                    ratios[key]["peak_memory"] = r["peak_bytes"] / other["peak_bytes"]
    return ratios


def run_isolated(args) -> int:
    import torch

    shape = get_shape(args.shape)
    cuda = args.device.startswith("cuda")
    report = {
        "shape": shape.name, "device": torch.cuda.get_device_name() if cuda else args.device, "dtype": args.dtype,
        "seq": args.seq, "steps": args.steps, "warmup": args.warmup, "selections": args.selections,
        "attention": "sdpa (LLaMA), eager (CLIP)", "optimizer": "torch AdamW on the trainable parameters",
        "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "results": [], "ratios": {},
    }
    if cuda:
        report["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    start = time.perf_counter()
    for mode, spec, layers, gc, batch in _isolated_configs(args, shape.layers):
        label = f"{mode}{f' layers={spec}' if spec else ''} gc={_gc_tag(gc)} batch={batch}"
        if args.time_budget is not None and time.perf_counter() - start > args.time_budget:
            entry = dict(method=mode, layers=spec, gc=gc, batch=batch, seq=args.seq,
                         error="not run: --time-budget spent")
        else:
            entry = measure_isolated(args, shape, mode, spec, layers, gc, batch)
        report["results"].append(entry)
        report["ratios"] = _isolated_ratios(report["results"])
        report["elapsed_s"] = time.perf_counter() - start
        if args.json:  # after every configuration: a run cut short keeps what it measured
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        if "error" in entry:
            print(f"{label}: {entry['error']}", flush=True)
        else:
            peak = f", peak {entry['peak_bytes'] / 2**30:.1f} GiB" if "peak_bytes" in entry else ""
            print(f"{label}: step {entry['step_s_median']:.3f} s ({entry['tokens_per_s']:.0f} tokens/s){peak}, "
                  f"build {entry['build_s']:.1f} s, loss {entry['losses'][-1]:.3f}", flush=True)
    for key, r in report["ratios"].items():
        print(f"time-ratio {key} {r['step_time']:.3f}" + (f" peak-ratio {r['peak_memory']:.3f}" if "peak_memory" in r else ""))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.count:
        return run_count(args)
    if args.shape in LLAVA_SHAPES:
        return run_isolated(args)
    modes = args.mode_list
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
