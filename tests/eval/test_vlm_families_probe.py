"""`plast select` on the vision-language families transformers 5 ships (Qwen2.5-VL, Qwen3-VL,
LLaVA-OneVision, InternVL), each a tiny random model saved with its processor and chat template.

The images go through the model's own processor: Qwen's dynamic resolution gives each image size its
own number of image tokens, OneVision's anyres its own tiles, InternVL its own tiles between <img>
and </img>. The probe must count exactly the question's tokens of the prompt the processor and the
chat template produce, whatever the image expanded to; the activations it counts must be the model's
own forward on the processor's inputs, one question at a time; left and right padding must give the
same counts and statistics.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from eval_testutil import png_base64

from plast_plugin.cli import main as plast
from plast_plugin.core.model_layout import find_decoder_layers
from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_image, load_parallel_questions
from plast_plugin.errors import PlastError
from plast_plugin.models.loading import load_for_probe
from plast_plugin.models.probe_inputs import pad_batch, split_pivot
from plast_plugin.models.probe_models import family_for
from plast_plugin.pipeline import probe_questions, run_selection
from plast_plugin.testing.gate_counts import add_gate_counts
from plast_plugin.testing.tiny_models import VLM_FAMILIES, make_tiny_vlm

QUESTIONS = {
    "1": {"en": "How many apples does Tom have left?", "zh": "汤姆还剩下多少个苹果？", "ar": "كم تفاحة بقيت مع توم؟"},
    "2": {"en": "What color is the sky on a clear day?", "zh": "晴天的时候天空是什么颜色？",
          "ar": "ما لون السماء في يوم صاف؟"},
    "3": {"en": "Where is the nearest train station?", "zh": "最近的火车站在哪里？", "ar": "أين أقرب محطة قطار؟"},
    "4": {"en": "A shop sells 12 pens for 3 dollars. How much do 20 pens cost?",
          "zh": "一家商店3美元卖12支笔。20支笔多少钱？", "ar": "متجر يبيع 12 قلما مقابل 3 دولارات. كم ثمن 20 قلما؟"},
    "5": {"en": "Why do cats sleep so much?", "zh": "猫为什么睡这么多？", "ar": "لماذا تنام القطط كثيرا؟"},
}
# Wide, tall, square, small and large: different Qwen grids, OneVision tiles and InternVL tile counts.
SIZES = {"1": (60, 30), "2": (30, 60), "3": (60, 60), "4": (40, 30), "5": (90, 50)}


def _write_questions(path: Path, languages=("en", "zh", "ar"), with_images=True, edit=lambda lang, text: text) -> Path:
    rows = [dict({"id": qid, "lang": lang, "question": edit(lang, texts[lang])},
                 **({"image": png_base64(SIZES[qid], (40 * int(qid), 90, 200))} if with_images else {}))
            for qid, texts in QUESTIONS.items() for lang in languages]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=list(VLM_FAMILIES))
def family(request, tmp_path_factory):
    """The family's tiny model folder (config, weights, tokenizer, processor, chat template), loaded
    as `plast select` loads it."""
    root = tmp_path_factory.mktemp(request.param)
    folder = make_tiny_vlm(request.param, root / "model")
    model, tokenizer, processor = load_for_probe(str(folder), "cpu", "fp32")
    return {"name": request.param, "path": folder, "root": root, "model": model, "tokenizer": tokenizer,
            "processor": processor}


@pytest.fixture(scope="module")
def questions(family):
    return load_parallel_questions([str(_write_questions(family["root"] / "q.jsonl"))], None, "en")


def _probe(family, questions, **options):
    padding_side = options.pop("padding_side", "right")
    return probe_questions(family["model"], family["tokenizer"], questions, SelectionOptions(**options),
                           image_processor=family["processor"], progress=False, padding_side=padding_side)


def _processor_inputs(processor, question: str, image, prompt: str = "llava"):
    """The model's inputs for one question as its own processor and chat template make them (prompt
    'plain': the image token, a newline and the question, no template)."""
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": question}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)
    if prompt == "plain":
        text = (processor.image_token + "\n" if image is not None else "") + question
    return processor(text=[text], images=None if image is None else [image], return_tensors="pt")


def _question_positions(processor, question: str, image, prompt: str) -> torch.Tensor:
    """Where the question's tokens are in the processor's expanded prompt: what differs from the
    same prompt with an empty question (the text before and after it, image tokens included, is
    shared)."""
    full = _processor_inputs(processor, question, image, prompt)["input_ids"][0].tolist()
    empty = _processor_inputs(processor, "", image, prompt)["input_ids"][0].tolist()
    start = next((i for i, (a, b) in enumerate(zip(full, empty)) if a != b), len(empty))
    tail = 0
    while tail < len(empty) - start and full[-1 - tail] == empty[-1 - tail]:
        tail += 1
    counted = torch.zeros(len(full), dtype=torch.bool)
    counted[start:len(full) - tail] = True
    return counted


def _image_token_count(processor, image) -> int:
    ids = _processor_inputs(processor, "", image)["input_ids"]
    return int((ids == processor.image_token_id).sum())


def _own_forward_counts(family, questions, lang: str, with_images: bool, prompt: str = "llava"):
    """Reference: the model itself (its full forward, LM head included) on the processor's inputs, one
    question at a time, gate activations counted by hooks at the question's positions."""
    model, processor = family["model"], family["processor"]
    layers = find_decoder_layers(model).layers
    counts = torch.zeros(len(layers), layers[0].mlp.gate_proj.out_features, dtype=torch.long)
    tokens = 0
    for qid in questions.ids:
        image = load_image(questions.image(qid)) if with_images else None
        question = questions.question(qid, lang)
        counted = _question_positions(processor, question, image, prompt)
        tokens += int(counted.sum())

        inputs = _processor_inputs(processor, question, image, prompt)
        add_gate_counts(layers, counted, counts, lambda: model(**inputs))
    return counts, tokens


