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

import base64
import io
import json
import runpy

import pytest
import torch
from eval_testutil import REPO
from vlm_training_util import FAMILIES, TRAINED_LAYER, changed, load, selected_in_files, tensors, write_selection

from plast_plugin.cli import main as plast
from plast_plugin.testing.tiny_models import make_tiny_vlm
from plast_plugin.trainers.hf_data import ConversationDataset, collate

SCRIPT = REPO / "scripts" / "train_hf_example.py"
# How each family's chat template ends an assistant turn (OneVision-hf writes no newline after it).
END_OF_TURN = {"qwen2_5_vl": "<|im_end|>\n", "qwen3_vl": "<|im_end|>\n", "llava_onevision": "<|im_end|>",
               "internvl": "<|im_end|>\n"}
QUESTIONS = {"en": "What is the color of the car in the picture?", "zh": "图片中汽车是什么颜色？",
             "ru": "Какого цвета машина на картинке?"}


def _png(size, seed) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (40 * seed, 90, 9)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request, tmp_path_factory):
    """The family's tiny model with its processor, `plast build-data` output (three questions with images
    of three aspect ratios, one without) and a selection of one decoder layer."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    family = {"name": name, "path": make_tiny_vlm(name, root / "model")}
    sizes = [(60, 30), (30, 60), (56, 56)]
    rows = [dict({"id": str(i), "lang": lang, "question": f"{text} ({i})"},
                 **({"image": _png(sizes[i], i)} if i < 3 else {}))
            for i in range(4) for lang, text in QUESTIONS.items()]
    (root / "q.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    assert plast(["build-data", "--data", str(root / "q.jsonl"), "--out", str(root / "train.json"), "--quiet"]) == 0
    return dict(family, root=root, data=root / "train.json", selection=write_selection(family, root, "layer"))


def test_rows_are_the_template_prompt_then_the_answer_which_alone_has_labels(setup):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(setup["path"]))
    data = ConversationDataset(str(setup["data"]), processor, None, 2048)
    records = json.loads(setup["data"].read_text())
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
        expected_prompt, expected = encode(prompt), encode(prompt + answer + END_OF_TURN[setup["name"]])
        prompt_length = expected_prompt["input_ids"].shape[1]

        # The row is the processor's encoding of the generation prompt followed by answer and end of turn ...
        assert torch.equal(item["input_ids"], expected["input_ids"][0])
        # ... and only the answer and the end of turn have labels, equal to their tokens.
        assert (item["labels"][:prompt_length] == -100).all()
        assert torch.equal(item["labels"][prompt_length:], item["input_ids"][prompt_length:])
        supervised = processor.tokenizer.decode(item["input_ids"][prompt_length:])
        assert supervised == answer + END_OF_TURN[setup["name"]]
        # Every input the processor makes for the image travels with the row (image_grid_thw, image_sizes, ...).
        for key, value in expected.items():
            if key not in ("input_ids", "attention_mask"):
                assert torch.equal(item[key], value[0] if value.shape == expected["input_ids"].shape else value), key
        image_tokens = int((item["input_ids"] == processor.tokenizer.convert_tokens_to_ids(processor.image_token)).sum())
        assert image_tokens > 1 if image else image_tokens == 0  # expanded as at inference, not one placeholder

    # A batch mixes rows with and without an image; the model takes it as it takes its processor's batches.
    batch = collate(processor.tokenizer.pad_token_id)([data[i] for i in range(len(data))])
    assert torch.isfinite(load(setup["name"], setup["path"])(**batch).loss)


def test_the_example_script_changes_exactly_the_selected_layer(setup, tmp_path):
    from transformers import AutoProcessor

    out = tmp_path / "out"
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--model", str(setup["path"]), "--data", str(setup["data"]), "--selection", str(setup["selection"]),
                 "--output-dir", str(out), "--max-steps", "3", "--batch-size", "2", "--lr", "1e-2"]) == 0
    base, trained = tensors(setup["path"]), tensors(out)
    selected = selected_in_files(setup["name"], "layer", base)
    assert selected and changed(base, trained) == selected  # every selected tensor moved, nothing else
    assert json.loads((out / "plast_training.json").read_text())["layers"] == [TRAINED_LAYER]
    # The processor, chat template included, is saved with the model: the checkpoint loads as the base did.
    assert AutoProcessor.from_pretrained(str(out)).chat_template == AutoProcessor.from_pretrained(
        str(setup["path"])).chat_template


def test_a_prompt_whose_image_the_maximum_length_would_cut_is_refused(setup):
    from transformers import AutoProcessor

    from plast_plugin.errors import PlastError

    if setup["name"] != "qwen2_5_vl":
        pytest.skip("one family is enough for this")
    data = ConversationDataset(str(setup["data"]), AutoProcessor.from_pretrained(str(setup["path"])), None, 20)
    with pytest.raises(PlastError, match=r"record 0 \(id '0-[a-z]+'\): the prompt with its image is \d+ tokens, more "
                                         r"than the maximum length 20.*raise the maximum length \(--max-length\)"):
        data[0]
