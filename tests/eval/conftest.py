import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}


@pytest.fixture(scope="session")
def parrot_dir(tmp_path_factory):
    from parrot_fixtures import write_parrot_dir

    return write_parrot_dir(tmp_path_factory.mktemp("parrot"))


def subprocess_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAST_JUDGE")}
    env.update(OFFLINE_ENV)
    env["HF_HOME"] = str(tmp_path / "hf_home")
    env.update({k: str(v) for k, v in extra.items()})
    return env
