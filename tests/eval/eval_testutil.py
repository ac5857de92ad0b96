"""Paths and the offline subprocess environment shared by the eval tests."""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}


def subprocess_env(tmp_path, **extra):
    """The current environment, offline, single-threaded, HF caches under `tmp_path`, no judge."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAST_JUDGE")}
    env.update(OFFLINE_ENV)
    env["HF_HOME"] = str(Path(tmp_path) / "hf_home")
    env.update({k: str(v) for k, v in extra.items()})
    return env
