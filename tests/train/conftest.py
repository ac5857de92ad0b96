"""Shared fixtures: one tiny official-format LLaVA, its training data and parallel probe data,
built once per session; a helper that runs LLaVA's ``train()`` in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_driver.py"
LLAVA_ONLY = pytest.importorskip("llava", reason="tests/train need the training env (llava-torch)")

PROBE = [
    ("1", "What is the color of the car in the picture?", "图片中汽车是什么颜色？", "Какого цвета машина на картинке?"),
    ("2", "How many people are standing next to the table?", "桌子旁边站着多少人？", "Сколько человек стоит рядом со столом?"),
    ("3", "Which animal is sitting on the red chair?", "哪只动物坐在红色的椅子上？", "Какое животное сидит на красном стуле?"),
    ("4", "Answer with the option's letter from the given choices directly.", "请直接用给定选项中的选项字母回答。",
     "Ответьте буквой варианта из предложенных вариантов напрямую."),
]


def base_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_DISABLED="true",
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONWARNINGS="ignore")
    env.pop("PLAST_DISABLE_HOOK", None)
    # Resume must work with torch's weights-only loading (the integration allow-lists numpy's
    # RNG state); never with the override that unpickles anything.
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    # DeepSpeed JIT-builds a CPU comm op (~60 s on 2 cores); keep our build apart from other
    # processes' so it is built once and reused. The same `ninja` for every run (the env's own,
    # as the deepspeed launcher's PATH finds it), or each switch of ninja rebuilds the op.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(HERE.parents[1] / ".cache" / "torch_extensions_train"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """tiny LLaVA + CLIP, 8 training conversations (half with images), parallel probe JSONL."""
    return build_assets(tmp_path_factory.mktemp("llava_assets"))


def build_assets(root: Path) -> dict:
    """The ``assets`` fixture's files under ``root`` (also used by scripts/stress_two_rank_exit.py)."""
    import numpy as np
    from PIL import Image

    from plast_plugin.testing.tiny_models import make_tiny_llava

    model = make_tiny_llava(root / "llava")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        qid, en, zh, ru = PROBE[i % 4]
        question = zh if i % 2 == 0 else ru
        lang = "Chinese" if i % 2 == 0 else "Russian"
        prompt = f"Translate the following question from {lang} to English.\n{question}"
        row = {"id": f"t{i}", "conversations": [
            {"from": "human", "value": ("<image>\n" + prompt) if i % 2 == 0 else prompt},
            {"from": "gpt", "value": en}]}
        if i % 2 == 0:
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(images / f"{i}.png")
            row["image"] = f"{i}.png"
        rows.append(row)
    data = root / "train.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    probe = root / "probe.jsonl"
    with probe.open("w", encoding="utf-8") as f:
        for qid, en, zh, ru in PROBE:
            for lang, text in (("en", en), ("zh", zh), ("ru", ru)):
                f.write(json.dumps({"id": qid, "lang": lang, "question": text}, ensure_ascii=False) + "\n")
    return {"root": root, "model": Path(model), "clip": Path(str(model) + "_clip"), "data": data,
            "images": images, "probe": probe}


def llava_args(assets, output_dir, *extra, steps: int = 3) -> list[str]:
    return [
        "--model_name_or_path", str(assets["model"]), "--version", "v1",
        "--vision_tower", str(assets["clip"]), "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2", "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False", "--image_aspect_ratio", "pad",
        "--data_path", str(assets["data"]), "--image_folder", str(assets["images"]),
        "--lazy_preprocess", "True", "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--weight_decay", "0.0",
        "--max_steps", str(steps), "--save_strategy", "no", "--logging_steps", "1",
        "--gradient_checkpointing", "True", "--model_max_length", "256", "--report_to", "none",
        "--dataloader_num_workers", "0", *extra,
    ]


