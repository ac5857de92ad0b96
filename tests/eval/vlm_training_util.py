"""What the vision-language family training tests share: the family's tiny model, alone or with
`plast build-data` output (module fixtures), its selection file, rows of random text around a random
image shaped by the family's config, their collate, a `transformers.Trainer` with `PlastCallback`, and
the checkpoint comparison."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_testutil import png_base64
import transformers

from plast_plugin.checkpoints.weights import CheckpointWeights
from plast_plugin.cli import main as plast
from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
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


def load(family, path):
    return getattr(transformers, VLM_FAMILIES[family][0]).from_pretrained(str(path), dtype=torch.float32)


def tensors(folder: Path) -> dict:
    with CheckpointWeights(folder) as weights:
        return weights.read_all()


def changed(base: dict, trained: dict) -> set:
    assert set(base) == set(trained)
    return {n for n in base if base[n].dtype != trained[n].dtype or not torch.equal(base[n], trained[n])}


def selected_in_files(family: str, modules: str, names) -> set:
    """The checkpoint-file tensor names of the trained layer's ``modules``."""
    return {n for n in names if n.startswith(f"{FILE_LAYERS[family]}{TRAINED_LAYER}.{SUBMODULE[modules]}")}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """The family's tiny model saved to a folder (config + weights)."""
    root = tmp_path_factory.mktemp(request.param)
    return {"name": request.param, "path": make_tiny_vlm(request.param, root / "model"), "root": root}


QUESTIONS = {"en": "What is the color of the car in the picture?", "zh": "图片中汽车是什么颜色？",
             "ru": "Какого цвета машина на картинке?"}


@pytest.fixture(scope="module", params=FAMILIES)
def family_data(request, tmp_path_factory):
    """The family's tiny model with its processor and chat template, `plast build-data` output (three
    questions with images of three aspect ratios, one without, each in zh and ru) and a selection of one
    decoder layer."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    family = {"name": name, "path": make_tiny_vlm(name, root / "model")}
    sizes = [(60, 30), (30, 60), (56, 56)]
    rows = [dict({"id": str(i), "lang": lang, "question": f"{text} ({i})"},
                 **({"image": png_base64(sizes[i], (40 * i, 90, 9))} if i < 3 else {}))
            for i in range(4) for lang, text in QUESTIONS.items()]
    (root / "q.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    assert plast(["build-data", "--data", str(root / "q.jsonl"), "--out", str(root / "train.json"), "--quiet"]) == 0
    return dict(family, root=root, data=root / "train.json", selection=write_selection(family, root, "layer"))


def write_selection(family, folder: Path, modules: str) -> Path:
    model = load(family["name"], family["path"])
    file = Path(folder) / f"plast_layers_{modules}.json"
    SelectionFile(selected_layers=[TRAINED_LAYER], model=ModelIdentity.of(model, str(family["path"])),
                  rule="manual", options={"modules": modules}).save(file)
    return file


def image_inputs(family, model, generator):
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


class ImageRows(torch.utils.data.Dataset):
    """Eight fixed rows of random text around one random image, the loss on every text token."""

    def __init__(self, family, model):
        generator = torch.Generator().manual_seed(0)
        config = model.config
        image_token = getattr(config, "image_token_id", None) or config.image_token_index
        self.rows = []
        for _ in range(8):
            image, count = image_inputs(family, model, generator)
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


def collate(rows):
    """Stack the text; concatenate the image inputs along their first dimension (Qwen-VL's patches and
    grids, InternVL's tiles, OneVision's images), as each family's processor batches them."""
    return {key: (torch.stack if key in TEXT_KEYS else torch.cat)([row[key] for row in rows]) for key in rows[0]}


def make_trainer(family, out: Path, selection, *, checkpointing=False, optimizer_over_every_parameter=False,
                 **extra):
    """The family's model and a `transformers.Trainer` with `PlastCallback` over `ImageRows`: 3 steps
    of 2 rows, a checkpoint at step 2, the model saved to ``out`` by the caller."""
    from transformers import Trainer, TrainingArguments

    from plast_plugin.trainers.hf import PlastCallback

    model = load(family["name"], family["path"])
    args = TrainingArguments(output_dir=str(out), max_steps=3, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to="none", save_strategy="steps", save_steps=2,
                             activation_checkpointing=checkpointing, use_cpu=True,
                             remove_unused_columns=False, **extra)
    # An optimizer built before the freeze (a common mistake) would train the whole model.
    optimizers = ((torch.optim.AdamW(model.parameters(), lr=1e-3), None) if optimizer_over_every_parameter
                  else (None, None))
    trainer = Trainer(model=model, args=args, train_dataset=ImageRows(family["name"], model), data_collator=collate,
                      callbacks=[PlastCallback(selection)], optimizers=optimizers)
    return model, trainer
