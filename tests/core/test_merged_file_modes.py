"""Merged and delta outputs get the user's umask (0644 under umask 022), not safetensors' 0600."""

import os
import stat

from plast_plugin.checkpoints.export import export_delta, merge_delta


def test_delta_and_merged_files_follow_the_umask(tiny_llama_dir, tmp_path):
    old = os.umask(0o022)
    try:
        delta = export_delta(tiny_llama_dir, tmp_path / "delta", layers=[1], modules="layer")
        merged = merge_delta(tiny_llama_dir, delta, tmp_path / "merged")
    finally:
        os.umask(old)
    for folder in (delta, merged):
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir() if p.is_file()}
        assert set(modes.values()) == {"0o644"}, modes
    assert (merged / "model.safetensors").exists()
