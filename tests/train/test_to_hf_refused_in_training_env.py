"""`plast export --to-hf` in the training env: one line naming the eval env, before any work
(the converter writes a llava-hf layout this env's transformers cannot load, which used to end
in a dump of mismatched parameter names), and no output folder."""
from __future__ import annotations

from plast_plugin.cli import main


def test_to_hf_in_the_training_env_names_the_eval_env(tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "ckpt"), "--to-hf", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs the eval env's transformers" in err
    assert ".envs/eval/bin/plast export" in err and not out.exists()
