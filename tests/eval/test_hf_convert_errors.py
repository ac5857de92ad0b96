"""convert_to_hf refuses what it cannot convert, with a message that says why."""

import json

import pytest

from plast_plugin.checkpoints.hf_convert import convert_to_hf
from plast_plugin.errors import PlastError


def _ckpt(tmp_path, **cfg):
    base = {"model_type": "llava_llama", "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
            "mm_vision_tower": str(tmp_path / "nowhere")}
    base.update(cfg)
    (tmp_path / "config.json").write_text(json.dumps(base))
    return tmp_path


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(PlastError, match="no config.json"):
        convert_to_hf(tmp_path, tmp_path / "out")


def test_not_llava(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(PlastError, match="not an official LLaVA-LLaMA checkpoint"):
        convert_to_hf(tmp_path, tmp_path / "out")


def test_linear_projector(tmp_path):
    with pytest.raises(PlastError, match="only 'mlp2x_gelu'"):
        convert_to_hf(_ckpt(tmp_path, mm_projector_type="linear"), tmp_path / "out")


def test_missing_vision_tower_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PlastError, match="pass --vision-tower"):
        convert_to_hf(_ckpt(tmp_path, mm_vision_tower="openai/clip-vit-large-patch14-336"), tmp_path / "out")


def test_anyres_and_same_folder(tmp_path):
    with pytest.raises(PlastError, match="image_aspect_ratio 'anyres'"):
        convert_to_hf(_ckpt(tmp_path, image_aspect_ratio="anyres"), tmp_path / "out")
    with pytest.raises(PlastError, match="different folder"):
        convert_to_hf(_ckpt(tmp_path), tmp_path)
