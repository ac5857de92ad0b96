"""The token ids each protocol feeds a converted LLaVA-1.5 model through the real lmms-eval CLI
(``llava_hf``, the plugin's tasks) equal those of the VLMEvalKit class it reproduces.

The expectation is written here from the upstream code's rules, not from the plugin's:
VLMEvalKit reads the TSV with ``pd.read_csv(sep='\\t')`` (pandas itself here), builds the prompt
as its ``LLaVA`` / Parrot's ``Parrot`` class does (AIDC-AI/Parrot 989d6d0), and LLaVA's
``tokenizer_image_token`` encodes the text on each side of ``<image>`` with the sentencepiece model
on its own (sentencepiece itself here), a BOS first. The model: a tiny official-format LLaVA
whose tokenizer is LLaMA-like (identity normaliser, whitespace kept) and marked ``legacy: false``
as LLaVA-1.5's is, converted by ``plast export --to-hf``'s converter.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eval_testutil import HERE, REPO, subprocess_env
from parrot_fixtures import FILE_CODE, LANGS, _png, write_tsv

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
spm = pytest.importorskip("sentencepiece")
pytest.importorskip("lmms_eval")
TRAIN_PY = Path(os.environ.get("PLAST_ENVS_DIR", REPO / ".envs")) / "train" / "bin" / "python"
pytestmark = pytest.mark.skipif(not TRAIN_PY.exists(), reason="the training env (.envs/train) is not built")

QUESTIONS = {"en": "What colour is the car?", "zh": "图片中汽车是什么颜色？", "pt": "Qual é a cor do carro?",
             "ar": "ما هو لون السيارة؟", "tr": "Arabanın rengi nedir?", "ru": "Какого цвета машина?"}
# Parrot's instruction per dataset suffix, as vlm/parrot.py writes them
PARROT_INSTRUCTIONS = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接用给定选项中的选项字母回答。",
    "pt": "Responda diretamente com a letra da opção das escolhas dadas.",
    "ar": "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
    "ru": "Ответьте буквой варианта из предложенных вариантов напрямую.",
    "tr": "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
}
VLMEVALKIT_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                     "The assistant gives helpful, detailed, and polite answers to the human's questions. ")
LLAVA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def fixture_rows(lang):
    """Per language: a plain row, a row with a hint, a row whose option C is `None` and D `NA`
    (pandas' NaN), and a row whose question holds a CJK ideograph whatever the language. Column D
    holds only a number and NaN cells: pandas reads it as floats (VLMEvalKit shows `D. 4.0`)."""
    q = QUESTIONS[lang]
    rows = [
        {"index": 0, "question": q, "hint": "", "A": "red", "B": "blue", "C": "green", "D": "4", "answer": "A"},
        {"index": 1, "question": q, "hint": f"{lang}: the car is parked outside.", "A": "one", "B": "two",
         "C": "", "D": "", "answer": "B"},
        {"index": 2, "question": q, "hint": "", "A": "true", "B": "false", "C": "None", "D": "NA", "answer": "A"},
        {"index": 3, "question": q + " (汽车)", "hint": "", "A": "x", "B": "y", "C": "z", "D": "", "answer": "C"},
    ]
    for n, r in enumerate(rows):
        r.update({"category": "c", "l2-category": "c2", "image": _png((40 * n, 90, 200))})
    return rows


def _cn_string(s):
    return re.search("[\u4e00-\u9fff]", s) is not None


def vlmevalkit_question(line):
    """VLMEvalKit's LLaVA.build_prompt on a pandas row."""
    question = line["question"]
    if not pd.isna(line["hint"]):
        question = line["hint"] + "\n" + question
    options = {c: line[c] for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c in line and not pd.isna(line[c])}
    for key, item in options.items():
        question += f"\n{key}. {item}"
    return question


def vlmevalkit_text(line, lang):
    prompt = vlmevalkit_question(line)
    prompt += "\n请直接回答选项字母。" if _cn_string(prompt) else "\nAnswer with the option's letter from the given choices directly."
    return VLMEVALKIT_SYSTEM + "USER: " + " <image> " + prompt + " ASSISTANT: "


def parrot_text(line, lang):
    prompt = vlmevalkit_question(line)  # Parrot's build_multi_choice_prompt builds the same block
    prompt += "\n" + (PARROT_INSTRUCTIONS["zh"] if lang == "zh" or _cn_string(prompt) else PARROT_INSTRUCTIONS[lang])
    # "<image>\n" + prompt (Parrot's prepare_inputs), in llava_v1's turns (conv_vicuna_v1.get_prompt)
    return LLAVA_V1_SYSTEM + " USER: " + "<image>\n" + prompt + " ASSISTANT:"


def tokenizer_image_token(text, sp, image=-200):
    """LLaVA's rule: each piece around <image> encoded on its own, BOS once, <image> one position."""
    ids = [sp.bos_id()]
    for n, chunk in enumerate(text.split("<image>")):
        if n:
            ids.append(image)
        ids += sp.encode(chunk)
    return ids


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol_ids")
    proc = subprocess.run([str(TRAIN_PY), str(HERE / "llama_like_llava.py"), str(tmp)], cwd=REPO,
                          env=subprocess_env(tmp), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp / "llava"
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    config["legacy"] = False  # LLaVA-1.5's (vicuna-v1.5's) setting
    (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    hf = convert_to_hf(ckpt, tmp / "llava_hf")
    parrot = tmp / "parrot"
    for lang in LANGS:
        write_tsv(parrot / "mmmb" / f"mmmb_{FILE_CODE.get(lang, lang)}.tsv", fixture_rows(lang))
    site = tmp / "site"
    dist = site / "plast_recording_test-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plast-recording-test\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[lmms_eval.models]\nplast_recording_llava = plast_recording_llava:MANIFEST\n")
    (site / "plast_recording_llava.py").write_text((HERE / "recording_llava.py").read_text())
    sp = spm.SentencePieceProcessor(model_file=str(tmp / "sp.model"))
    image_index = json.loads((hf / "config.json").read_text())["image_token_index"]
    return {"tmp": tmp, "hf": hf, "parrot": parrot, "site": site, "sp": sp, "image_index": image_index}


def expected_ids(setup, protocol):
    build = vlmevalkit_text if protocol == "vlmevalkit" else parrot_text
    out = {}
    for lang in LANGS:
        frame = pd.read_csv(setup["parrot"] / "mmmb" / f"mmmb_{FILE_CODE.get(lang, lang)}.tsv", sep="\t")
        for _, line in frame.iterrows():
            text = build(line, lang)
            out[(lang, int(line["index"]))] = (text, tokenizer_image_token(text, setup["sp"]))
    return out


def _one_image_position(ids, image_index):
    """The processor repeats the image token once per image feature: one position, as LLaVA's."""
    out = []
    for i in ids:
        if i == image_index and out and out[-1] == -200:
            continue
        out.append(-200 if i == image_index else i)
    return out


def run_lmms_eval(setup, protocol):
    from plast_plugin.eval.parrot_data import file_md5

    tmp = setup["tmp"]
    record = tmp / f"ids_{protocol}.jsonl"
    pins = ",".join(f"mmmb_{lang}={file_md5(setup['parrot'] / 'mmmb' / f'mmmb_{FILE_CODE.get(lang, lang)}.tsv')}"
                    for lang in LANGS)
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "plast_recording_llava",
           "--model_args", f"pretrained={setup['hf']},device_map=cpu,device=cpu,dtype=float32,record={record}",
           "--tasks", "mmmb", "--include_path", str(REPO / "eval_tasks"), "--output_path", str(tmp / f"out_{protocol}"),
           "--batch_size", "1"]
    env = subprocess_env(tmp, PLAST_PARROT_DIR=setup["parrot"], PLAST_PARROT_MD5=pins, PLAST_EVAL_PROTOCOL=protocol,
                         PYTHONPATH=setup["site"])
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert record.exists(), (proc.stdout + proc.stderr)[-4000:]
    return [json.loads(line) for line in record.read_text().splitlines()], proc


@pytest.mark.parametrize("protocol", ["vlmevalkit", "parrot"])
def test_lmms_eval_feeds_the_token_ids_of_the_reproduced_class(setup, protocol):
    expected = expected_ids(setup, protocol)
    recorded, proc = run_lmms_eval(setup, protocol)
    got = sorted(_one_image_position(r["input_ids"], setup["image_index"]) for r in recorded)
    want = sorted(ids for _, ids in expected.values())
    assert len(got) == len(want) == 4 * len(LANGS), proc.stderr[-3000:]
    sp = setup["sp"]
    for g, w in zip(got, want):
        assert g == w, ("\nexpected: " + repr([sp.id_to_piece(i) if i >= 0 else "<image>" for i in w])
                        + "\nreceived: " + repr([sp.id_to_piece(i) if 0 <= i < sp.get_piece_size() else i for i in g]))
    # generation length of VLMEvalKit's LLaVA at the commit behind the published rows
    assert {r["max_new_tokens"] for r in recorded} == {512}


def test_expectation_covers_the_rules(setup):
    """The fixture exercises what the protocols must get right (guards the test's own data)."""
    texts = {key: text for key, (text, _) in expected_ids(setup, "vlmevalkit").items()}
    assert "pt: the car is parked outside.\nQual é a cor do carro?\nA. one\nB. two\n" in texts[("pt", 1)]
    assert "\nA. true\nB. false\nAnswer with" in texts[("en", 2)]  # None and NA dropped as pandas does
    assert "\nC. green\nD. 4.0\nAnswer with" in texts[("tr", 0)]
    assert texts[("ru", 3)].endswith("\n请直接回答选项字母。 ASSISTANT: ")  # CJK in a Russian row
    assert texts[("zh", 0)].endswith("\n请直接回答选项字母。 ASSISTANT: ")
    assert texts[("en", 0)].endswith("directly. ASSISTANT: ") and "USER:  <image> What" in texts[("en", 0)]
    parrot = {key: text for key, (text, _) in expected_ids(setup, "parrot").items()}
    assert parrot[("tr", 0)].endswith("\nVerilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin. ASSISTANT:")
    assert parrot[("ar", 3)].endswith("\n请直接用给定选项中的选项字母回答。 ASSISTANT:")


@pytest.mark.parametrize("protocol", ["vlmevalkit", "parrot"])
def test_show_prompts_prints_the_text_and_ids_the_model_receives(setup, protocol):
    from plast_plugin.eval.parrot_data import file_md5

    tmp = setup["tmp"]
    pins = ",".join(f"mmmb_{lang}={file_md5(setup['parrot'] / 'mmmb' / f'mmmb_{FILE_CODE.get(lang, lang)}.tsv')}"
                    for lang in LANGS)
    cmd = [sys.executable, "-m", "plast_plugin.cli", "eval", str(setup["hf"]), "--benchmarks", "mmmb",
           "--parrot-dir", str(setup["parrot"]), "--parrot-md5", pins, "--protocol", protocol, "--show-prompts", "1"]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stdout, proc.stdout
    blocks = proc.stdout.split("== ")[1:]
    assert len(blocks) == len(LANGS)  # the first row of each task
    expected = expected_ids(setup, protocol)
    for lang, block in zip(LANGS, blocks):
        lines = block.splitlines()
        assert lines[0] == f"mmmb_{lang} row 1 (index 0), protocol {protocol}"
        text = json.loads(lines[1].removeprefix("text: "))
        ids = json.loads(lines[2].split(": ", 1)[1])
        want_text, want_ids = expected[(lang, 0)]
        assert text == want_text
        assert [-200 if isinstance(i, str) and i.startswith("<image>*") else i for i in ids] == want_ids
        assert sum(isinstance(i, str) for i in ids) == 1 and lines[3].startswith("tokens: ")


def test_expected_ids_are_llavas_own_tokenizer_image_token(setup):
    """The rule written above equals LLaVA's tokenizer_image_token with LLaVA's slow tokenizer
    (transformers 4.37, legacy: false), run in the training env on the same checkpoint."""
    texts = {f"{p}/{lang}/{i}": text for p in ("vlmevalkit", "parrot")
             for (lang, i), (text, _) in expected_ids(setup, p).items()}
    (setup["tmp"] / "texts.json").write_text(json.dumps(texts, ensure_ascii=False))
    script = ("import json, sys\n"
              "from transformers import AutoTokenizer\n"
              "from llava.mm_utils import tokenizer_image_token\n"
              "tok = AutoTokenizer.from_pretrained(sys.argv[1], use_fast=False)\n"
              "assert tok.legacy is False\n"
              "texts = json.load(open(sys.argv[2], encoding='utf-8'))\n"
              "json.dump({k: tokenizer_image_token(t, tok) for k, t in texts.items()}, open(sys.argv[3], 'w'))\n")
    out = setup["tmp"] / "llava_ids.json"
    proc = subprocess.run([str(TRAIN_PY), "-c", script, str(setup["tmp"] / "llava"), str(setup["tmp"] / "texts.json"),
                           str(out)], cwd=REPO, env=subprocess_env(setup["tmp"]), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    llava = json.loads(out.read_text())
    for p in ("vlmevalkit", "parrot"):
        for (lang, i), (_, ids) in expected_ids(setup, p).items():
            assert llava[f"{p}/{lang}/{i}"] == ids, (p, lang, i)


def test_a_checkpoint_without_the_converters_template_and_tokenizer_is_named(setup, tmp_path):
    import shutil

    from transformers import AutoProcessor, AutoTokenizer

    from plast_plugin.eval.show_prompts import protocol_problems

    assert protocol_problems(AutoProcessor.from_pretrained(str(setup["hf"]))) == []
    old = tmp_path / "old"
    shutil.copytree(setup["hf"], old)
    (old / "chat_template.jinja").write_text("{% for m in messages %}USER: {{ m['content'] }}{% endfor %}")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (old / name).unlink()
    tokenizer = AutoTokenizer.from_pretrained(str(setup["tmp"] / "llava"))  # transformers' own LLaMA conversion
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"], "pad_token": "<pad>"})
    tokenizer.save_pretrained(str(old))
    problems = protocol_problems(AutoProcessor.from_pretrained(str(old)))
    assert len(problems) == 2 and "chat template" in problems[0] and "tokenizer_image_token" in problems[1]
