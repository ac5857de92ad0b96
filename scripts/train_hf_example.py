#!/usr/bin/env python
"""PLAST with the Hugging Face Trainer: fine-tune only the selected decoder layers of a llava-hf
(LlavaForConditionalGeneration) or LLaVA-NeXT (LlavaNextForConditionalGeneration) model on the
question-translation data `plast build-data` writes (LLaVA conversation JSON).

    plast select --model llava-hf/llava-1.5-7b-hf --data questions.jsonl --out runs/select
    plast build-data --data questions.jsonl --out data/plast_train.json
    python scripts/train_hf_example.py --model llava-hf/llava-1.5-7b-hf \
        --data data/plast_train.json --selection runs/select/plast_layers.json \
        --output-dir checkpoints/llava-1.5-7b-hf-plast --bf16
    plast export checkpoints/llava-1.5-7b-hf-plast --out checkpoints/llava-1.5-7b-hf-plast-delta

Each conversation is rendered with the model's own chat template (the processor's, else the
tokenizer's); the loss is on the answer only (the prompt's labels are -100). The prompt goes
through the model's processor, so images are expanded exactly as at inference (in transformers 5
the processor writes one image token per feature, LLaVA-NeXT's anyres tiles included).
`plast_plugin.trainers.hf.PlastCallback` freezes all but the selected layers, checks the optimizer and
writes the records `plast export` reads. Multi-GPU: launch with `torchrun` / `accelerate launch`
and pass `--deepspeed scripts/zero2.json` as with any Trainer script.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IGNORE_INDEX = -100


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="llava-hf or LLaVA-NeXT-hf model: folder or hub id")
    parser.add_argument("--data", required=True, help="`plast build-data` output (LLaVA conversation JSON)")
    parser.add_argument("--selection", required=True, help="plast_layers.json from `plast select`")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--image-folder", default=None, help="folder that relative 'image' paths are under")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (default: epochs)")
    parser.add_argument("--batch-size", type=int, default=4, help="per device")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-5, help="LLaVA-1.5 finetuning's learning rate")
    parser.add_argument("--max-length", type=int, default=2048, help="truncate longer samples (tokens)")
    parser.add_argument("--save-steps", type=int, default=0, help="also save checkpoint-N every N steps (0: only the end)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--deepspeed", default=None, help="a DeepSpeed config, e.g. scripts/zero2.json")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_model_and_processor(name: str, bf16: bool):
    import torch
    import transformers
    from transformers import AutoProcessor

    from plast_plugin.models.model_source import checkpoint_kind, read_config

    kind = checkpoint_kind(read_config(name))
    classes = {"llava-hf": "LlavaForConditionalGeneration", "llava-next-hf": "LlavaNextForConditionalGeneration"}
    if kind not in classes:
        sys.exit(f"{name}: a {kind} checkpoint; this example trains transformers' LLaVA ports (llava-hf, "
                 f"LLaVA-NeXT-hf). Official LLaVA checkpoints train with LLaVA's own script (README, step 3).")
    if not hasattr(transformers, classes[kind]):
        sys.exit(f"{name}: transformers {transformers.__version__} has no {classes[kind]}; upgrade transformers")
    dtype = torch.bfloat16 if bf16 else torch.float32
    major = int(transformers.__version__.split(".")[0])
    model = getattr(transformers, classes[kind]).from_pretrained(
        name, **({"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}))
    if getattr(model.config, "hidden_size", None) is None:
        # The Trainer fills DeepSpeed's "auto" bucket sizes from config.hidden_size, which the LLaVA
        # configs keep in text_config only ("has neither `hidden_size` nor `hidden_sizes`").
        model.config.hidden_size = model.config.text_config.hidden_size
    return model, AutoProcessor.from_pretrained(name)


class ChatRenderer:
    """Prompt and answer text of one conversation through the model's chat template."""

    def __init__(self, processor):
        self.processor = processor
        if getattr(processor, "chat_template", None):
            self.apply = processor.apply_chat_template
        elif getattr(processor.tokenizer, "chat_template", None):
            self.apply = processor.tokenizer.apply_chat_template
        else:
            sys.exit("the model has no chat template (neither its processor nor its tokenizer); set one with "
                     "processor.chat_template = ... and save it next to the model")

    def render(self, question: str, answer: str, with_image: bool) -> tuple[str, str]:
        user = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        prompt = self.apply(messages[:1], add_generation_prompt=True, tokenize=False)
        full = self.apply(messages, tokenize=False)
        if not full.startswith(prompt):
            sys.exit(f"the chat template renders the conversation ({full!r}) not as the prompt ({prompt!r}) "
                     f"followed by the answer; cannot put the loss on the answer only")
        return prompt, full[len(prompt):]


class ConversationDataset:
    """`plast build-data` records -> input_ids / labels (answer only) / pixel_values."""

    def __init__(self, path: str, processor, image_folder: str | None, max_length: int):
        self.records = json.loads(Path(path).read_text(encoding="utf-8"))
        self.processor, self.render = processor, ChatRenderer(processor)
        self.image_folder, self.max_length = image_folder, max_length
        for index, record in enumerate(self.records):
            turns = record.get("conversations") or []
            if len(turns) != 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
                sys.exit(f"{path}: record {index} (id {record.get('id')!r}) is not one human turn and one gpt "
                         f"turn; write the data with `plast build-data`")

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

    def collate_fn(items):
        width = max(len(item["input_ids"]) for item in items)
        batch = {
            "input_ids": torch.full((len(items), width), pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(items), width), dtype=torch.long),
            "labels": torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long),
        }
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            batch["input_ids"][row, :n] = item["input_ids"]
            batch["attention_mask"][row, :n] = 1
            batch["labels"][row, :n] = item["labels"]
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


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers import Trainer, TrainingArguments

    from plast_plugin.trainers.hf import PlastCallback

    model, processor = load_model_and_processor(args.model, args.bf16)
    data = ConversationDataset(args.data, processor, args.image_folder, args.max_length)
    supervised = sum(int((data[i]["labels"] != IGNORE_INDEX).sum()) for i in range(min(len(data), 8)))
    if supervised == 0:
        sys.exit("the first samples have no answer token left (all labels -100): check --max-length and the template")
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    # LLaVA-1.5's 3% warmup: `warmup_ratio` in transformers 4.x, a float `warmup_steps` in 5.x ...
    import dataclasses

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    ratio_field = "warmup_ratio" if "warmup_ratio" in fields else "warmup_steps"
    # ... and transformers 5 renamed gradient_checkpointing to activation_checkpointing.
    checkpointing_field = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    training_args = TrainingArguments(
        output_dir=args.output_dir, num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr, lr_scheduler_type="cosine", weight_decay=0.0, **{ratio_field: 0.03},
        logging_steps=1, save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
        bf16=args.bf16, deepspeed=args.deepspeed, **{checkpointing_field: args.gradient_checkpointing},
        remove_unused_columns=False, report_to="none", seed=args.seed, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=data, data_collator=collate(pad_id),
                      callbacks=[PlastCallback(args.selection)])
    trainer.train()
    trainer.save_model(args.output_dir)
    processor.save_pretrained(args.output_dir)
    print(f"[plast] saved to {args.output_dir}; `plast export {args.output_dir} --out DELTA` writes only the "
          f"trained layers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
