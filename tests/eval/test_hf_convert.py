"""convert_to_hf: an official-format tiny LLaVA (training env) and its llava-hf conversion (eval
env) give the same next-token logits; lmms-eval's llava_hf runs the converted model.

Needs both environments: the official model runs in ``.envs/train`` through a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_testutil import HERE, REPO, parrot_dir, subprocess_env  # noqa: F401 (fixture)
from parrot_fixtures import md5_pins
from plast_plugin.errors import PlastError

torch = pytest.importorskip("torch")
TRAIN_PY = Path(os.environ.get("PLAST_ENVS_DIR", REPO / ".envs")) / "train" / "bin" / "python"
pytestmark = pytest.mark.skipif(not TRAIN_PY.exists(), reason="the training env (.envs/train) is not built")


def _train_env_run(args, tmp):
    proc = subprocess.run([str(TRAIN_PY), *args], cwd=REPO, env=subprocess_env(tmp), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hfconv")
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    images = {}
    for name, (h, w) in {"square": (40, 40), "wide": (30, 50)}.items():
        arr = (torch.rand((h, w, 3), generator=gen) * 255).to(torch.uint8).numpy()
        images[name] = tmp / f"{name}.png"
        Image.fromarray(arr).save(images[name])
    ckpt = tmp / "llava"
    _train_env_run(["-c", f"from plast_plugin.testing.tiny_models import make_tiny_llava; make_tiny_llava({str(ckpt)!r})"], tmp)
    official = {}
    for name, path in images.items():
        out = tmp / f"official_{name}.pt"
        _train_env_run([str(HERE / "official_llava_logits.py"), str(ckpt), str(path), str(out)], tmp)
        official[name] = torch.load(out)
    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    hf = convert_to_hf(ckpt, tmp / "llava_hf")
    return {"tmp": tmp, "ckpt": ckpt, "hf": hf, "images": images, "official": official}


def _hf_ids(official_ids, config):
    ids = official_ids[0].tolist()
    pos = ids.index(-200)  # LLaVA's IMAGE_TOKEN_INDEX placeholder
    return ids[:pos] + [config.image_token_index] * config.image_seq_length + ids[pos + 1:]


def test_same_next_token_logits(converted):
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(str(converted["hf"]), dtype=torch.float32).eval()
    for name, off in converted["official"].items():
        ids = torch.tensor([_hf_ids(off["input_ids"], model.config)])
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=off["pixel_values"]).logits[0, -1]
        vocab = off["logits"].shape[0]
        torch.testing.assert_close(logits[:vocab], off["logits"], atol=1e-4, rtol=1e-4)
        assert int(logits[:vocab].argmax()) == int(off["logits"].argmax())


def test_processor_reproduces_llava_preprocessing_and_prompt(converted):
    from PIL import Image
    from transformers import AutoProcessor

    # LLaVA preprocesses with PIL; transformers 5 picks its torchvision backend when torchvision is installed
    # (as lmms-eval's llava_hf loads it), whose bicubic resize differs slightly: docs/evaluation.md.
    processor = AutoProcessor.from_pretrained(str(converted["hf"]), backend="pil")
    default_backend = AutoProcessor.from_pretrained(str(converted["hf"])).image_processor
    for name, off in converted["official"].items():
        image = Image.open(converted["images"][name]).convert("RGB")
        pixels = processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        # includes padding the wide image to a square with the mean colour (image_aspect_ratio=pad)
        torch.testing.assert_close(pixels, off["pixel_values"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(default_backend(images=image, return_tensors="pt")["pixel_values"],
                                   off["pixel_values"], atol=0.02, rtol=0)
        question = off["prompt"].split("<image>\n", 1)[1].rsplit(" ASSISTANT:", 1)[0]
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        assert processor.apply_chat_template(messages, add_generation_prompt=True) == off["prompt"]
        # the simple llava_hf path puts "<image>\n" into a string content
        text_messages = [{"role": "user", "content": "<image>\n" + question}]
        assert processor.tokenizer.apply_chat_template(text_messages, tokenize=False,
                                                       add_generation_prompt=True) == off["prompt"]


@pytest.fixture(scope="module")
def llama_like(tmp_path_factory, converted):
    tmp = tmp_path_factory.mktemp("llama_like")
    _train_env_run([str(HERE / "llama_like_llava.py"), str(tmp)], tmp)
    ckpt = tmp / "llava"
    out = tmp / "official.pt"
    _train_env_run([str(HERE / "official_llava_logits.py"), str(ckpt), str(converted["images"]["wide"]), str(out)], tmp)
    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    return {"hf": convert_to_hf(ckpt, tmp / "llava_hf"), "official": torch.load(out),
            "image": converted["images"]["wide"]}


def test_same_logits_from_text_and_image_through_the_processor(llama_like):
    """End to end: prompt text + picture -> llava-hf processor -> logits, against official LLaVA
    (its conversation template, tokenizer_image_token, process_images with padding)."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    off = llama_like["official"]
    processor = AutoProcessor.from_pretrained(str(llama_like["hf"]))
    model = LlavaForConditionalGeneration.from_pretrained(str(llama_like["hf"]), dtype=torch.float32).eval()
    question = off["prompt"].split("<image>\n", 1)[1].rsplit(" ASSISTANT:", 1)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=Image.open(llama_like["image"]).convert("RGB"), text=text, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == _hf_ids(off["input_ids"], model.config)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    vocab = off["logits"].shape[0]
    torch.testing.assert_close(logits[:vocab], off["logits"], atol=1e-4, rtol=1e-4)


