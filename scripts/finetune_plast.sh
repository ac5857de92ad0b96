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
# ZeRO-3 as in the official script; ZERO=scripts/zero2.json is enough for 7B (only ~14% is trained).
set -euo pipefail

SIZE="${SIZE:-7b}"
case "$SIZE" in
  7b)  DEFAULT_MODEL=liuhaotian/llava-v1.5-7b;  DEFAULT_ZERO=zero3 ;;
  13b) DEFAULT_MODEL=liuhaotian/llava-v1.5-13b; DEFAULT_ZERO=zero3 ;;
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
    --gradient_checkpointing True \
    --dataloader_num_workers 4 \
    --lazy_preprocess True \
    --report_to "$REPORT_TO" \
    --plast_layers "$PLAST_LAYERS" \
    "${MODULE_ARGS[@]}" \
    "${PROBE_ARGS[@]}" \
    "$@"
