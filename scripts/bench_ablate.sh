#!/usr/bin/env bash
# Benchmark of `plast ablate` on the demo's real model, on CPU: is the PLAST selection better than
# first:5, last:5 and random draws of 5 layers, with seeds and 95% intervals?
#   - SmolLM2-135M-Instruct in an official-format LLaVA (the demo's build: real LM weights, a small
#     random vision tower), the demo's parallel questions (final question sentence of each problem)
#   - the selection: `plast select` with the demo's options on the training split (reused if present)
#   - `plast ablate` over BENCH_SEEDS seeds and BENCH_DRAWS random draws, BENCH_STEPS steps per run
#     (batch 1, lr 1e-4, cosine), scored on the 20 held-out questions per language
# Prints the wall time, the load average before and after, and the ablation's table and verdicts.
#
# Knobs: DEMO_ASSETS=.cache/demo (from scripts/demo_assets.py), BENCH_OUT=runs/bench_ablate,
#        BENCH_STEPS=100, BENCH_SEEDS=3, BENCH_DRAWS=3, OMP_NUM_THREADS (default 2).
# Run it in the training env's reach: scripts/envs.sh must have built .envs/train and .envs/eval
# (or set TRAIN_PY / EVAL_PY to those environments' python).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ASSETS="${DEMO_ASSETS:-.cache/demo}"
OUT="${BENCH_OUT:-runs/bench_ablate}"
STEPS="${BENCH_STEPS:-100}"
SEEDS="${BENCH_SEEDS:-3}"
DRAWS="${BENCH_DRAWS:-3}"
TRAIN_PY="${TRAIN_PY:-.envs/train/bin/python}"
EVAL_PY="${EVAL_PY:-.envs/eval/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true TOKENIZERS_PARALLELISM=false
for f in smollm2/model.safetensors questions_train.jsonl questions_heldout.jsonl; do
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
if [ ! -e "$OUT/data/train.json" ]; then
    "$(dirname "$TRAIN_PY")/plast" build-data --data "$OUT/data/questions_train.jsonl" \
        --languages zh,pt,ar,tr,ru --out "$OUT/data/train.json" --quiet
fi
# The ablation records its verdicts in the selection file it tests: give it its own copy.
[ -e "$OUT/plast_layers.json" ] || cp "$OUT/select/plast_layers.json" "$OUT/plast_layers.json"

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
echo "== plast ablate: $SEEDS seeds, $DRAWS random draws, $STEPS steps per run, $OMP_NUM_THREADS threads ($(date -u))"
"$(dirname "$TRAIN_PY")/plast" ablate --selection "$OUT/plast_layers.json" \
    --heldout "$OUT/data/questions_heldout.jsonl" --languages zh,pt,ar,tr,ru \
    --out "$OUT/ablate" --seeds "$SEEDS" --random-draws "$DRAWS" --device cpu --dtype fp32 \
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
echo "wall time of plast ablate: $(( END - START ))s ($(( (END - START) / 60 )) min) for $(( SEEDS * (3 + DRAWS) )) runs of $STEPS steps"
echo "load average: before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); $(nproc --all) cores; $(date -u)"
echo "outputs: $OUT/ablate/ablation.{json,txt} and ablation_<language>.png"
