"""scripts/train_hf_example.py and its data reader (`plast_plugin.trainers.hf_data`) on the vision-language
families: Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and InternVL, each a tiny random model whose folder holds
its family's tokenizer, processor and chat template (`make_tiny_vlm`), trained on `plast build-data`
output with images of three aspect ratios and rows without an image.

Each training row is the processor's own encoding of the model's chat template: the generation prompt
(the image expanded as at inference: Qwen-VL's patch grid, OneVision's anyres tiles, InternVL's tiles),
then the answer and the template's end of turn, the only tokens with labels. A short run of the script
changes exactly the selected layer's tensors of the saved checkpoint.
"""
from __future__ import annotations

import json
import runpy

import pytest
import torch
from eval_testutil import REPO
from vlm_training_util import family_data  # noqa: F401 (fixture)
from vlm_training_util import TRAINED_LAYER, changed, load, selected_in_files, tensors

from plast_plugin.trainers.hf_data import ConversationDataset, collate

SCRIPT = REPO / "scripts" / "train_hf_example.py"
# How each family's chat template ends an assistant turn (OneVision-hf writes no newline after it).
END_OF_TURN = {"qwen2_5_vl": "<|im_end|>\n", "qwen3_vl": "<|im_end|>\n", "llava_onevision": "<|im_end|>",
               "internvl": "<|im_end|>\n"}


def test_rows_are_the_template_prompt_then_the_answer_which_alone_has_labels(family_data):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(family_data["path"]))
    data = ConversationDataset(str(family_data["data"]), processor, None, 2048)
    records = json.loads(family_data["data"].read_text())
    assert len(data) == 8 and sum("image" in r for r in records) == 6
    for index, record in enumerate(records):
        item = data[index]
        question = record["conversations"][0]["value"].replace("<image>\n", "")
        answer = record["conversations"][1]["value"]
        image = Image.open(record["image"]).convert("RGB") if "image" in record else None
        content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": question}]
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                               tokenize=False)
        encode = (lambda text: processor(text=text, images=image, return_tensors="pt")) if image else (
            lambda text: processor.tokenizer(text, return_tensors="pt"))
        expected_prompt, expected = encode(prompt), encode(prompt + answer + END_OF_TURN[family_data["name"]])
        prompt_length = expected_prompt["input_ids"].shape[1]

        # The row is the processor's encoding of the generation prompt followed by answer and end of turn ...
        assert torch.equal(item["input_ids"], expected["input_ids"][0])
        # ... and only the answer and the end of turn have labels, equal to their tokens.
        assert (item["labels"][:prompt_length] == -100).all()
        assert torch.equal(item["labels"][prompt_length:], item["input_ids"][prompt_length:])
        supervised = processor.tokenizer.decode(item["input_ids"][prompt_length:])
        assert supervised == answer + END_OF_TURN[family_data["name"]]
        # Every input the processor makes for the image travels with the row (image_grid_thw, image_sizes, ...).
        for key, value in expected.items():
            if key not in ("input_ids", "attention_mask"):
                assert torch.equal(item[key], value[0] if value.shape == expected["input_ids"].shape else value), key
        image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        image_tokens = int((item["input_ids"] == image_token).sum())
        assert image_tokens > 1 if image else image_tokens == 0  # expanded as at inference, not one placeholder

    # A batch mixes rows with and without an image; the model takes it as it takes its processor's batches.
    batch = collate(processor.tokenizer.pad_token_id)([data[i] for i in range(len(data))])
    assert torch.isfinite(load(family_data["name"], family_data["path"])(**batch).loss)


def test_the_example_script_changes_exactly_the_selected_layer(family_data, tmp_path):
    from transformers import AutoProcessor

    out = tmp_path / "out"
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--model", str(family_data["path"]), "--data", str(family_data["data"]),
                 "--selection", str(family_data["selection"]), "--output-dir", str(out), "--max-steps", "3",
                 "--batch-size", "2", "--lr", "1e-2"]) == 0
    base, trained = tensors(family_data["path"]), tensors(out)
    selected = selected_in_files(family_data["name"], "layer", base)
    assert selected and changed(base, trained) == selected  # every selected tensor moved, nothing else
    assert json.loads((out / "plast_training.json").read_text())["layers"] == [TRAINED_LAYER]
    # The processor, chat template included, is saved with the model: the checkpoint loads as the base did.
    assert AutoProcessor.from_pretrained(str(out)).chat_template == AutoProcessor.from_pretrained(
        str(family_data["path"])).chat_template


def test_a_prompt_whose_image_the_maximum_length_would_cut_is_refused(family_data):
    from transformers import AutoProcessor

    from plast_plugin.errors import PlastError

    if family_data["name"] != "qwen2_5_vl":
        pytest.skip("one family is enough for this")
    processor = AutoProcessor.from_pretrained(str(family_data["path"]))
    data = ConversationDataset(str(family_data["data"]), processor, None, 20)
    with pytest.raises(PlastError, match=r"record 0 \(id '0-[a-z]+'\): the prompt with its image is \d+ tokens, more "
                                         r"than the maximum length 20.*raise the maximum length \(--max-length\)"):
        data[0]
