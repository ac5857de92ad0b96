"""Hub ids work as the README prints them: `plast select --model liuhaotian/llava-v1.5-7b`,
`llava-hf/...` and plain causal LMs, resolved through a Hugging Face cache, fully offline, through
the installed `plast` command (the user's path, in a fresh process). A missing id is one clear line.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core_testutil import question_rows, write_jsonl
from plast_plugin.testing.hub_cache import add_to_hub_cache, offline_hub_env

PLAST = Path(sys.executable).parent / "plast"


def _plast(env, *args):
    return subprocess.run([str(PLAST), *args], env=env, capture_output=True, text=True, timeout=600, cwd="/")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_llama_dir):
    from plast_plugin.testing.tiny_models import make_tiny_llava_hf

    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    add_to_hub_cache(cache, "HuggingFaceTB/SmolLM2-135M-Instruct", tiny_llama_dir)
    add_to_hub_cache(cache, "llava-hf/llava-1.5-7b-hf", make_tiny_llava_hf(root / "llava_hf"))
    data = write_jsonl(root / "q.jsonl", question_rows(("en", "zh", "ru")))
    return {"cache": cache, "env": offline_hub_env(cache, root / "home"), "data": data, "root": root}


@pytest.mark.parametrize("model_id", ["HuggingFaceTB/SmolLM2-135M-Instruct", "llava-hf/llava-1.5-7b-hf"])
def test_select_takes_a_hub_id(hub, model_id, tmp_path):
    proc = _plast(hub["env"], "select", "--model", model_id, "--data", str(hub["data"]), "--out",
                  str(tmp_path / "sel"), "--device", "cpu", "--quiet", "--no-plot", "--rule", "first:1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    selection = json.loads((tmp_path / "sel" / "plast_layers.json").read_text())
    assert selection["model"]["name_or_path"] == model_id
    assert selection["selected_layers"] == [0]


def test_select_takes_a_pinned_revision(hub, tmp_path):
    model_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    commit = (hub["cache"] / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "refs" / "main").read_text()
    ok = _plast(hub["env"], "select", "--model", model_id, "--revision", commit, "--data", str(hub["data"]),
                "--out", str(tmp_path / "a"), "--device", "cpu", "--quiet", "--no-plot", "--rule", "0")
    assert ok.returncode == 0, ok.stderr[-3000:]
    missing = _plast(hub["env"], "select", "--model", model_id, "--revision", "v9.9", "--data", str(hub["data"]),
                     "--out", str(tmp_path / "b"), "--device", "cpu", "--quiet", "--no-plot", "--rule", "0")
    assert missing.returncode == 1
    assert "at revision v9.9" in missing.stderr and "Traceback" not in missing.stderr


def test_a_missing_hub_id_offline_is_one_clear_line(hub, tmp_path):
    proc = _plast(hub["env"], "select", "--model", "nobody/no-such-model", "--data", str(hub["data"]),
                  "--out", str(tmp_path / "x"), "--device", "cpu", "--quiet")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'nobody/no-such-model'" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert "huggingface-cli download nobody/no-such-model" in lines[0]
    assert not (tmp_path / "x").exists()


def test_official_llava_hub_id_with_its_vision_tower_from_the_cache(hub, tmp_path):
    pytest.importorskip("llava", reason="official LLaVA checkpoints load with the `llava` package (training env)")
    from plast_plugin.testing.tiny_models import make_tiny_llava

    official = make_tiny_llava(tmp_path / "official")
    # The released checkpoint names its tower by hub id; resolve both from the cache.
    config_path = official / "config.json"
    config = json.loads(config_path.read_text())
    clip = Path(config["mm_vision_tower"])
    config["mm_vision_tower"] = "openai/clip-vit-large-patch14-336"
    config_path.write_text(json.dumps(config))
    add_to_hub_cache(hub["cache"], "openai/clip-vit-large-patch14-336", clip)
    add_to_hub_cache(hub["cache"], "liuhaotian/llava-v1.5-7b", official)
    proc = _plast(hub["env"], "select", "--model", "liuhaotian/llava-v1.5-7b", "--data", str(hub["data"]),
                  "--out", str(tmp_path / "sel"), "--device", "cpu", "--quiet", "--no-plot", "--rule", "1-2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    selection = json.loads((tmp_path / "sel" / "plast_layers.json").read_text())
    assert selection["model"]["architecture"] == "LlavaLlamaForCausalLM"
    assert selection["model"]["name_or_path"] == "liuhaotian/llava-v1.5-7b"
