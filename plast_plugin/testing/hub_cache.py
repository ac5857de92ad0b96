"""Put locally built models into a Hugging Face hub cache, so tests exercise the user's real path
(`plast select --model liuhaotian/llava-v1.5-7b`) fully offline.

The layout is the one huggingface_hub reads: ``<cache>/models--<org>--<name>/snapshots/<commit>/``
holding the files, and ``refs/main`` holding that commit. With ``HF_HUB_CACHE=<cache>`` and
``HF_HUB_OFFLINE=1``, ``from_pretrained("org/name")`` and ``snapshot_download`` resolve to it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

__all__ = ["add_to_hub_cache", "offline_hub_env"]


def add_to_hub_cache(cache_dir, repo_id: str, folder, revision: str = "main") -> str:
    """Copy ``folder`` into ``cache_dir`` as ``repo_id`` at ``revision``; returns the commit hash."""
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit


def offline_hub_env(cache_dir, home_dir=None, **extra) -> dict:
    """The current environment with the hub switched off and ``cache_dir`` as the hub cache."""
    env = dict(os.environ)
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HOME"):
        env.pop(key, None)
    env.update(HF_HUB_CACHE=str(cache_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    if home_dir is not None:
        env["HF_HOME"] = str(home_dir)
    env.update({k: str(v) for k, v in extra.items()})
    return env