def test_each_image_size_expands_to_its_own_number_of_tokens(family, questions):
    per_image = {qid: _image_token_count(family["processor"], load_image(questions.image(qid))) for qid in SIZES}
    assert len(set(per_image.values())) >= 2, per_image  # a batch of 3 really mixes expansions


def test_counts_are_the_models_own_forward_on_the_processors_inputs(family, questions):
    probed = _probe(family, questions, batch_size=3)  # images of different sizes in one batch
    assert probed.images_used
    for lang in ("zh", "ar"):
        counts, tokens = _own_forward_counts(family, questions, lang, with_images=True)
        group = probed.groups.index(lang)
        assert int(probed.counts.tokens[group]) == tokens
        assert torch.equal(probed.counts.counts[group], counts)
    counts, tokens = _own_forward_counts(family, questions, "en", with_images=True)  # both pivot halves
    halves = [probed.groups.index(group) for group in probed.groups[-2:]]
    assert int(probed.counts.tokens[halves].sum()) == tokens
    assert torch.equal(probed.counts.counts[halves].sum(0), counts)


def test_text_only_probe_is_the_language_models_own_forward(family, questions):
    probed = _probe(family, questions, batch_size=3, images="off")
    assert not probed.images_used
    counts, tokens = _own_forward_counts(family, questions, "zh", with_images=False)
    zh = probed.groups.index("zh")
    assert int(probed.counts.tokens[zh]) == tokens
    assert torch.equal(probed.counts.counts[zh], counts)
    # The same question tokens are counted with the image in the context, and they see it.
    with_images = _probe(family, questions, batch_size=3)
    assert torch.equal(with_images.counts.tokens, probed.counts.tokens)
    assert not torch.equal(with_images.counts.counts, probed.counts.counts)


def test_plain_prompt_counts_are_the_models_own_forward(family, questions):
    probed = _probe(family, questions, batch_size=3, prompt="plain")
    counts, tokens = _own_forward_counts(family, questions, "ar", with_images=True, prompt="plain")
    ar = probed.groups.index("ar")
    assert int(probed.counts.tokens[ar]) == tokens
    assert torch.equal(probed.counts.counts[ar], counts)


def test_long_questions_keep_their_first_tokens(family, questions):
    probed = _probe(family, questions, batch_size=3, max_question_tokens=2)
    halves = split_pivot(len(questions.ids), SelectionOptions().seed)
    assert probed.images_used
    assert probed.counts.tokens.tolist() == [2 * len(questions.ids)] * 2 + [2 * halves.count(h) for h in (0, 1)]


