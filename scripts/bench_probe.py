#!/usr/bin/env python
"""Probe overhead and probe memory, measured side by side in one run on the same batches.

    .envs/eval/bin/python scripts/bench_probe.py [--device cpu|cuda] [--json runs/bench/probe.json]

(a) time: the probe pass (the decoder forward with the `ActivationCounter` hooks active and
    the counted positions set, exactly as `run_probe` does) versus the plain pass (the same
    call of the same family adapter on the same batches, no hooks), and a no-op pass (a hook
    that does nothing on every layer's gate_proj: the cost of having hooks at all, and a noise
    baseline, since it should be ~1.00). The three alternate batch by batch, their order
    rotating; the medians of the per-repeat totals are compared, and the spread over repeats
    (min / max of the per-repeat ratios) shows how far one repeat can be trusted on a shared
    machine. Goal: probe / plain <= 1.10.
(b) memory: the probe's peak memory above its starting point when the number of questions
    grows 10x (default 56 -> 560, so that both fill their batches). On CUDA:
    torch.cuda.max_memory_allocated; on CPU: the peak of glibc's live malloc bytes (mallinfo2;
    RSS where unavailable) sampled every 2 ms, each size in a fresh subprocess after a warm-up
    forward. Must stay flat: nothing per token is stored, the counts are a fixed
    [groups, layers, neurons] int64 tensor.

Model: SmolLM2-135M from .cache/demo/smollm2 (scripts/demo_assets.py) when present, else a
random LLaMA of the same shape built in memory. Questions: .cache/demo/questions.jsonl when
present, else random token ids of the same lengths range.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / ".cache" / "demo" / "smollm2"
DEMO_QUESTIONS = REPO / ".cache" / "demo" / "questions.jsonl"
NUM_GROUPS = 7  # 5 languages + the two pivot halves, as `plast select` on the demo data


def load_model(args):
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if args.model != "random" and Path(args.model).is_dir():
        from plast_plugin.models.loading import load_for_probe

        model, tokenizer, _ = load_for_probe(str(args.model), args.device, args.dtype)
        return model, tokenizer, f"{args.model}"
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         rope_theta=100000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to(args.device, dtype).eval()
    return model, None, "random LLaMA, SmolLM2-135M shape (30 layers, d 576, FFN 1536)"


def make_prompts(tokenizer, count: int, max_tokens: int, seed: int = 0):
    """`count` encoded prompts (group = i % NUM_GROUPS), question tokens truncated to max_tokens."""
    from plast_plugin.models.probe_inputs import QUESTION, SYSTEM, EncodedPrompt, encode_prompt

    rng = random.Random(seed)
    texts = []
    if tokenizer is not None and DEMO_QUESTIONS.is_file():
        texts = [json.loads(line)["question"] for line in DEMO_QUESTIONS.open(encoding="utf-8")]
        rng.shuffle(texts)
    prompts = []
    for i in range(count):
        group = i % NUM_GROUPS
        if texts:
            prompts.append(encode_prompt(tokenizer, texts[i % len(texts)], prompt="plain",
                                         max_question_tokens=max_tokens, image_ids=None, group=group))
        else:
            length = rng.randint(max_tokens // 2, max_tokens)
            ids = [1] + [rng.randrange(3, 49152) for _ in range(length)]
            prompts.append(EncodedPrompt(group, ids, [SYSTEM] + [QUESTION] * length))
    return prompts


def make_batches(prompts, batch_size: int, pad_id: int):
    from plast_plugin.models.probe_inputs import make_batches as group_batches
    from plast_plugin.models.probe_inputs import pad_batch

    return [pad_batch(chunk, "question", pad_id) for chunk in group_batches(prompts, batch_size)]


def setup(args):
    import torch

    from plast_plugin.core.model_layout import find_decoder_layers
    from plast_plugin.models.probe_models import family_for

    torch.set_num_threads(args.threads)
    model, tokenizer, name = load_model(args)
    layout = find_decoder_layers(model)
    family = family_for(model, layout)
    pad_id = 0
    if tokenizer is not None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return model, tokenizer, name, layout, family, pad_id


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_passes(args) -> dict:
    import torch

    from plast_plugin.core.probe import ActivationCounter

    model, tokenizer, name_of_model, layout, family, pad_id = setup(args)
    batches = make_batches(make_prompts(tokenizer, args.time_samples, args.max_question_tokens),
                           args.batch_size, pad_id)
    counter = ActivationCounter(layout, NUM_GROUPS, family.device)

    def plain(batch) -> float:
        _sync(args.device)
        start = time.perf_counter()
        family.run(batch, "question", lambda mask: None)
        _sync(args.device)
        return time.perf_counter() - start

    def probe(batch) -> float:
        # Hooks on for this batch only: registering one hook per layer costs microseconds.
        _sync(args.device)
        start = time.perf_counter()
        with counter:
            family.run(batch, "question", lambda mask, groups=batch.groups: counter.set_batch(mask, groups))
        _sync(args.device)
        return time.perf_counter() - start

    def noop(batch) -> float:
        # The same number of hooks, doing nothing: what remains is hook dispatch + noise.
        handles = [layer.mlp.gate_proj.register_forward_hook(lambda module, inputs, output: None)
                   for layer in layout.layers]
        try:
            _sync(args.device)
            start = time.perf_counter()
            family.run(batch, "question", lambda mask: None)
            _sync(args.device)
            return time.perf_counter() - start
        finally:
            for handle in handles:
                handle.remove()

    # Interleaved per batch (order rotating), so that load from other processes hits all passes
    # alike; a pass time is the sum over the batches of one repeat.
    passes = {"plain": plain, "noop": noop, "probe": probe}
    names = list(passes)
    totals = {name: [] for name in names}
    pair_ratios = {"probe": [], "noop": []}
    best = {name: [float("inf")] * len(batches) for name in names}
    with torch.no_grad():
        for batch in batches:  # warm-up (allocator, kernels)
            for run in passes.values():
                run(batch)
        for repeat in range(args.repeats):
            repeat_totals = dict.fromkeys(names, 0.0)
            for index, batch in enumerate(batches):
                shift = (repeat + index) % len(names)
                seconds = {}
                for name in names[shift:] + names[:shift]:
                    seconds[name] = passes[name](batch)
                    repeat_totals[name] += seconds[name]
                    best[name][index] = min(best[name][index], seconds[name])
                for name in pair_ratios:
                    pair_ratios[name].append(seconds[name] / seconds["plain"])
            for name in names:
                totals[name].append(repeat_totals[name])
    plain_s, probe_s, noop_s = totals["plain"], totals["probe"], totals["noop"]
    tokens = int(sum(int(b.attention_mask.sum()) for b in batches))
    per_repeat = [p / q for p, q in zip(probe_s, plain_s)]
    noop_per_repeat = [p / q for p, q in zip(noop_s, plain_s)]
    return {
        "model": name_of_model, "num_layers": layout.num_layers, "ffn_width": layout.ffn_width,
        "questions": args.time_samples, "batches": len(batches), "tokens": tokens, "repeats": args.repeats,
        "plain_s": plain_s, "probe_s": probe_s, "noop_s": noop_s,
        "plain_median_s": statistics.median(plain_s), "probe_median_s": statistics.median(probe_s),
        "noop_median_s": statistics.median(noop_s),
        "ratio": statistics.median(probe_s) / statistics.median(plain_s),
        "ratio_per_repeat": per_repeat, "ratio_spread": [min(per_repeat), max(per_repeat)],
        "noop_ratio": statistics.median(noop_s) / statistics.median(plain_s),
        "noop_ratio_per_repeat": noop_per_repeat, "noop_ratio_spread": [min(noop_per_repeat), max(noop_per_repeat)],
        # Robust on a shared machine: each batch's passes run back to back.
        "ratio_median_of_pairs": statistics.median(pair_ratios["probe"]),
        "noop_ratio_median_of_pairs": statistics.median(pair_ratios["noop"]),
        "ratio_of_minimums": sum(best["probe"]) / sum(best["plain"]),
        "noop_ratio_of_minimums": sum(best["noop"]) / sum(best["plain"]),
        "counted_tokens_per_pass": int(counter.tokens.sum()) // (args.repeats + 1),
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _heap_meter():
    """(name, function -> bytes in use). glibc's mallinfo2 counts live allocations only (torch's
    CPU tensors come from malloc), so freed-but-cached memory does not blur it as it does RSS."""
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                "fordblks", "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2

        def in_use() -> int:
            info = libc.mallinfo2()
            return int(info.uordblks + info.hblkhd)

        in_use()
        return "malloc in use (glibc mallinfo2, sampled 2 ms)", in_use
    except (OSError, AttributeError):
        return "peak RSS (sampled 2 ms)", _rss_bytes


def memory_child(args) -> dict:
    """One probe over `args.memory_child` questions; peak memory above the start of the probe."""
    import torch

    from plast_plugin.core.probe import run_probe

    model, tokenizer, name, layout, family, pad_id = setup(args)
    batches = make_batches(make_prompts(tokenizer, args.memory_child, args.max_question_tokens),
                           args.batch_size, pad_id)
    cuda = args.device.startswith("cuda")
    # Warm-up: one plain forward of the largest batch first, so the baseline already holds the
    # touched weights (safetensors are memory-mapped) and the allocator's working set.
    with torch.no_grad():
        family.run(max(batches, key=lambda b: b.input_ids.numel()), "question", lambda mask: None)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        measure, meter = _heap_meter()
        base, peak, stop = meter(), [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], meter())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    start = time.perf_counter()
    counts = run_probe(family, layout, batches, NUM_GROUPS, positions="question", progress=False)
    seconds = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize()
        peak_above = torch.cuda.max_memory_allocated() - base
    else:
        stop.set()
        sampler.join()
        peak_above = max(peak[0], meter()) - base
    return {"questions": args.memory_child, "batches": len(batches),
            "tokens": int(sum(int(b.attention_mask.sum()) for b in batches)),
            "counted_tokens": int(counts.tokens.sum()), "probe_s": seconds,
            "peak_above_start_bytes": int(peak_above),
            "counts_bytes": counts.counts.numel() * counts.counts.element_size(),
            "measure": "torch.cuda.max_memory_allocated" if cuda else measure}


def machine() -> dict:
    import torch

    info = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEMO_MODEL) if DEMO_MODEL.is_dir() else "random",
                        help="a model directory, or 'random' (default: the demo's SmolLM2 when built)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="questions per forward (default: 8 on CPU, 32 on CUDA, as `plast select`)")
    parser.add_argument("--max-question-tokens", type=int, default=64)
    parser.add_argument("--time-samples", type=int, default=56,
                        help="questions in the timed batches (default 56: 7 groups x one batch of 8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved plain/probe repeats")
    parser.add_argument("--memory-samples", default="56,560",
                        help="question counts for the memory check (default 56,560: full batches of 8 in both)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    sys.path.insert(0, str(REPO))
    if args.batch_size is None:
        from plast_plugin.pipeline import default_batch_size

        args.batch_size = default_batch_size(args.device)

    if args.memory_child is not None:
        print(json.dumps(memory_child(args)))
        return 0

    info = machine()
    print(f"[bench-probe] {info}", flush=True)
    timing = time_passes(args)
    print(f"[bench-probe] timing done: ratio {timing['ratio']:.3f}", flush=True)
    memory = []
    for count in [int(x) for x in args.memory_samples.split(",")]:
        child = [sys.executable, __file__, "--memory-child", str(count), "--model", str(args.model),
                 "--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads),
                 "--batch-size", str(args.batch_size), "--max-question-tokens", str(args.max_question_tokens)]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"the memory measurement for {count} questions failed")
        memory.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"[bench-probe] memory for {count} questions measured", flush=True)

    mib = 2 ** 20
    print()
    print(f"model: {timing['model']} ({timing['num_layers']} layers, FFN {timing['ffn_width']}); "
          f"device {args.device}, {args.dtype}, {args.threads} thread(s), batch {args.batch_size}, "
          f"question tokens <= {args.max_question_tokens}")
    print(f"machine: {info['cpu']}, {info['cores']} cores{', ' + info['gpu'] if 'gpu' in info else ''}; "
          f"torch {info['torch']}, transformers {info.get('transformers')}; {info['date']}")
    print()
    print(f"(a) time, same {timing['batches']} batches ({timing['questions']} questions, {timing['tokens']} tokens), "
          f"{timing['repeats']} interleaved repeats")
    print(f"    {'pass':<8} {'median s':>9}   per repeat")
    print(f"    {'plain':<8} {timing['plain_median_s']:>9.3f}   " + " ".join(f"{x:.3f}" for x in timing["plain_s"]))
    print(f"    {'noop':<8} {timing['noop_median_s']:>9.3f}   " + " ".join(f"{x:.3f}" for x in timing["noop_s"]))
    print(f"    {'probe':<8} {timing['probe_median_s']:>9.3f}   " + " ".join(f"{x:.3f}" for x in timing["probe_s"]))
    verdict = "meets" if timing["ratio"] <= 1.10 else "MISSES"
    for key, label in (("", "probe / plain"), ("noop_", "noop  / plain")):
        spread = timing[f"{key}ratio_spread"]
        print(f"    {label} = {timing[f'{key}ratio']:.3f} (medians of pass totals); spread over repeats "
              f"{spread[0]:.3f}-{spread[1]:.3f}; median of {timing['repeats'] * timing['batches']} back-to-back "
              f"batch pairs {timing[f'{key}ratio_median_of_pairs']:.3f}; ratio of per-batch minimums "
              f"{timing[f'{key}ratio_of_minimums']:.3f}")
    print(f"    goal probe / plain <= 1.10: {verdict}; the no-op hook shows the noise floor (ideal 1.000)")
    print()
    print(f"(b) memory above the start of the probe ({memory[0]['measure']}); counts tensor "
          f"{memory[0]['counts_bytes'] / mib:.1f} MiB")
    print(f"    {'questions':>9} {'tokens':>7} {'probe s':>8} {'peak MiB':>9} {'x first':>8}")
    for row in memory:
        print(f"    {row['questions']:>9} {row['tokens']:>7} {row['probe_s']:>8.1f} "
              f"{row['peak_above_start_bytes'] / mib:>9.1f} {row['peak_above_start_bytes'] / max(1, memory[0]['peak_above_start_bytes']):>8.2f}")
    growth = memory[-1]["peak_above_start_bytes"] / max(1, memory[0]["peak_above_start_bytes"])
    print(f"    {memory[-1]['questions'] / memory[0]['questions']:.0f}x questions -> {growth:.2f}x peak memory")
    stored = memory[-1]["counted_tokens"] * timing["num_layers"] * timing["ffn_width"]
    print(f"    (keeping per-token activation flags instead would need {stored / mib:.0f} MiB as bool, "
          f"{4 * stored / mib:.0f} MiB as fp32, for {memory[-1]['questions']} questions)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "device": args.device, "dtype": args.dtype,
                                         "threads": args.threads, "batch_size": args.batch_size,
                                         "max_question_tokens": args.max_question_tokens,
                                         "time": timing, "memory": memory,
                                         "memory_growth": growth}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