def free_port() -> int:
    """A TCP port nobody listens on now: the OS picks it. Fixed ports collide with any other test
    run on the machine (EADDRINUSE); a port the OS just handed out is free unless taken in the
    moment before the rendezvous binds it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_train(args, *, mode="hook", deepspeed=None, launcher=False, env=None, script=None, cwd=None, timeout=300):
    """Run one training process; returns CompletedProcess (stdout+stderr merged in .stdout).

    With ``deepspeed`` (a config path): ``launcher=True`` goes through the real ``deepspeed`` CLI
    (one local process); otherwise the process gets the environment that launcher would set."""
    extra_env = dict(env or {})
    prefix = [sys.executable]
    if deepspeed:
        port = free_port()
        args = ["--deepspeed", str(deepspeed), *args]
        if launcher:
            prefix = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "1",
                      "--master_port", str(port)]
        else:
            extra_env.update(RANK=0, LOCAL_RANK=0, WORLD_SIZE=1, LOCAL_WORLD_SIZE=1,
                             MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    cmd = [*prefix, str(script), *args] if script else [*prefix, str(DRIVER), mode, *args]
    return subprocess.run(cmd, env=base_env(**extra_env), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def check_only_layers_changed(start_dir, out_dir, layers):
    """Every tensor of the selected layers changed, every other tensor is bit-identical."""
    import torch
    from safetensors.torch import load_file

    start = load_file(str(Path(start_dir) / "model.safetensors"))
    end = load_file(str(Path(out_dir) / "model.safetensors"))
    assert set(start) == set(end)
    prefixes = tuple(f"model.layers.{i}." for i in layers)
    changed_selected, problems = 0, []
    for name in sorted(end):
        same = torch.equal(start[name].to(end[name].dtype), end[name])
        if name.startswith(prefixes):
            if same:
                problems.append(f"selected tensor unchanged: {name}")
            changed_selected += not same
        elif not same:
            problems.append(f"frozen tensor changed: {name}")
    assert not problems, problems
    assert changed_selected > 0


def layer_param_names(names, layers):
    prefixes = tuple(f"model.layers.{i}." for i in layers)
    return sorted(n for n in names if n.startswith(prefixes))


@pytest.fixture(scope="session")
def spec_run(assets, tmp_path_factory):
    """One hook-path run with --plast_layers 1,2 (shared by the training and export tests)."""
    root = tmp_path_factory.mktemp("spec_run")
    out, record = root / "out", root / "opt.json"
    proc = run_train(llava_args(assets, out, "--plast_layers", "1,2", "--mm_projector_lr", "2e-5"),
                     env={"PLAST_TEST_OPTIMIZER_RECORD": record})
    return {"proc": proc, "out": out, "record": record}


def run_train_ranks(args, *, world: int = 2, deepspeed=None, timeout=300):
    """``world`` local processes with the environment the deepspeed launcher sets (CPU, gloo)."""
    port = free_port()
    args = ["--deepspeed", str(deepspeed), *args] if deepspeed else list(args)
    procs = []
    for rank in range(world):
        env = base_env(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world, LOCAL_WORLD_SIZE=world,
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(DRIVER), "hook", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        outputs.append((proc.returncode, out))
    return outputs


# A stand-in for the deepspeed launcher: parses what it would launch with LLaVA's own (patched)
# HfArgumentParser and records the result instead of training.
_FAKE_LAUNCHER = """#!{python}
import json, sys
import llava.train.train as t
import transformers
parser = transformers.HfArgumentParser((t.ModelArguments, t.DataArguments, t.TrainingArguments))
namespace, unknown = parser.parse_known_args(sys.argv[2:])
json.dump({{"script": sys.argv[1], "unknown": unknown, "args": vars(namespace)}}, open({record!r}, "w"), default=str)
"""


def run_finetune_script(tmp_path, args=(), cwd=None, **env):
    """scripts/finetune_plast.sh with the stand-in launcher. Returns (process, launched) where
    launched is {"script", "unknown", "args"} of the command it would run (None if it ran none)."""
    record = Path(tmp_path) / "launch.json"
    launcher = Path(tmp_path) / "fake_deepspeed"
    launcher.write_text(_FAKE_LAUNCHER.format(python=sys.executable, record=str(record)))
    launcher.chmod(0o755)
    run_env = base_env(**env, LAUNCHER=str(launcher), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    script = HERE.parents[1] / "scripts" / "finetune_plast.sh"
    proc = subprocess.run(["bash", str(script), *args], env=run_env, cwd=cwd or tmp_path, capture_output=True,
                          text=True)
    return proc, (json.loads(record.read_text()) if record.exists() else None)