@pytest.mark.filterwarnings("ignore::plast_plugin.pipeline.BelowNoiseFloorWarning")  # 5 questions: noisy
def test_left_and_right_padding_give_the_same_counts_and_statistics(family, questions):
    right = _probe(family, questions, batch_size=3)
    left = _probe(family, questions, batch_size=3, padding_side="left")
    assert torch.equal(left.counts.tokens, right.counts.tokens)
    assert torch.equal(left.counts.counts, right.counts.counts)
    selections = [run_selection(family["model"], family["tokenizer"], questions, SelectionOptions(batch_size=3),
                                image_processor=family["processor"], progress=False, padding_side=side)
                  for side in ("left", "right")]
    assert selections[0].data["tokens_counted"] == selections[1].data["tokens_counted"]
    assert selections[0].layers == selections[1].layers
    assert selections[0].selected_layers == selections[1].selected_layers


def test_image_positions_are_the_processors_image_tokens(family, questions):
    probed = _probe(family, questions, batch_size=3, positions="image")
    per_image = {qid: _image_token_count(family["processor"], load_image(questions.image(qid))) for qid in SIZES}
    halves = split_pivot(len(questions.ids), SelectionOptions().seed)
    expected = [sum(per_image.values())] * 2 + [
        sum(per_image[q] for q, h in zip(questions.ids, halves) if h == half) for half in (0, 1)]
    assert len(probed.groups) == 4 and probed.counts.tokens.tolist() == expected  # two languages, two pivot halves


def test_a_question_holding_the_image_token_is_refused(family, tmp_path):
    token = family["processor"].image_token
    data = _write_questions(tmp_path / "q.jsonl", edit=lambda lang, text: text + token if lang == "zh" else text)
    questions = load_parallel_questions([str(data)], None, "en")
    with pytest.raises(PlastError, match="literal text.*image token"):
        _probe(family, questions, batch_size=3)


def test_a_batch_mixing_questions_with_and_without_images_is_refused(family, questions):
    model, tokenizer = family["model"], family["tokenizer"]
    probe_family = family_for(model, find_decoder_layers(model), family["processor"])
    prompts = [probe_family.encode(tokenizer, "Why?", prompt="llava", max_question_tokens=64, group=0,
                                   image_ids=probe_family.image_ids() if image else None,
                                   image=questions.image("1") if image else None) for image in (True, False)]
    with pytest.raises(PlastError, match="mixes questions with and without images"):
        probe_family.run(pad_batch(prompts, "question", 0), "question", lambda mask: None)


def test_plast_select_writes_the_selection_from_images(family, tmp_path):
    data = _write_questions(tmp_path / "q.jsonl", languages=("en", "zh"))
    out = tmp_path / "selection"
    assert plast(["select", "--model", str(family["path"]), "--data", str(data), "--out", str(out), "--device", "cpu",
                  "--quiet", "--no-plot", "--rule", "msd-top:1"]) == 0
    selection = json.loads((out / "plast_layers.json").read_text())
    assert selection["model"]["architecture"] == VLM_FAMILIES[family["name"]][0]
    assert selection["data"]["images_used"] is True and len(selection["selected_layers"]) == 1
    assert all(tokens > 0 for tokens in selection["data"]["tokens_counted"].values())


def test_a_folder_without_processor_probes_text_only_and_refuses_images(family, tmp_path, capsys):
    folder = tmp_path / "no_processor"
    shutil.copytree(family["path"], folder)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (folder / name).unlink(missing_ok=True)
    assert load_for_probe(str(folder), "cpu", "fp32")[2] is None
    data = _write_questions(tmp_path / "q.jsonl", languages=("en", "zh"))
    args = ["select", "--model", str(folder), "--data", str(data), "--device", "cpu", "--quiet", "--no-plot",
            "--rule", "msd-top:1"]
    assert plast(args + ["--out", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err
    assert "needs its processor" in err and "--images off" in err
    assert plast(args + ["--out", str(tmp_path / "text"), "--images", "off"]) == 0
    assert json.loads((tmp_path / "text" / "plast_layers.json").read_text())["data"]["images_used"] is False
