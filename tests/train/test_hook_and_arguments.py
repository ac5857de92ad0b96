"""The import hook (installed, cheap, idempotent, switchable) and the argument dataclass."""
from __future__ import annotations

import pickle
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import base_env
from plast_plugin.errors import PlastError

PROBE_MODULES = ("import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
                 "('plast_plugin', 'torch', 'transformers', 'llava')));"
                 "print([type(f).__name__ for f in sys.meta_path])")


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], env=base_env(**env), capture_output=True, text=True,
                          cwd="/", check=True).stdout


def test_pth_is_installed_next_to_the_package():
    pth = Path(sysconfig.get_paths()["purelib"]) / "plast-llava-hook.pth"
    assert pth.exists(), "pip install -e . should have installed the hook (setup.py build_py_with_pth)"
    assert "PLAST_DISABLE_HOOK" in pth.read_text()


def test_hook_is_cheap_and_can_be_disabled():
    out = _python(PROBE_MODULES)
    assert "PlastLlavaHookBootstrap" in out
    assert "torch" not in out and "transformers" not in out and "'llava" not in out
    out = _python(PROBE_MODULES, PLAST_DISABLE_HOOK="1")
    assert "PlastLlavaHookBootstrap" not in out and "plast_plugin" not in out


def test_hook_patches_llava_once():
    code = ("from plast_plugin.llava import hook; hook.install(); hook.install();"
            "import sys; print(sum(type(f).__name__ == 'LlavaTrainFinder' for f in sys.meta_path));"
            "import llava.train.train as t; print(t.TrainingArguments.__plast__, t.LLaVATrainer.__init__.__plast_wrapped__);"
            "hook.install(); from plast_plugin.llava.integration import patch_llava_train_module as p; p(t);"
            "print(t.TrainingArguments.__mro__[1].__name__, t.LLaVATrainer.__init__.__wrapped__.__plast_wrapped__ "
            "if hasattr(t.LLaVATrainer.__init__.__wrapped__, '__plast_wrapped__') else 'single')")
    lines = _python(code).strip().splitlines()[-3:]
    assert lines == ["1", "True True", "PlastArguments single"]


@pytest.fixture(scope="module")
def args_cls():
    import llava.train.train as module
    from plast_plugin.llava.integration import patch_llava_train_module

    patch_llava_train_module(module)
    return module.TrainingArguments


def test_arguments_have_help_and_pickle(args_cls, tmp_path):
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(args_cls)}
    for name in ("plast_layers", "plast_probe_data", "plast_languages", "plast_pivot", "plast_probe_samples",
                 "plast_modules", "plast_rule", "plast_statistic", "plast_seed"):
        assert fields[name].metadata.get("help"), name
    args = args_cls(output_dir=str(tmp_path), plast_layers="0-1", plast_modules="mlp")
    again = pickle.loads(pickle.dumps(args))  # Trainer writes training_args.bin (docs/troubleshooting.md pitfall 2)
    assert again.plast_layers == "0-1" and again.plast_modules == "mlp"


@pytest.mark.parametrize("extra,message", [
    ({"bits": 4}, "--bits 4 conflicts"),
    ({"lora_enable": True}, "--lora_enable conflicts"),
    ({"plast_layers": "auto"}, "--plast_probe_data"),
    ({"plast_modules": "ffn"}, "modules='ffn'"),
    ({"plast_languages": "xx"}, "--plast_languages"),
])
def test_conflicts_refused_at_parse_time(args_cls, tmp_path, extra, message):

    kwargs = {"output_dir": str(tmp_path), "plast_layers": "1,2", **extra}
    with pytest.raises(PlastError, match=message.replace("(", r"\(")):
        args_cls(**kwargs)


@pytest.mark.parametrize("extra, message, fix", [
    # Would probe the model and then train 0-4, ignoring the probe.
    ({"plast_layers": "auto", "plast_probe_data": "q.jsonl", "plast_rule": "0-4"},
     "--plast_layers auto with --plast_rule 0-4", "use --plast_layers 0-4 and drop --plast_rule"),
    # Would train 1,2 and ignore the rule without a word.
    ({"plast_layers": "1,2", "plast_rule": "msd-top:2"}, "--plast_rule msd-top:2 with --plast_layers 1,2",
     "Drop --plast_rule"),
])
def test_layers_and_rule_have_one_meaning_each(args_cls, tmp_path, extra, message, fix):

    with pytest.raises(PlastError, match=message) as err:
        args_cls(output_dir=str(tmp_path), **extra)
    assert fix in str(err.value)
    # the probe data is read when the arguments are checked: a real parallel file
    probe = tmp_path / "q.jsonl"
    probe.write_text('{"id": "1", "lang": "en", "question": "What is this?"}\n'
                     '{"id": "1", "lang": "zh", "question": "这是什么？"}\n', encoding="utf-8")
    args = args_cls(output_dir=str(tmp_path), plast_layers="auto", plast_probe_data=str(probe), plast_rule="msd-top:2")
    assert args.plast_rule == "msd-top:2"  # a statistic rule with auto is what the rule is for


