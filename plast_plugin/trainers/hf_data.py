"""`plast build-data` output (LLaVA conversation JSON) as Hugging Face Trainer data for transformers'
LLaVA ports, to train with ``trainers.hf.PlastCallback`` (``scripts/train_hf_example.py`` runs it).

Each conversation is rendered with the model's own chat template and encoded by its processor, so
images expand exactly as at inference (LLaVA-NeXT's anyres tiles included); the loss is on the
answer only.
"""
from __future__ import annotations

from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json
from plast_plugin.models.chat_template import IGNORE_INDEX, ChatRenderer


class ConversationDataset:
    """`plast build-data` records -> input_ids / labels (answer only) / pixel_values."""

    def __init__(self, path: str, processor, image_folder: str | None, max_length: int):
        self.records = read_json(path, "training data", "write it with `plast build-data`")
        if not isinstance(self.records, list):
            raise PlastError(f"training data {path} holds a JSON {type(self.records).__name__}, not a list of "
                             f"records; write it with `plast build-data`")
        self.processor, self.render = processor, ChatRenderer(processor)
        self.image_folder, self.max_length = image_folder, max_length
        for index, record in enumerate(self.records):
            turns = record.get("conversations") or []
            if len(turns) != 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
                raise PlastError(f"{path}: record {index} (id {record.get('id')!r}) is not one human turn and "
                                 f"one gpt turn; write the data with `plast build-data`")

    def __len__(self):
        return len(self.records)

    def _image(self, reference: str):
        from PIL import Image

        path = Path(reference)
        if not path.is_absolute() and self.image_folder:
            path = Path(self.image_folder) / path
        return Image.open(path).convert("RGB")

    def __getitem__(self, index):
        import torch

        record = self.records[index]
        question, answer = record["conversations"][0]["value"], record["conversations"][1]["value"]
        with_image = "image" in record
        question = question.replace("<image>\n", "").replace("<image>", "").strip()
        prompt, answer_text = self.render.render(question, answer, with_image)
        if with_image:
            encoded = self.processor(text=prompt, images=self._image(record["image"]), return_tensors="pt")
        else:
            encoded = self.processor.tokenizer(prompt, return_tensors="pt")
        answer_ids = self.processor.tokenizer(answer_text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        prompt_ids = encoded["input_ids"][0]
        item = {
            "input_ids": torch.cat([prompt_ids, answer_ids])[: self.max_length],
            "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids])[: self.max_length],
        }
        for key in ("pixel_values", "image_sizes"):
            if key in encoded:
                item[key] = encoded[key]
        return item


def collate(pad_id: int):
    import torch

    from plast_plugin.models.probe_inputs import pad_rows

    def collate_fn(items):
        batch = {
            "input_ids": pad_rows([item["input_ids"] for item in items], torch.long, left=False, fill=pad_id),
            "attention_mask": pad_rows([[1] * len(item["input_ids"]) for item in items], torch.long, left=False),
            "labels": pad_rows([item["labels"] for item in items], torch.long, left=False, fill=IGNORE_INDEX),
        }
        pixels = [item["pixel_values"] for item in items if "pixel_values" in item]
        if pixels:
            if pixels[0].dim() == 5:  # LLaVA-NeXT: [1, tiles, C, H, W]; tile counts differ per image
                tiles = max(p.shape[1] for p in pixels)
                pixels = [torch.nn.functional.pad(p, (0, 0, 0, 0, 0, 0, 0, tiles - p.shape[1])) for p in pixels]
            batch["pixel_values"] = torch.cat(pixels)
        sizes = [item["image_sizes"] for item in items if "image_sizes" in item]
        if sizes:
            batch["image_sizes"] = torch.cat(sizes)
        return batch

    return collate_fn
