#!/usr/bin/env bash
# The GPU training benchmark at the LLaVA-1.5-7B shape, sized for one 10-minute window on one
# H100/H200 that reaches no registry and no model hub. Two steps:
#
#   bash scripts/bench_gpu.sh fetch     # once, where pip reaches PyPI: wheels -> .gpu_wheels/
#   bash scripts/bench_gpu.sh run       # on the GPU machine (default): install them, benchmark
#
# `fetch` downloads, for the GPU machine's Python (PYVER, default 3.12) and without dependencies,
# exactly what LLaVA's training code needs beyond that machine's own torch/numpy/safetensors/
# pillow: transformers 4.37.2 (LLaVA's pin) with the tokenizers and huggingface_hub versions it
# accepts, peft 0.10.0 + accelerate 0.34.2 (LoRA), and the official LLaVA code (llava-torch).
# About 14 MB; .gpu_wheels/ is git-ignored and travels with the working tree.
#
# `run` installs them into .gpu_site/ (never into the machine's environment), then runs
# scripts/bench_train.py --shape llava7b --device cuda: every configuration (full, PLAST 0-4,
# PLAST 16-20, LoRA r128; checkpointing on and off; batch 4 and 16; seq 2048) on a fresh model
# built directly on the GPU in bf16 from the config (random weights: no checkpoint is read),
# its own peak memory, 1 warm-up + 3 timed steps. It writes $OUT (default
# runs/bench/gpu_llava7b.json) after every configuration; BUDGET (default 420 s) stops starting
# new ones, so the whole run ends inside the window even if a step is slower than expected.
# Configurations that do not fit are recorded as "out of memory" (full fine-tuning with plain
# torch AdamW does not fit at batch 16 without checkpointing on any single GPU).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
WHEELS="${WHEELS:-$REPO/.gpu_wheels}"
SITE="${SITE:-$REPO/.gpu_site}"
PYTHON="${PYTHON:-python3}"
PACKAGES=(transformers==4.37.2 tokenizers==0.15.1 huggingface_hub==0.36.2 peft==0.10.0 accelerate==0.34.2
          llava-torch==1.2.2.post1)

case "${1:-run}" in
  fetch)
    PYVER="${PYVER:-3.12}"
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d "$WHEELS" "${PACKAGES[@]}"
    du -sh "$WHEELS"
    ;;
  run)
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run 'bash scripts/bench_gpu.sh fetch' first (where PyPI is reachable)" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE:$REPO" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
    # LLaVA's import hook is not installed here; the benchmark does not train through train().
    OUT="${OUT:-$REPO/runs/bench/gpu_llava7b.json}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    exec "$PYTHON" "$REPO/scripts/bench_train.py" --shape llava7b --device cuda \
      --modes full,plast,lora --selections 0-4 16-20 --gc "${GC:-on,off}" --batches "${BATCHES:-4,16}" \
      --seq 2048 --warmup 1 --steps "${STEPS:-3}" --time-budget "${BUDGET:-420}" --json "$OUT"
    ;;
  *)
    echo "usage: bash scripts/bench_gpu.sh [fetch|run]" >&2; exit 2 ;;
esac
