#!/usr/bin/env bash
# Creates the two environments (once; see scripts/envs.sh) and runs every test:
#   training env (transformers 4.37.2 + official LLaVA + DeepSpeed): tests/core tests/train
#   eval env (lmms-eval 0.7.3, transformers 5.x):                    tests/core tests/eval
# The core tests run in both, because the core must work with both transformers lines.
# Extra arguments go to both pytest runs (e.g. -k freeze, -x).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/envs.sh
set +e  # run both suites even when the first fails; the exit code reports both

ensure_env train || exit 1
ensure_env eval || exit 1

# Offline by design: tests build tiny models locally and must never reach a hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_DISABLED=true \
       TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
reports="$(mktemp -d)"
status=0
for suite in "train:tests/core tests/train" "eval:tests/core tests/eval"; do
  env_name="${suite%%:*}"
  read -ra paths <<< "${suite#*:}"
  echo "=== [$env_name env] pytest ${paths[*]}"
  "$(env_python "$env_name")" -m pytest -q -p no:cacheprovider --junitxml="$reports/$env_name.xml" "${paths[@]}" "$@" \
    || status=1
done

# One closing line for both runs.
python3 - "$reports" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in glob.glob(sys.argv[1] + "/*.xml"):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        total, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        failed += fail + err; skipped += skip; passed += total - fail - err - skip
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
