"""PLAST training under the Hugging Face Trainer on the vision-language families transformers 5 ships:
Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and InternVL, each a tiny random model built from its config.

The layout is the language model's decoder (never the vision encoder's blocks, which Qwen-VL also
keeps in a ModuleList); a few real `transformers.Trainer` steps with `PlastCallback`, plain and with
gradient checkpointing, change exactly the selected layer's tensors of the saved checkpoint and
leave every other tensor bit-identical; the records let `plast export` write the delta and merge it
back bit for bit. Each row holds a random image, shaped by the family's config, so the vision tower
and projector take part in the forward and would get gradients if they were not frozen.
"""
from __future__ import annotations

import json

import pytest
import torch

from plast_plugin.cli import main as plast
from plast_plugin.core.freeze import plast_parameter_names, trainable_fraction
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.errors import PlastError
from plast_plugin.testing.tiny_models import VLM_FAMILIES
from vlm_training_util import family  # noqa: F401 (fixture)
from vlm_training_util import (MEMORY_LAYERS, SUBMODULE, TRAINED_LAYER, VISION_PARTS, ImageRows, changed, collate,
                               load, make_trainer, selected_in_files, tensors, write_selection)


def test_the_layout_is_the_language_models_decoder(family):
    model = load(family["name"], family["path"])
    layout = find_decoder_layers(model)
    assert layout.path + "." == MEMORY_LAYERS and layout.num_layers == 3
    assert layout.ffn_width == 128 and layout.hidden_size == 64
    for modules, part in SUBMODULE.items():
        names = plast_parameter_names(model, [TRAINED_LAYER], modules)
        assert names == {n for n, _ in model.named_parameters() if n.startswith(f"{MEMORY_LAYERS}1.{part}")}
        assert names and not any(v in n for n in names for v in VISION_PARTS)
        report = trainable_fraction(model, [TRAINED_LAYER], modules)
        assert report.per_layer == {TRAINED_LAYER: sum(p.numel() for n, p in model.named_parameters() if n in names)}
    # The vision encoder has blocks of its own, with the same indices: none is ever named.
    assert any(v in n and ".1." in n for n, _ in model.named_parameters() for v in ("visual.", "vision_tower."))


@pytest.mark.parametrize("modules, checkpointing", [("layer", False), ("mlp", True)], ids=["plain", "checkpointing"])
def test_trainer_steps_change_exactly_the_selected_layer(family, tmp_path, modules, checkpointing):
    # Unfrozen, the vision side gets gradients from these rows: its staying bit-identical below is the freeze.
    model = load(family["name"], family["path"])
    model(**collate([ImageRows(family["name"], model)[0]])).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith(("model.visual.", "model.vision_tower.")))

    selection = write_selection(family, tmp_path, modules)
    model, trainer = make_trainer(family, tmp_path / "out", selection, checkpointing=checkpointing)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters()
                         if n.startswith(f"{MEMORY_LAYERS}{TRAINED_LAYER}.{SUBMODULE[modules]}")}
    trainer.train()  # the callback checks the optimizer holds exactly these before the first step
    assert model.is_activation_checkpointing == checkpointing
    out = tmp_path / "out"
    trainer.save_model(str(out))

    base, trained = tensors(family["path"]), tensors(out)
    selected = selected_in_files(family["name"], modules, base)
    assert selected and changed(base, trained) == selected  # every selected tensor moved, nothing else

    record = json.loads((out / "plast_training.json").read_text())
    assert record["layers"] == [TRAINED_LAYER] and record["modules"] == modules
    assert record["trainable_names"] == sorted(trainable)
    assert set(record["base_fingerprint"]["tensors"]) == selected  # keyed by the base files' names
    assert json.loads((out / "plast_layers.json").read_text())["selected_layers"] == [TRAINED_LAYER]
    assert (out / "checkpoint-2" / "plast_training.json").exists()  # next to every checkpoint too

    # The records make `plast export` work on this checkpoint: the delta, then a bit-exact merge.
    assert plast(["export", str(out), "--out", str(tmp_path / "delta")]) == 0
    assert set(json.loads((tmp_path / "delta" / "plast_delta.json").read_text())["tensors"]) == selected
    assert plast(["export", str(tmp_path / "delta"), "--merge-into", str(family["path"]),
                  "--out", str(tmp_path / "merged")]) == 0
    assert not changed(trained, tensors(tmp_path / "merged"))


def test_the_callback_refuses_an_optimizer_over_every_parameter(family, tmp_path):
    selection = write_selection(family, tmp_path, "layer")
    model, trainer = make_trainer(family, tmp_path / "out", selection, optimizer_over_every_parameter=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(PlastError, match="extra"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # refused before any step