def test_config_fields(converted):
    cfg = json.loads((converted["hf"] / "config.json").read_text())
    src = json.loads((converted["ckpt"] / "config.json").read_text())
    assert cfg["model_type"] == "llava" and cfg["architectures"] == ["LlavaForConditionalGeneration"]
    assert cfg["vision_feature_layer"] == src["mm_vision_select_layer"]
    assert cfg["vision_feature_select_strategy"] == "default"
    assert cfg["image_token_index"] == src["vocab_size"]  # <image> appended to the vocabulary
    assert cfg["text_config"]["vocab_size"] % 64 == 0


@pytest.mark.parametrize("variant", ["chat", "simple"])
def test_llava_hf_runs_converted_model_in_lmms_eval(converted, parrot_dir, variant):
    """lmms-eval resolves llava_hf to its chat class (processor chat template); --force_simple
    uses the string-prompt class (tokenizer chat template)."""
    tmp = converted["tmp"]
    out = tmp / f"lmms_out_{variant}"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "llava_hf",
           "--model_args", f"pretrained={converted['hf']},device_map=cpu,device=cpu,dtype=float32",
           "--tasks", "mmmb_ar,mmbench_ml_ru", "--include_path", str(REPO / "eval_tasks"),
           "--output_path", str(out), "--batch_size", "1", "--log_samples",
           "--gen_kwargs", "max_new_tokens=4"] + (["--force_simple"] if variant == "simple" else [])
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp, PLAST_PARROT_DIR=parrot_dir, PLAST_PARROT_MD5=md5_pins(parrot_dir)),
                          capture_output=True, text=True, timeout=300)
    files = sorted(out.rglob("*_results.json"))
    log = proc.stdout + proc.stderr
    assert files, log[-5000:]
    assert "in generating" not in log, log[-5000:]  # llava_hf logs generation errors and answers ""
    results = json.loads(files[-1].read_text())["results"]
    assert 0.0 <= results["mmmb_ar"]["acc,none"] <= 1.0
    # a question right under every rotation is right in its original form
    assert 0.0 <= results["mmbench_ml_ru"]["circular_acc,none"] <= results["mmbench_ml_ru"]["acc,none"]
    samples = [json.loads(line) for f in out.rglob("*mmbench_ml_ru*.jsonl") for line in f.read_text().splitlines()]
    assert len(samples) == 9


