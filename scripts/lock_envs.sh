#!/usr/bin/env bash
# Refreshes the lock files in scripts/locks/ on purpose (never as a side effect of a build):
#   1. resolves each environment from its loose recipe (scripts/envs.sh, _resolve_<env>) in a
#      scratch venv, the way pip resolves it today;
#   2. freezes it, every package at its exact version (the plugin itself excluded), into
#      scripts/locks/<env>.txt;
#   3. rebuilds .envs/<env> from the new lock (scripts/envs.sh) and runs the tests
#      (scripts/test.sh), so a lock is only committed after it passed.
# Usage: bash scripts/lock_envs.sh [train] [eval]      (default: both)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/envs.sh

names=("${@}")
[[ ${#names[@]} -gt 0 ]] || names=(train eval)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$PLAST_LOCKS_DIR"

for name in "${names[@]}"; do
  dir="$scratch/$name"
  echo "[lock] resolving '$name' from its loose recipe in $dir" >&2
  "$PLAST_PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip wheel setuptools >&2
  "_resolve_$name" | _run_recipe "$name" "$dir"
  lock="$(lock_file "$name")"
  {
    echo "# Lock file of the '$name' environment: every package at its exact version, transitive ones included."
    echo "# Written by scripts/lock_envs.sh on $(date -u +%Y-%m-%d) with $("$dir/bin/python" --version) on $(uname -m)."
    echo "# scripts/envs.sh builds .envs/$name from this file; refresh it only with scripts/lock_envs.sh."
    "$dir/bin/python" -m pip freeze --all --exclude plast-plugin --disable-pip-version-check
  } > "$lock.new"
  mv "$lock.new" "$lock"
  echo "[lock] wrote $lock ($(grep -c '==' "$lock") packages)" >&2
done

# The new locks must build and pass before they are committed.
exec bash scripts/test.sh