def test_plast_flags_changed_after_parsing_are_checked_again(args_cls, tmp_path):
    from plast_plugin.llava.arguments import selection_options
    from plast_plugin.llava.integration import prepare_plast

    args = args_cls(output_dir=str(tmp_path), plast_layers="1,2", plast_modules="mlp")  # validated here
    options = selection_options(args)
    assert options.modules == "mlp" and options.selection_rule.text == "auto"
    args.plast_statistic = "rate"  # changed after parsing: read as it is now, not as it was
    assert selection_options(args).statistic == "rate"
    args.plast_statistic = "mean"
    with pytest.raises(PlastError, match="statistic='mean'"):
        prepare_plast(None, args)  # the trainer hook checks the flags again before it touches a model


def test_plast_off_is_upstream(args_cls, tmp_path):
    args = args_cls(output_dir=str(tmp_path), lora_enable=True, bits=4)  # no --plast_layers: no checks
    assert args.plast_layers is None


def test_fit_tokenizer_to_llava_v1_gpt2_style():
    """A GPT-2 style BPE tokenizer (SmolLM2's kind) gets a BOS and a one-token </s>, so LLaVA's
    preprocess_v1 supervises the answer instead of masking the whole sample."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from llava import conversation as conversation_lib
    from llava.train.train import preprocess
    from plast_plugin.testing.tiny_models import TOKENIZER_TEXT, fit_tokenizer_to_llava_v1

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(TOKENIZER_TEXT, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>",
                                               eos_token="<|im_end|>", unk_token="<|endoftext|>",
                                               model_max_length=256)
    tok.pad_token = tok.unk_token
    conversation_lib.default_conversation = conversation_lib.conv_templates["vicuna_v1"]
    source = [[{"from": "human", "value": "Translate: Qual é a cor?"}, {"from": "gpt", "value": "What color?"}]]
    before = preprocess(source, tok, has_image=False)["labels"][0]
    assert int((before != -100).sum()) == 0  # the failure the function fixes
    changes = fit_tokenizer_to_llava_v1(tok)
    assert len(changes) == 2 and len(tok("</s>", add_special_tokens=False).input_ids) == 1
    after = preprocess(source, tok, has_image=False)["labels"][0]
    kept = tok.decode([t for t in after.tolist() if t != -100])
    assert "What color?" in kept and "Qual" not in kept
    assert fit_tokenizer_to_llava_v1(tok) == []  # idempotent


# ----------------------------------------------------------------------------- a cheap, quiet hook
STARTUP_MODULES = "import sys; print(' '.join(sorted(sys.modules)))"


def test_hook_imports_no_module_at_start_up():
    with_hook = set(_python(STARTUP_MODULES).split())
    without = set(_python(STARTUP_MODULES, PLAST_DISABLE_HOOK="1").split())
    # The .pth runs a few embedded lines; the plugin loads only when LLaVA's training module does.
    assert with_hook == without, with_hook ^ without


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """The plugin installed from its wheel (a regular install) into a fresh venv."""
    from plast_plugin.testing.wheel_install import build_wheel, purelib, venv_with_wheel

    root = tmp_path_factory.mktemp("hook_wheel")
    python = venv_with_wheel(build_wheel(Path(__file__).resolve().parents[2], root), root / "venv")
    return {"python": python, "site": purelib(str(python)), "root": root}


def _venv_run(venv, code, **env):
    return subprocess.run([str(venv["python"]), "-c", code], env=base_env(**env), capture_output=True, text=True,
                          cwd=venv["root"], timeout=300)


def test_regular_install_patches_llava(wheel_venv):
    proc = _venv_run(wheel_venv, "import llava.train.train as t; print(getattr(t.TrainingArguments, '__plast__', None))")
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_a_broken_plugin_is_silent_at_start_and_one_line_when_llava_trains(wheel_venv, tmp_path):
    import shutil

    site = wheel_venv["site"]
    backup = tmp_path / "integration.py"
    integration = site / "plast_plugin" / "llava" / "integration.py"
    shutil.copy2(integration, backup)
    integration.write_text("raise ImportError('simulated broken install')\n")
    try:
        start = _venv_run(wheel_venv, "pass")
        assert start.returncode == 0 and start.stderr == ""
        train = _venv_run(wheel_venv, "import llava.train.train as t; print(hasattr(t.TrainingArguments, '__plast__'))")
        assert train.returncode == 0 and train.stdout.strip() == "False"
        lines = [line for line in train.stderr.splitlines() if "plast" in line.lower()]
        assert len(lines) == 1 and "simulated broken install" in lines[0] and "Traceback" not in train.stderr, train.stderr
    finally:
        shutil.copy2(backup, integration)


def test_a_moved_or_deleted_plugin_prints_nothing(wheel_venv, tmp_path):
    import shutil

    package = wheel_venv["site"] / "plast_plugin"
    moved = tmp_path / "plast_plugin_moved"
    shutil.move(str(package), str(moved))
    try:
        start = _venv_run(wheel_venv, "pass")
        assert start.returncode == 0 and start.stderr == "", start.stderr
        assert (wheel_venv["site"] / "plast-llava-hook.pth").exists()
    finally:
        shutil.move(str(moved), str(package))
