"""Run in the *training* env: next-token logits of an official-format LLaVA on a fixed input.

Usage: python official_llava_logits.py <checkpoint_dir> <image.png> <out.pt>
Writes {"input_ids", "pixel_values", "logits" (last position), "prompt"} with torch.save.
"""

import sys

import torch


def main(ckpt: str, image_path: str, out: str) -> None:
    torch.set_num_threads(1)
    from PIL import Image

    from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
    from llava.conversation import conv_templates
    from llava.mm_utils import process_images, tokenizer_image_token
    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ckpt, use_fast=False)
    model = LlavaLlamaForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32)
    tower = model.get_vision_tower()
    if not tower.is_loaded:  # as llava.model.builder.load_pretrained_model does
        tower.load_model()
    model.eval()
    conv = conv_templates["vicuna_v1"].copy()
    conv.append_message(conv.roles[0], DEFAULT_IMAGE_TOKEN + "\nWhat is the colour of the car? A. red\nB. blue")
    conv.append_message(conv.roles[1], None)
    prompt = conv.get_prompt()
    input_ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt").unsqueeze(0)
    image = Image.open(image_path).convert("RGB")
    pixel_values = process_images([image], tower.image_processor, model.config).to(torch.float32)
    with torch.no_grad():
        logits = model(input_ids=input_ids, images=pixel_values, image_sizes=[image.size]).logits
    torch.save({"input_ids": input_ids, "pixel_values": pixel_values, "logits": logits[0, -1].clone(),
                "prompt": prompt}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
