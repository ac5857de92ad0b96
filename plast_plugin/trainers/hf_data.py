"""`plast build-data` output (LLaVA conversation JSON) as Hugging Face Trainer data for transformers'
vision-language models (llava-hf, LLaVA-NeXT, LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL, InternVL), to train
with ``trainers.hf.PlastCallback`` (``scripts/train_hf_example.py`` runs it).

Each conversation is rendered with the model's own chat template and encoded by its processor, so
images expand exactly as at inference (LLaVA-NeXT's and OneVision's anyres tiles, Qwen-VL's dynamic
resolution, InternVL's tiles); every model input the processor returns travels with the row (Qwen-VL's
``image_grid_thw`` and ``mm_token_type_ids``, OneVision's ``image_sizes`` and ``batch_num_images``).
The loss is on the answer only: the answer's tokens and the template's end of turn.
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
        if not with_image:  # the very tokens held-out scoring reads (models.translation_loss)
            ids, labels = self.render.text_ids(question, answer, self.max_length)
            return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}
        prompt, answer_text = self.render.render(question, answer, with_image)
        encoded = self.processor(text=prompt, images=self._image(record["image"]), return_tensors="pt")
        answer_ids = torch.tensor(self.render.answer_ids(prompt, answer_text), dtype=torch.long)
        prompt_ids = encoded["input_ids"][0]
        if len(prompt_ids) > self.max_length:
            raise PlastError(f"record {index} (id {record.get('id')!r}): the prompt with its image is "
                             f"{len(prompt_ids)} tokens, more than the maximum length {self.max_length}; cutting it "
                             f"would drop image tokens the model needs: raise the maximum length (--max-length)")
        item = {
            "input_ids": torch.cat([prompt_ids, answer_ids])[: self.max_length],
            "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids])[: self.max_length],
        }
        names = getattr(self.processor, "model_input_names", None) or list(encoded)
        for key in names:
            if key in ("input_ids", "attention_mask") or key not in encoded:
                continue
            value = encoded[key]
            if value.shape == encoded["input_ids"].shape:  # one value per token (Qwen-VL's mm_token_type_ids)
                item[key] = torch.cat([value[0], torch.zeros_like(answer_ids, dtype=value.dtype)])[: self.max_length]
            else:  # the image's inputs, as the processor batches them
                item[key] = value
        return item


def _per_token(item: dict, key: str) -> bool:
    """Whether ``item[key]`` holds one value per token (padded like the ids), not an image input
    (concatenated as the processor batches images)."""
    value = item[key]
    return value.dim() == 1 and value.shape == item["input_ids"].shape


def collate(pad_id: int):
    import torch

    from plast_plugin.models.probe_inputs import pad_rows

    def collate_fn(items):
        batch = {
            "input_ids": pad_rows([item["input_ids"] for item in items], torch.long, left=False, fill=pad_id),
            "attention_mask": pad_rows([[1] * len(item["input_ids"]) for item in items], torch.long, left=False),
            "labels": pad_rows([item["labels"] for item in items], torch.long, left=False, fill=IGNORE_INDEX),
        }
        keys = dict.fromkeys(key for item in items for key in item if key not in batch)
        for key in keys:
            if any(key in item and _per_token(item, key) for item in items):
                # A text-only row has none (its tokenizer does not make them): all text, 0.
                rows = [item[key] if key in item else torch.zeros_like(item["input_ids"]) for item in items]
                batch[key] = pad_rows(rows, rows[0].dtype, left=False, fill=0)
            elif key == "batch_num_images":  # OneVision: one count per row, 0 for a text-only row
                batch[key] = torch.cat([item.get(key, torch.zeros(1, dtype=torch.long)) for item in items])
            else:
                values = [item[key] for item in items if key in item]
                if key == "pixel_values" and values[0].dim() == 5:
                    # LLaVA-NeXT / OneVision: [1, tiles, C, H, W]; tile counts differ per image, the
                    # model reads each image's own count from image_sizes.
                    tiles = max(v.shape[1] for v in values)
                    values = [torch.nn.functional.pad(v, (0, 0, 0, 0, 0, 0, 0, tiles - v.shape[1])) for v in values]
                batch[key] = torch.cat(values)
        return batch

    return collate_fn
