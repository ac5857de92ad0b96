#!/usr/bin/env bash
# PLAST fine-tuning of LLaVA-1.5, mirroring LLaVA's scripts/v1_5/finetune.sh: the UNMODIFIED
# official llava/train/train_mem.py (flash-attn) under DeepSpeed, plus the --plast_* flags that
# plast-plugin's import hook adds. Only the selected decoder layers are trained.
#
#   SIZE=7b  bash scripts/finetune_plast.sh      # liuhaotian/llava-v1.5-7b  (5 layers ~ 14.3%)
#   SIZE=13b bash scripts/finetune_plast.sh      # liuhaotian/llava-v1.5-13b (6 layers ~ 14.3%)
#
# Every setting can be overridden from the environment, e.g.
#   PLAST_LAYERS=0-4 DATA=./playground/plast_train.json OUT=./checkpoints/x bash scripts/finetune_plast.sh
# Training data: `plast build-data --data probe.jsonl --out $DATA` (question-translation pairs).
# PLAST_LAYERS=auto probes the model on $PROBE_DATA first and writes $OUT/plast_layers.json (+ plot);
# a rerun into the same $OUT reuses that file. Extra arguments are passed on to train_mem.py.
#
# ZeRO-2 by default (the official full fine-tuning script uses ZeRO-3): PLAST trains ~14% of the
# weights, so what ZeRO-3 would partition is mostly frozen weights, and it pays for that by
# all-gathering every weight in the forward pass, again in the checkpointing recomputation and in
# backward, each step. Static memory per GPU on 8 GPUs (bf16 weights + grads, fp32 Adam; memory
# model of `scripts/bench_train.py --shape llava7b --count`, docs/benchmarks.md), and the estimated
# activations at batch 16 x 2048 tokens with checkpointing:
#   7B,  layers 0-4: ZeRO-2 15.9 GB (weights 14.1, grads 0.25, optimizer 1.5) + ~23.5 GB activations
#                    (ZeRO-3: 3.5 GB static)
#   13B, layers 0-5: ZeRO-2 30.0 GB (weights 26.7, grads 0.48, optimizer 2.9) + ~31 GB activations
#                    (ZeRO-3: 6.7 GB static)
# Both fit an 80 GB GPU. ZERO=scripts/zero3.json when memory is short (fewer GPUs, a larger
# selection, longer sequences).
# Gradient checkpointing stays on (LLaVA's default); GRAD_CKPT=False turns it off: 25% fewer FLOPs
# per step for layers 0-4 (counted, 7B), but ~17.6 GB of activations per 2048-token sample, so on
# 80 GB use it with BATCH=2 GRAD_ACC=8 (docs/benchmarks.md, "When checkpointing off pays").
set -euo pipefail

SIZE="${SIZE:-7b}"
case "$SIZE" in
  7b)  DEFAULT_MODEL=liuhaotian/llava-v1.5-7b;  DEFAULT_ZERO=zero2 ;;
  13b) DEFAULT_MODEL=liuhaotian/llava-v1.5-13b; DEFAULT_ZERO=zero2 ;;
  *) echo "SIZE must be 7b or 13b (or set MODEL yourself)" >&2; exit 2 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-$DEFAULT_MODEL}"
VISION_TOWER="${VISION_TOWER:-openai/clip-vit-large-patch14-336}"
DATA="${DATA:-./playground/data/plast_translation.json}"
IMAGE_FOLDER="${IMAGE_FOLDER:-./playground/data}"
PROBE_DATA="${PROBE_DATA:-./playground/data/plast_probe.jsonl}"
LANGUAGES="${LANGUAGES:-zh,pt,ar,tr,ru}"
PLAST_LAYERS="${PLAST_LAYERS:-auto}"
# Unset: the selection file's modules (PLAST_LAYERS=file), else 'layer'. Set (layer/mlp/attn): overrides.
PLAST_MODULES="${PLAST_MODULES:-}"
OUT="${OUT:-./checkpoints/llava-v1.5-$SIZE-plast}"
ZERO="${ZERO:-$HERE/$DEFAULT_ZERO.json}"
EPOCHS="${EPOCHS:-1}"
BATCH="${BATCH:-16}"
GRAD_ACC="${GRAD_ACC:-1}"
LR="${LR:-2e-5}"
GRAD_CKPT="${GRAD_CKPT:-True}"
# The official script; LLAVA_DIR = a LLaVA checkout, else the installed llava package.
if [[ -n "${LLAVA_DIR:-}" ]]; then
  TRAIN_MEM="$LLAVA_DIR/llava/train/train_mem.py"
else
  TRAIN_MEM="$(python -c 'import llava, os; print(os.path.join(os.path.dirname(llava.__file__), "train", "train_mem.py"))')"
fi
LAUNCHER="${LAUNCHER:-deepspeed}"
# No experiment tracker unless asked (REPORT_TO=wandb): LLaVA installed without its [train] extra
# has no wandb, and the Trainer would fail only after an `auto` probe had already run.
REPORT_TO="${REPORT_TO:-none}"

PROBE_ARGS=()
MODULE_ARGS=()
if [[ -n "$PLAST_MODULES" ]]; then
  MODULE_ARGS=(--plast_modules "$PLAST_MODULES")
fi
if [[ "$PLAST_LAYERS" == "auto" ]]; then
  PROBE_ARGS=(--plast_probe_data "$PROBE_DATA" --plast_languages "$LANGUAGES")
fi

exec $LAUNCHER "$TRAIN_MEM" \
    --deepspeed "$ZERO" \
    --model_name_or_path "$MODEL" \
    --version v1 \
    --data_path "$DATA" \
    --image_folder "$IMAGE_FOLDER" \
    --vision_tower "$VISION_TOWER" \
    --mm_projector_type mlp2x_gelu \
    --mm_vision_select_layer -2 \
    --mm_use_im_start_end False \
    --mm_use_im_patch_token False \
    --image_aspect_ratio pad \
    --group_by_modality_length True \
    --bf16 True \
    --output_dir "$OUT" \
    --num_train_epochs "$EPOCHS" \
    --per_device_train_batch_size "$BATCH" \
    --per_device_eval_batch_size 4 \
    --gradient_accumulation_steps "$GRAD_ACC" \
    --evaluation_strategy "no" \
    --save_strategy "steps" \
    --save_steps 50000 \
    --save_total_limit 1 \
    --learning_rate "$LR" \
    --weight_decay 0. \
    --warmup_ratio 0.03 \
    --lr_scheduler_type "cosine" \
    --logging_steps 1 \
    --tf32 True \
    --model_max_length 2048 \
    --gradient_checkpointing "$GRAD_CKPT" \
    --dataloader_num_workers 4 \
    --lazy_preprocess True \
    --report_to "$REPORT_TO" \
    --plast_layers "$PLAST_LAYERS" \
    "${MODULE_ARGS[@]}" \
    "${PROBE_ARGS[@]}" \
    "$@"
