#!/usr/bin/env bash
# Benchmark of `plast ablate` on the demo's real model, on CPU: does the PLAST selection beat first:5,
# last:5, random draws of 5 layers and the layers of rule msd-top:5 (budget-matched), and how does it
# compare with LLaVA's own full and LoRA fine-tuning (reference rows, not budget-matched), by the three
# held-out measures (translation loss, understanding gap, English retention), with seeds and 95% intervals?
#   - SmolLM2-135M-Instruct in an official-format LLaVA (the demo's build: real LM weights, a small
#     random vision tower), the demo's parallel questions (final question sentence of each problem)
#   - the selection: `plast select` with the demo's options on the training split (reused if present)
#   - `plast ablate` at each training budget in BENCH_STEPS (batch 1, lr 1e-4, cosine), BENCH_SEEDS seeds,
#     BENCH_DRAWS random draws; translation loss on the 20 held-out questions x 5 languages; understanding
#     and retention on held-out problems (scripts/demo_assets.py's problems_heldout.jsonl, from templates
#     never probed or trained on): by default the 20 problems as shipped, one per held-out template
#     (BENCH_PROBLEMS=all: all 120, about 90 s more scoring per run, which takes the 200-step budget past
#     an hour on 2 cores)
# Prints, per budget, the wall time, the load average before and after, and the ablation's tables and verdicts.
#
# Knobs: DEMO_ASSETS=.cache/demo (from scripts/demo_assets.py), BENCH_OUT=runs/bench_ablate,
#        BENCH_STEPS="100 200", BENCH_SEEDS=3, BENCH_DRAWS=2,
#        BENCH_ALTERNATIVES=first,last,random,rule:msd-top:5,full,lora, BENCH_PROBLEMS=shipped|all,
#        OMP_NUM_THREADS (default 2).
# Run it in the training env's reach: scripts/envs.sh must have built .envs/train and .envs/eval
# (or set TRAIN_PY / EVAL_PY to those environments' python).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ASSETS="${DEMO_ASSETS:-.cache/demo}"
OUT="${BENCH_OUT:-runs/bench_ablate}"
BUDGETS="${BENCH_STEPS:-100 200}"
SEEDS="${BENCH_SEEDS:-3}"
DRAWS="${BENCH_DRAWS:-2}"
ALTERNATIVES="${BENCH_ALTERNATIVES:-first,last,random,rule:msd-top:5,full,lora}"
PROBLEMS="${BENCH_PROBLEMS:-shipped}"
TRAIN_PY="${TRAIN_PY:-.envs/train/bin/python}"
EVAL_PY="${EVAL_PY:-.envs/eval/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true TOKENIZERS_PARALLELISM=false
for f in smollm2/model.safetensors questions_train.jsonl questions_heldout.jsonl problems_heldout.jsonl; do
    [ -e "$ASSETS/$f" ] || { echo "missing $ASSETS/$f: build the demo's assets with scripts/demo_assets.py" >&2; exit 1; }
done
mkdir -p "$OUT"

echo "== selection (plast select, the demo's options; reused when present)"
if [ ! -e "$OUT/select/plast_layers.json" ]; then
    "$(dirname "$EVAL_PY")/plast" select --model "$ASSETS/smollm2" --data "$ASSETS/questions_train.jsonl" \
        --languages zh,pt,ar,tr,ru --pivot en --out "$OUT/select" \
        --device cpu --dtype fp32 --batch-size 16 --prompt plain --max-question-tokens 64
fi

echo "== LLaVA from SmolLM2, the demo's question sentences, plast build-data (reused when present)"
"$TRAIN_PY" - "$ASSETS" "$OUT" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "scripts")
import demo_train  # the demo's own builders: the same model and data as the demo

assets, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
demo_train.ASSETS = assets
demo_train.build_llava(out / "llava_smollm2")
for split in ("train", "heldout"):
    target = out / "data" / f"questions_{split}.jsonl"
    if not target.exists():
        demo_train.question_sentences(assets / f"questions_{split}.jsonl", target)
PY
if [ ! -e "$OUT/data/problems_$PROBLEMS.jsonl" ]; then
    "$TRAIN_PY" - "$ASSETS/problems_heldout.jsonl" "$OUT/data/problems_$PROBLEMS.jsonl" "$PROBLEMS" <<'PY'
import json, sys
source, target, which = sys.argv[1:]
if which not in ("shipped", "all"):
    sys.exit(f"BENCH_PROBLEMS={which}: give 'shipped' (the 20 problems as shipped, one per template) or 'all'")
rows = [json.loads(line) for line in open(source, encoding="utf-8")]
# ids are gsm-<template>-<k>; k=0 is the problem as the package ships it
keep = [r for r in rows if which == "all" or r["id"].endswith("-0")]
with open(target, "w", encoding="utf-8") as handle:
    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in keep)
print(f"held-out problems: {len({r['id'] for r in keep})} ({which})")
PY
fi
if [ ! -e "$OUT/data/train.json" ]; then
    "$(dirname "$TRAIN_PY")/plast" build-data --data "$OUT/data/questions_train.jsonl" \
        --languages zh,pt,ar,tr,ru --out "$OUT/data/train.json" --quiet
fi
for STEPS in $BUDGETS; do
    # The ablation records its verdicts in the selection file it tests: each budget gets its own copy.
    SELECTION="$OUT/plast_layers-${STEPS}steps.json"
    [ -e "$SELECTION" ] || cp "$OUT/select/plast_layers.json" "$SELECTION"
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    START=$(date +%s)
    echo "== plast ablate, $STEPS steps: $SEEDS seeds, alternatives $ALTERNATIVES ($DRAWS random draws), $OMP_NUM_THREADS threads ($(date -u))"
    "$(dirname "$TRAIN_PY")/plast" ablate --selection "$SELECTION" \
        --heldout "$OUT/data/questions_heldout.jsonl" --problems "$OUT/data/problems_$PROBLEMS.jsonl" \
        --languages zh,pt,ar,tr,ru --out "$OUT/ablate-${STEPS}steps" --seeds "$SEEDS" --random-draws "$DRAWS" \
        --alternatives "$ALTERNATIVES" --device cpu --dtype fp32 \
        -- --model_name_or_path "$OUT/llava_smollm2" --version v1 \
        --vision_tower "$OUT/clip_vision_small" --mm_projector_type mlp2x_gelu \
        --mm_vision_select_layer -2 --mm_use_im_start_end False --mm_use_im_patch_token False \
        --image_aspect_ratio pad --data_path "$OUT/data/train.json" --lazy_preprocess True \
        --per_device_train_batch_size 1 --max_steps "$STEPS" --learning_rate 1e-4 \
        --lr_scheduler_type cosine --warmup_ratio 0.03 --weight_decay 0.0 --gradient_checkpointing False \
        --model_max_length 2048 --save_strategy no --logging_steps 25 --report_to none \
        --dataloader_num_workers 0
    END=$(date +%s)
    echo
    echo "wall time of plast ablate at $STEPS steps: $(( END - START ))s ($(( (END - START) / 60 )) min)"
    echo "load average: before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); $(nproc --all) cores; $(date -u)"
    echo "outputs: $OUT/ablate-${STEPS}steps/ablation.{json,txt} and ablation_<language>.png"
done
