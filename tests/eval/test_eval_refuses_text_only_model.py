"""`plast eval` on a plain LLM folder: refused before lmms-eval starts (which would end in
KeyError: 'llama'), with the way to a llava-hf model, and no output folder left behind; a Qwen-VL or
InternVL folder under the default llava_hf likewise, naming lmms-eval's class for it."""

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


def test_a_qwen_vl_or_internvl_folder_under_llava_hf_is_refused_with_its_lmms_eval_class(tmp_path, capsys):
    """Qwen2.5-VL, Qwen3-VL and InternVL are vision-language models, but not ones llava_hf loads."""
    from plast_plugin.testing.tiny_models import make_tiny_vlm

    for family, lmms_class in (("qwen2_5_vl", "qwen2_5_vl"), ("qwen3_vl", "qwen3_vl"), ("internvl", "internvl_hf")):
        model = make_tiny_vlm(family, tmp_path / family, num_layers=1)
        out = tmp_path / f"eval_{family}"
        capsys.readouterr()
        assert main(["eval", str(model), "--output", str(out), "--languages", "en", "--benchmarks", "mmmb"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"is a {family} checkpoint, which lmms-eval's llava_hf cannot load" in err
        assert f"pass --model {lmms_class}" in err and not out.exists()
