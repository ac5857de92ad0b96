"""`plast export --to-hf` output gets the user's umask (0644 under umask 022), not the 0600
that safetensors gives the weights."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from eval_testutil import REPO, subprocess_env

TRAIN_PY = Path(os.environ.get("PLAST_ENVS_DIR", REPO / ".envs")) / "train" / "bin" / "python"


@pytest.mark.skipif(not TRAIN_PY.exists(), reason="the training env (.envs/train) is not built")
def test_converted_files_follow_the_umask(tmp_path):
    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    ckpt = tmp_path / "llava"
    proc = subprocess.run([str(TRAIN_PY), "-c", "from plast_plugin.testing.tiny_models import make_tiny_llava; "
                           f"make_tiny_llava({str(ckpt)!r})"], cwd=REPO, env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    old = os.umask(0o022)
    try:
        out = convert_to_hf(ckpt, tmp_path / "hf")
    finally:
        os.umask(old)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == "0o644" and set(modes.values()) == {"0o644"}, modes
