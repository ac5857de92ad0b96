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
from pathlib import Path

import pytest
import torch
import transformers

from plast_plugin.checkpoints.weights import CheckpointWeights
from plast_plugin.cli import main as plast
from plast_plugin.core.freeze import plast_parameter_names, trainable_fraction
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
from plast_plugin.errors import PlastError
from plast_plugin.testing.tiny_models import VLM_FAMILIES, make_tiny_vlm

FAMILIES = list(VLM_FAMILIES)
TRAINED_LAYER = 1
# Where each family's checkpoint files keep the decoder layers (transformers 5 saves Qwen2.5-VL in
# its original layout, OneVision and InternVL in the llava-hf one); in memory all four build
# model.language_model.layers.
FILE_LAYERS = {"qwen2_5_vl": "model.layers.", "qwen3_vl": "model.language_model.layers.",
               "llava_onevision": "language_model.model.layers.", "internvl": "language_model.model.layers."}
MEMORY_LAYERS = "model.language_model.layers."
VISION_PARTS = ("visual.", "vision_tower.", "multi_modal_projector.", "image_newline")
SUBMODULE = {"layer": "", "mlp": "mlp.", "attn": "self_attn."}


def _load(family, path):
    return getattr(transformers, VLM_FAMILIES[family][0]).from_pretrained(str(path), dtype=torch.float32)


def _tensors(folder: Path) -> dict:
    with CheckpointWeights(folder) as weights:
        return weights.read_all()


def _changed(base: dict, trained: dict) -> set:
    assert set(base) == set(trained)
    return {n for n in base if base[n].dtype != trained[n].dtype or not torch.equal(base[n], trained[n])}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """The family's tiny model saved to a folder (config + weights)."""
    root = tmp_path_factory.mktemp(request.param)
    return {"name": request.param, "path": make_tiny_vlm(request.param, root / "model"), "root": root}


def _selection(family, folder: Path, modules: str) -> Path:
    model = _load(family["name"], family["path"])
    file = folder / f"plast_layers_{modules}.json"
    SelectionFile(selected_layers=[TRAINED_LAYER], model=ModelIdentity.of(model, str(family["path"])),
                  rule="manual", options={"modules": modules}).save(file)
    return file


def _image_inputs(family, model, generator):
    """One random image's model inputs, shaped by the family's config, and its number of image tokens
    (what the model's own image features hold)."""
    config = model.config
    if family in ("qwen2_5_vl", "qwen3_vl"):  # 4x4 patches of one frame, merged 2x2: 4 tokens
        vision = config.vision_config
        inputs = {"pixel_values": torch.randn(16, 3 * vision.temporal_patch_size * vision.patch_size ** 2,
                                              generator=generator), "image_grid_thw": torch.tensor([[1, 4, 4]])}
    elif family == "llava_onevision":  # the base image and one anyres tile of 28 px
        inputs = {"pixel_values": torch.randn(1, 2, 3, 28, 28, generator=generator),
                  "image_sizes": torch.tensor([[28, 28]])}
    else:  # InternVL: one 28 px tile
        inputs = {"pixel_values": torch.randn(1, 3, 28, 28, generator=generator)}
    with torch.no_grad():
        features = model.model.get_image_features(**inputs).pooler_output
    count = sum(len(f) for f in features) if isinstance(features, (list, tuple)) else features.shape[:-1].numel()
    return inputs, count


class _ImageRows(torch.utils.data.Dataset):
    """Eight fixed rows of random text around one random image, the loss on every text token."""

    def __init__(self, family, model):
        generator = torch.Generator().manual_seed(0)
        config = model.config
        image_token = getattr(config, "image_token_id", None) or config.image_token_index
        self.rows = []
        for _ in range(8):
            image, count = _image_inputs(family, model, generator)
            start = [config.vision_start_token_id] if family in ("qwen2_5_vl", "qwen3_vl") else []
            ids = torch.cat([torch.randint(3, 400, (4,), generator=generator), torch.tensor(start, dtype=torch.long),
                             torch.full((count,), image_token), torch.randint(3, 400, (8,), generator=generator)])
            labels = torch.where(ids == image_token, -100, ids)
            row = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, **image}
            if family == "qwen3_vl":  # its M-RoPE positions need the processor's token types
                row["mm_token_type_ids"] = (ids == image_token).long()
            self.rows.append(row)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


TEXT_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids")


def _collate(rows):
    """Stack the text; concatenate the image inputs along their first dimension (Qwen-VL's patches and
    grids, InternVL's tiles, OneVision's images), as each family's processor batches them."""
    return {key: (torch.stack if key in TEXT_KEYS else torch.cat)([row[key] for row in rows]) for key in rows[0]}


def _trainer(family, tmp_path, selection, *, checkpointing=False, optimizer_over_every_parameter=False, **extra):
    from transformers import Trainer, TrainingArguments

    from plast_plugin.trainers.hf import PlastCallback

    model = _load(family["name"], family["path"])
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to="none", save_strategy="steps", save_steps=2,
                             activation_checkpointing=checkpointing, use_cpu=True,
                             remove_unused_columns=False, **extra)
    # An optimizer built before the freeze (a common mistake) would train the whole model.
    optimizers = ((torch.optim.AdamW(model.parameters(), lr=1e-3), None) if optimizer_over_every_parameter
                  else (None, None))
    trainer = Trainer(model=model, args=args, train_dataset=_ImageRows(family["name"], model), data_collator=_collate,
                      callbacks=[PlastCallback(selection)], optimizers=optimizers)
    return model, trainer


def test_the_layout_is_the_language_models_decoder(family):
    model = _load(family["name"], family["path"])
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
    model = _load(family["name"], family["path"])
    model(**_collate([_ImageRows(family["name"], model)[0]])).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith(("model.visual.", "model.vision_tower.")))

    selection = _selection(family, tmp_path, modules)
    model, trainer = _trainer(family, tmp_path, selection, checkpointing=checkpointing)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters()
                         if n.startswith(f"{MEMORY_LAYERS}{TRAINED_LAYER}.{SUBMODULE[modules]}")}
    trainer.train()  # the callback checks the optimizer holds exactly these before the first step
    assert model.is_activation_checkpointing == checkpointing
    out = tmp_path / "out"
    trainer.save_model(str(out))

    base, trained = _tensors(family["path"]), _tensors(out)
    selected = {n for n in base if n.startswith(f"{FILE_LAYERS[family['name']]}{TRAINED_LAYER}.{SUBMODULE[modules]}")}
    assert selected and _changed(base, trained) == selected  # every selected tensor moved, nothing else

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
    assert not _changed(trained, _tensors(tmp_path / "merged"))


def test_the_callback_refuses_an_optimizer_over_every_parameter(family, tmp_path):
    selection = _selection(family, tmp_path, "layer")
    model, trainer = _trainer(family, tmp_path, selection, optimizer_over_every_parameter=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(PlastError, match="extra"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # refused before any step
