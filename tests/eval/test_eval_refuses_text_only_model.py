"""`plast eval` on a plain LLM folder: refused before lmms-eval starts (which would end in
KeyError: 'llama'), with the way to a llava-hf model, and no output folder left behind."""

from plast_plugin.cli import main
from plast_plugin.testing.tiny_models import make_tiny_llama


def test_plain_llama_folder_is_refused_up_front(tmp_path, capsys):
    model = make_tiny_llama(tmp_path / "llama", num_layers=2, hidden=32, intermediate=64, seed=0)
    out = tmp_path / "eval_out"
    capsys.readouterr()  # the model writer's progress bar
    assert main(["eval", str(model), "--output", str(out), "--languages", "en", "--benchmarks", "mmmb"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a text-only model (model_type 'llama')" in err
    assert "plast export CKPT --to-hf" in err and not out.exists()
