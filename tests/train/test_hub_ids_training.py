"""Training from hub ids, as finetune_plast.sh does (`--model_name_or_path liuhaotian/llava-v1.5-7b
--vision_tower openai/clip-vit-large-patch14-336`), resolved offline from a Hugging Face cache, with
`--plast_layers auto` probing the loaded model; and the warning when a selection file was made on a
model of another name (same shapes, e.g. vicuna-7b vs llava-v1.5-7b)."""
from __future__ import annotations

import json

import pytest

from conftest import check_only_layers_changed, llava_args, run_train
from plast_plugin.testing.hub_cache import add_to_hub_cache

MODEL_ID, TOWER_ID = "liuhaotian/llava-v1.5-7b", "openai/clip-vit-large-patch14-336"


@pytest.fixture(scope="module")
def hub_run(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_training")
    cache = root / "cache"
    add_to_hub_cache(cache, MODEL_ID, assets["model"])
    add_to_hub_cache(cache, TOWER_ID, assets["clip"])
    args = llava_args(assets, root / "out", "--plast_layers", "auto", "--plast_probe_data", str(assets["probe"]),
                      "--plast_languages", "zh,ru")
    args[args.index(str(assets["model"]))] = MODEL_ID
    args[args.index(str(assets["clip"]))] = TOWER_ID
    env = {"HF_HUB_CACHE": cache, "HF_HOME": root / "home"}
    return {"proc": run_train(args, env=env), "out": root / "out", "env": env, "root": root}


def test_auto_probe_and_training_from_hub_ids(assets, hub_run):
    proc, out = hub_run["proc"], hub_run["out"]
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "--plast_layers auto selected layers" in proc.stdout
    selection = json.loads((out / "plast_layers.json").read_text())
    assert selection["model"]["name_or_path"] == MODEL_ID
    check_only_layers_changed(assets["model"], out, selection["selected_layers"])


def test_selection_from_another_model_name_warns(assets, hub_run):
    selection = json.loads((hub_run["out"] / "plast_layers.json").read_text())
    selection["model"]["name_or_path"] = "lmsys/vicuna-7b-v1.5"
    other = hub_run["root"] / "vicuna_selection.json"
    other.write_text(json.dumps(selection))
    args = llava_args(assets, hub_run["root"] / "out2", "--plast_layers", str(other), steps=1)
    args[args.index(str(assets["model"]))] = MODEL_ID
    args[args.index(str(assets["clip"]))] = TOWER_ID
    proc = run_train(args, env=hub_run["env"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    warning = [line for line in proc.stdout.splitlines() if "WARNING" in line and "vicuna-7b-v1.5" in line]
    assert warning and MODEL_ID in warning[0], proc.stdout[-3000:]
