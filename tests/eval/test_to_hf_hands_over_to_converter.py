"""`plast export --to-hf` in the eval env hands over to the converter (moved here from
tests/train/test_data_and_export.py: the training env now refuses --to-hf, see
tests/train/test_to_hf_refused_in_training_env.py)."""
from __future__ import annotations


def plast(argv) -> int:
    from plast_plugin.cli import main

    return main([str(a) for a in argv])


def test_export_to_hf_calls_the_converter(monkeypatch, tmp_path):
    """`plast export --to-hf` hands over to plast_plugin.checkpoints.hf_convert.convert_to_hf (imported lazily)."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("plast_plugin.checkpoints.hf_convert")
    fake.convert_to_hf = lambda checkpoint, out: calls.append((checkpoint, out))
    monkeypatch.setitem(sys.modules, "plast_plugin.checkpoints.hf_convert", fake)
    assert plast(["export", "ckpt", "--to-hf", "--out", str(tmp_path / "hf")]) == 0
    assert calls == [("ckpt", str(tmp_path / "hf"))]
    assert plast(["export", "ckpt", "--to-hf", "--merge-into", "base", "--out", "x"]) == 1
