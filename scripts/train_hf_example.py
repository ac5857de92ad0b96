#!/usr/bin/env python
"""PLAST with the Hugging Face Trainer: fine-tune only the selected decoder layers of one of transformers'
vision-language models (llava-hf, LLaVA-NeXT, LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL, InternVL) on the
question-translation data `plast build-data` writes (LLaVA conversation JSON).

    plast select --model llava-hf/llava-1.5-7b-hf --data questions.jsonl --out runs/select
    plast build-data --data questions.jsonl --out data/plast_train.json
    python scripts/train_hf_example.py --model llava-hf/llava-1.5-7b-hf \
        --data data/plast_train.json --selection runs/select/plast_layers.json \
        --output-dir checkpoints/llava-1.5-7b-hf-plast --bf16
    plast export checkpoints/llava-1.5-7b-hf-plast --out checkpoints/llava-1.5-7b-hf-plast-delta

`plast_plugin.trainers.hf_data` reads the data (the model's own chat template, loss on the answer
only, images through the model's processor, with every input it makes: Qwen-VL's image_grid_thw,
OneVision's image_sizes, ...); `plast_plugin.trainers.hf.PlastCallback` freezes all but the
selected layers, checks the optimizer and writes the records `plast export` reads. Multi-GPU: launch with `torchrun` / `accelerate launch`
and pass `--deepspeed scripts/zero2.json` as with any Trainer script.
"""
from __future__ import annotations

import argparse
import sys

from plast_plugin.errors import PlastError
from plast_plugin.trainers.hf_data import IGNORE_INDEX, ConversationDataset, collate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a transformers vision-language model (llava-hf, LLaVA-NeXT, "
                        "LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL, InternVL): folder or hub id")
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

    from plast_plugin.models.model_source import HF_MODEL_CLASSES, checkpoint_kind, read_config

    kind = checkpoint_kind(read_config(name))
    classes = {k: v for k, v in HF_MODEL_CLASSES.items() if k != "causal-lm"}
    if kind not in classes:
        sys.exit(f"{name}: a {kind} checkpoint; this example trains transformers' vision-language models "
                 f"({', '.join(classes)}). Official LLaVA checkpoints train with LLaVA's own script (README, step 3).")
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


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers import Trainer, TrainingArguments

    from plast_plugin.trainers.hf import PlastCallback

    # Loaded before the TrainingArguments exist: with a ZeRO-3 config they would make transformers load
    # the model partitioned (deepspeed.zero.Init), and the checkpoint the Trainer then saves names the
    # Qwen-VL families' tensors with a doubled prefix (`model.model.layers.N`; transformers 5.24,
    # DeepSpeed 0.19.8; docs/troubleshooting.md). DeepSpeed partitions the loaded model instead.
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
    try:
        sys.exit(main())
    except PlastError as err:  # bad data or template: the message names it and the fix
        sys.exit(str(err))
