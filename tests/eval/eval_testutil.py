"""Paths, the offline subprocess environment and the ``parrot_dir`` fixture of the eval tests.

Not a conftest.py: the core tests import their conftest by name (``from conftest import``),
which breaks when a second conftest.py is collected in the same pytest run.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The task-file generator is a maintainer's script (scripts/generate_tasks.py), not a package module.
sys.path.insert(0, str(REPO / "scripts"))

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}


def install_scripted_model(site: Path) -> Path:
    """A throw-away distribution whose ``lmms_eval.models`` entry point registers the scripted model."""
    site = Path(site)
    dist = site / "plast_scripted_test-0.0.dist-info"
    if not dist.exists():
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plast-scripted-test\nVersion: 0.0\n")
        (dist / "entry_points.txt").write_text("[lmms_eval.models]\nplast_scripted = plast_scripted_model:MANIFEST\n")
        (site / "plast_scripted_model.py").write_text((HERE / "scripted_model.py").read_text())
    return site


def png_base64(size, color) -> str:
    """A one-colour PNG of `size` (width, height), base64 as the parallel-question files inline images."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def free_port() -> int:
    """A TCP port nobody listens on now, picked by the OS (a fixed one collides with other test runs)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(tmp_path, **extra):
    """The current environment, offline, single-threaded, HF caches under `tmp_path`, no judge."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAST_JUDGE")}
    env.update(OFFLINE_ENV)
    env["HF_HOME"] = str(Path(tmp_path) / "hf_home")
    extra = {k: str(v) for k, v in extra.items()}
    # This checkout's plast_plugin, not the editable install's: a subprocess runs in tmp_path, and
    # a PYTHONPATH given here (e.g. the scripted model's folder) comes first, not instead.
    paths = [extra.pop("PYTHONPATH", ""), str(REPO), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def parrot_dir(tmp_path_factory):
    """Parrot-layout TSVs for all six languages (see parrot_fixtures)."""
    from parrot_fixtures import write_parrot_dir

    return write_parrot_dir(tmp_path_factory.mktemp("parrot"))
