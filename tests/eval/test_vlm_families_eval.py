"""`plast eval --model qwen2_5_vl|qwen3_vl|internvl_hf|llava_hf` on tiny random Qwen2.5-VL, Qwen3-VL,
InternVL and LLaVA-OneVision models: the real ``python -m lmms_eval`` with lmms-eval's own class for
each family, on a Parrot-layout fixture task, the question in one user turn that the model's own chat
template lays out; ``--baseline`` (another model of the family) and ``plast compare`` alike.
"""

import json
import subprocess
import sys
import time

import pytest

from eval_testutil import HERE, REPO, parrot_dir, subprocess_env  # noqa: F401 (fixture)
from plast_plugin.cli import main
from plast_plugin.eval.prompts import ANSWER_INSTRUCTIONS, VLMEVALKIT_SYSTEM

pytest.importorskip("lmms_eval")

# make_tiny_vlm's family -> lmms-eval 0.7.3's class for it
LMMS_CLASSES = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "internvl": "internvl_hf",
                "llava_onevision": "llava_hf"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random model of a family with its processor, by (family, seed), built once."""
    from plast_plugin.testing.tiny_models import make_tiny_vlm

    made = {}

    def make(family, seed=0):
        if (family, seed) not in made:
            made[family, seed] = make_tiny_vlm(family, tmp_path_factory.mktemp(f"{family}_{seed}"), num_layers=2,
                                               seed=seed)
        return made[family, seed]

    return make


def _plast_eval(tmp, parrot_dir, model, lmms_class, *extra):
    out = tmp / "out"
    # 16 new tokens instead of the tasks' 512: a random model seldom stops by itself
    cmd = [sys.executable, "-m", "plast_plugin.cli", "eval", str(model), "--model", lmms_class,
           "--benchmarks", "mmmb", "--languages", "en", "--limit", "2", "--parrot-dir", str(parrot_dir),
           "--parrot-md5", "any", "--output", str(out), "--lmms-eval-args", "--gen_kwargs max_new_tokens=16",
           *extra]
    started = time.time()
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp), capture_output=True, text=True,
                          timeout=600)
    print(f"plast eval --model {lmms_class} {' '.join(extra)}: {time.time() - started:.0f} s")
    return proc, out


def _scores(run):
    files = sorted(run.rglob("*_results.json"))
    assert files, f"lmms-eval wrote no results under {run}"
    return json.loads(files[-1].read_text())["results"]["mmmb_en"]


def _samples(run):
    path = next(run.rglob("*_samples_mmmb_en.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("family", list(LMMS_CLASSES))
def test_family_runs_its_lmms_eval_class_with_a_baseline_and_compares(family, tiny, tmp_path, parrot_dir):
    proc, out = _plast_eval(tmp_path, parrot_dir, tiny(family), LMMS_CLASSES[family],
                            "--baseline", str(tiny(family, seed=1)))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    # llava_hf and internvl_hf log a failed generate() and answer "": a run must have generated
    assert "in generating" not in log, log[-4000:]
    for name in ("baseline", "model"):
        scores = _scores(out / name)
        for metric in ("acc,none", "acc_exact,none"):
            assert 0.0 <= scores[metric] <= 1.0, (name, scores)
        samples = _samples(out / name)
        assert len(samples) == 2  # --limit 2
        assert {(s["acc"]["protocol"], s["acc"]["layout"]) for s in samples} == {("vlmevalkit", "model")}
        # the model generated (a random one's tokens may decode to nothing: special tokens)
        assert all(s["token_counts"][0]["output_tokens"] > 0 for s in samples), samples
    compare = json.loads((out / "compare" / "compare.json").read_text())
    row = next(r for r in compare["rows"] if r["task"] == "mmmb_en")
    assert row["n"] == 2 and row["delta"] == pytest.approx(row["acc_b"] - row["acc_a"])
    assert "chat layout model" in proc.stdout and "scores (0-1)" in proc.stdout


# The text each family's chat template (tiny_vlm_processors, in the published checkpoints' style) and
# lmms-eval's class make of the one user turn: (start, the image's placeholder run, end).
TEMPLATED = {
    "qwen2_5_vl": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                   "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n<|im_start|>assistant\n"),
    # no default system turn in Qwen3-VL's template: lmms-eval's qwen3_vl puts its system_prompt first
    "qwen3_vl": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                 "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n<|im_start|>assistant\n"),
    "internvl": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<IMG_CONTEXT>\n",
                 "<|im_end|>\n<|im_start|>assistant\n"),
    "llava_onevision": ("<|im_start|>user <image>\n", "<|im_end|><|im_start|>assistant\n"),
}


@pytest.mark.parametrize("family", list(LMMS_CLASSES))
def test_show_prompts_gives_the_family_chat_template_around_the_protocol_text(family, tiny, parrot_dir, capsys):
    model = tiny(family)
    capsys.readouterr()
    assert main(["eval", str(model), "--model", LMMS_CLASSES[family], "--show-prompts", "1", "--benchmarks", "mmmb",
                 "--languages", "en", "--parrot-dir", str(parrot_dir), "--parrot-md5", "any"]) == 0
    shown = capsys.readouterr().out
    assert "protocol vlmevalkit, chat layout model" in shown, shown
    text = json.loads(next(line for line in shown.splitlines() if line.startswith("text: "))[len("text: "):])
    start, end = TEMPLATED[family]
    # the protocol's question block and instruction, in the family's turns; no LLaVA-1.5 system text
    assert text.startswith(start) and text.endswith("\nD. yellow\n" + ANSWER_INSTRUCTIONS["en"] + end), text
    assert VLMEVALKIT_SYSTEM not in text and " <image> " not in text
    ids = json.loads(next(line for line in shown.splitlines() if line.startswith("ids (")).split(": ", 1)[1])
    assert sum(isinstance(i, str) and i.startswith("<image>*") for i in ids) == 1, ids  # one image run


def test_family_model_under_another_family_class_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", str(tiny("qwen2_5_vl")), "--model", "qwen3_vl", "--output", str(out), "--dry-run",
                 "--benchmarks", "mmmb", "--languages", "en"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a qwen2_5_vl checkpoint, which lmms-eval's qwen3_vl cannot load" in err
    assert "pass --model qwen2_5_vl" in err and not out.exists()


def test_baseline_of_another_family_is_refused(tiny, tmp_path, capsys):
    assert main(["eval", str(tiny("internvl")), "--model", "internvl_hf", "--baseline", str(tiny("qwen2_5_vl")),
                 "--output", str(tmp_path / "out"), "--dry-run", "--benchmarks", "mmmb", "--languages", "en"]) == 1
    err = capsys.readouterr().err
    assert "--baseline" in err and "model_type 'qwen2_5_vl' is not of the model's family (internvl-hf)" in err


def test_dry_run_puts_the_family_class_on_the_device_and_the_baseline_as_given(tiny, tmp_path, capsys):
    model, baseline = tiny("qwen3_vl"), tiny("qwen3_vl", seed=1)
    assert main(["eval", str(model), "--model", "qwen3_vl", "--baseline", str(baseline), "--device", "cpu",
                 "--output", str(tmp_path / "out"), "--dry-run", "--benchmarks", "mmmb", "--languages", "en"]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert len(commands) == 2
    for command, pretrained in zip(commands, (baseline, model)):
        assert command.startswith("$ PLAST_EVAL_LAYOUT=model ") and " --model qwen3_vl " in command
        assert f"--model_args pretrained={pretrained},device_map=cpu,device=cpu " in command
    assert not (tmp_path / "out" / "baseline-hf").exists()  # nothing converted


def test_qwen_class_without_qwen_vl_utils_is_refused_before_lmms_eval(tiny, tmp_path, parrot_dir, capsys,
                                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, "qwen_vl_utils", None)  # `import qwen_vl_utils` raises ImportError
    out = tmp_path / "out"
    assert main(["eval", str(tiny("qwen2_5_vl")), "--model", "qwen2_5_vl", "--output", str(out), "--benchmarks",
                 "mmmb", "--languages", "en", "--parrot-dir", str(parrot_dir), "--parrot-md5", "any"]) == 1
    err = capsys.readouterr().err
    assert "lmms-eval's class hands images to qwen_vl_utils, which does not import here" in err
    assert "pip install qwen-vl-utils torchvision" in err and not out.exists()


def test_model_layout_is_one_user_turn_image_then_text_under_either_protocol(monkeypatch):
    from plast_plugin.errors import PlastError
    from plast_plugin.eval.prompts import protocol_messages, resolve_layout

    for protocol in ("vlmevalkit", "parrot"):
        messages = protocol_messages({"protocol": protocol, "layout": "model"}, "IMG", "Q\nA. x")
        assert messages == [{"role": "user", "content": [{"type": "image", "url": "IMG"},
                                                         {"type": "text", "text": "Q\nA. x"}]}]
    llava = protocol_messages({"protocol": "vlmevalkit"}, "IMG", "Q")  # no layout: LLaVA-1.5's turns, as before
    assert llava[0]["content"][0]["text"] == VLMEVALKIT_SYSTEM and llava[1]["content"][1]["text"] == " <image> Q"
    monkeypatch.setenv("PLAST_EVAL_LAYOUT", "qwen")
    with pytest.raises(PlastError, match="PLAST_EVAL_LAYOUT='qwen': unknown chat layout"):
        resolve_layout()


def _install_recording_families(site):
    dist = site / "plast_recording_families_test-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plast-recording-families-test\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(
        f"plast_recording_{name} = plast_recording_families:MANIFEST_{name.upper()}\n"
        for name in LMMS_CLASSES.values()))
    (site / "plast_recording_families.py").write_text((HERE / "recording_families.py").read_text())
    return site


@pytest.mark.parametrize("family", list(LMMS_CLASSES))
def test_show_prompts_ids_are_the_ids_lmms_eval_class_feeds_generate(family, tiny, tmp_path, parrot_dir,
                                                                      monkeypatch, capsys):
    """lmms-eval run directly with PLAST_EVAL_LAYOUT=model: the class's own handling (qwen_vl_utils'
    resize, the processor's pixel or tile bounds, qwen3_vl's system turn) gives generate() the ids
    --show-prompts prints."""
    lmms_class, model = LMMS_CLASSES[family], tiny(family)
    site = _install_recording_families(tmp_path / "site")
    record = tmp_path / "ids.jsonl"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", f"plast_recording_{lmms_class}",
           "--model_args", f"pretrained={model},device_map=cpu,device=cpu,record={record}", "--tasks", "mmmb_en",
           "--include_path", str(REPO / "eval_tasks"), "--output_path", str(tmp_path / "out"), "--batch_size", "1",
           "--gen_kwargs", "max_new_tokens=1"]
    env = subprocess_env(tmp_path, PLAST_PARROT_DIR=parrot_dir, PLAST_PARROT_MD5="any", PLAST_EVAL_LIMIT=1,
                         PLAST_EVAL_LAYOUT="model", PYTHONPATH=site)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert record.exists(), (proc.stdout + proc.stderr)[-4000:]
    recorded = [json.loads(line)["input_ids"] for line in record.read_text().splitlines()]

    capsys.readouterr()
    assert main(["eval", str(model), "--model", lmms_class, "--show-prompts", "1", "--benchmarks", "mmmb",
                 "--languages", "en", "--parrot-dir", str(parrot_dir), "--parrot-md5", "any"]) == 0
    shown = capsys.readouterr().out
    ids = json.loads(next(line for line in shown.splitlines() if line.startswith("ids (")).split(": ", 1)[1])
    count = int(next(line for line in shown.splitlines() if line.startswith("ids (")).split("(")[1].split(")")[0])
    from plast_plugin.eval.show_prompts import image_token_id, load_processor

    image = image_token_id(load_processor(str(model), lmms_class))
    expanded = [t for i in ids for t in ([image] * int(i.split("*")[1]) if isinstance(i, str) else [i])]
    assert len(expanded) == count and recorded == [expanded]
