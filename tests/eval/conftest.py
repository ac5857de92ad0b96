import sys
from pathlib import Path

import pytest

# helper modules of these tests (parrot_fixtures, eval_testutil) import by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def parrot_dir(tmp_path_factory):
    from parrot_fixtures import write_parrot_dir

    return write_parrot_dir(tmp_path_factory.mktemp("parrot"))