def test_vision_tower_from_mm_vision_tower_when_checkpoint_has_none(converted, tmp_path):
    """LLaVA-1.5 releases keep the CLIP weights out of the checkpoint; take them from mm_vision_tower."""
    import shutil

    from safetensors.torch import load_file, save_file

    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    ckpt = tmp_path / "no_tower"
    shutil.copytree(converted["ckpt"], ckpt)
    state = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v for k, v in state.items() if ".vision_tower." not in k}, str(ckpt / "model.safetensors"),
              metadata={"format": "pt"})
    out = convert_to_hf(ckpt, tmp_path / "hf")
    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(converted["hf"] / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((out / "plast_conversion.json").read_text())["vision_weights_from"] != "checkpoint"


def test_sharded_checkpoint(converted, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    ckpt = tmp_path / "sharded"
    shutil.copytree(converted["ckpt"], ckpt)
    state = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(ckpt / name), metadata={"format": "pt"})
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: n for n, part in shards.items() for k in part}}))
    (ckpt / "unrelated.safetensors").write_bytes(b"not weights")  # ignored: not in the index
    out = convert_to_hf(ckpt, tmp_path / "hf")
    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(converted["hf"] / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_to_hf_takes_a_hub_id_from_the_cache(converted, tmp_path):
    """`plast export liuhaotian/llava-v1.5-7b --to-hf` (README §4) converts the cached snapshot,
    identically to converting the folder."""
    from safetensors.torch import load_file

    from plast_plugin.testing.hub_cache import add_to_hub_cache, offline_hub_env

    cache = tmp_path / "cache"
    add_to_hub_cache(cache, "liuhaotian/llava-v1.5-7b", converted["ckpt"])
    plast = Path(sys.executable).parent / "plast"
    proc = subprocess.run([str(plast), "export", "liuhaotian/llava-v1.5-7b", "--to-hf", "--out", str(tmp_path / "hf")],
                          env=offline_hub_env(cache, tmp_path / "home"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, reference = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(converted["hf"] / "model.safetensors"))
    assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)
    missing = subprocess.run([str(plast), "export", "liuhaotian/no-such", "--to-hf", "--out", str(tmp_path / "x")],
                             env=offline_hub_env(cache, tmp_path / "home"), capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1 and "'liuhaotian/no-such'" in missing.stderr and "Traceback" not in missing.stderr


def test_plast_eval_baseline_is_the_official_checkpoint_through_the_same_converter(converted, parrot_dir):
    """--baseline converts the official checkpoint with plast export --to-hf's converter, evaluates
    both through the same tasks with the real llava_hf model, and compares them."""
    from safetensors.torch import load_file

    tmp = converted["tmp"]
    out = tmp / "with_baseline"
    cmd = [sys.executable, "-m", "plast_plugin.cli", "eval", str(converted["hf"]), "--baseline", str(converted["ckpt"]),
           "--benchmarks", "mmmb", "--languages", "ar", "--parrot-dir", str(parrot_dir),
           "--parrot-md5", md5_pins(parrot_dir), "--output", str(out), "--device", "cpu",
           "--model-args", "dtype=float32", "--lmms-eval-args", "--gen_kwargs max_new_tokens=4"]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "baseline-hf" / "plast_conversion.json").read_text())
    assert record["source"] == str(converted["ckpt"].resolve())
    ours = load_file(str(out / "baseline-hf" / "model.safetensors"))
    reference = load_file(str(converted["hf"] / "model.safetensors"))
    assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)
    for run in ("baseline", "model"):
        assert list((out / run).rglob("*_samples_mmmb_ar.jsonl")), run
    result = json.loads((out / "compare" / "compare.json").read_text())
    (row,) = result["rows"]
    # the same weights answer the same (greedy): no discordant question
    assert (row["task"], row["n"], row["delta"], row["mcnemar_p"], row["ci95"]) == ("mmmb_ar", 5, 0.0, 1.0, [0.0, 0.0])
    assert "mmmb_ar" in proc.stdout and "B-A" in proc.stdout


def test_baseline_refuses_a_model_from_another_converter(converted, tmp_path):
    import shutil

    from plast_plugin.eval.baseline import prepare_baseline

    other = tmp_path / "hub_llava_hf"
    shutil.copytree(converted["hf"], other)
    (other / "plast_conversion.json").unlink()
    with pytest.raises(PlastError, match="converted by another tool .* Pass the official checkpoint"):
        prepare_baseline(str(other), tmp_path / "out")
    assert prepare_baseline(str(converted["hf"]), tmp_path / "out") == converted["hf"]  # already ours


def test_probe_llava_hf_with_images_decodes_each_image_once(converted, tmp_path, monkeypatch):
    """The llava-hf probe path with images: each image decoded and preprocessed once for all
    languages (question blocks + PixelCache), image features not counted."""
    import json as _json

    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    import plast_plugin.models.probe_models as probe_models
    from plast_plugin.core.options import SelectionOptions
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.pipeline import probe_questions

    model = LlavaForConditionalGeneration.from_pretrained(str(converted["hf"]), dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(str(converted["hf"]))
    texts = {"en": "What is in the picture?", "zh": "图片里有什么？", "ru": "Что на картинке?"}
    rows = []
    for qid in range(4):
        image = tmp_path / f"{qid}.png"
        Image.new("RGB", (30 + qid, 40), (60 * qid, 90, 200)).save(image)
        rows += [{"id": str(qid), "lang": lang, "question": text, "image": str(image)} for lang, text in texts.items()]
    data = tmp_path / "q.jsonl"
    data.write_text("\n".join(_json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    questions = load_parallel_questions([str(data)], None, "en")
    decoded = []
    real_load = probe_models.load_image
    monkeypatch.setattr(probe_models, "load_image", lambda ref: decoded.append(ref) or real_load(ref))
    result = probe_questions(model, processor.tokenizer, questions, SelectionOptions(batch_size=2, prompt="plain"),
                             image_processor=processor.image_processor, progress=False)
    assert result.images_used
    assert len(decoded) == 4  # 4 images x 3 languages: 12 decodes before
    question_tokens = {lang: len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]) for lang, text in texts.items()}
    assert result.counts.tokens[:2].tolist() == [4 * question_tokens[lang] for lang in result.groups[:2]]
