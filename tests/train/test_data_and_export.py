"""`plast build-data` and `plast export` (delta + bit-exact merge)."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest



def plast(argv) -> int:
    """The `plast` command as users run it (errors become exit code 1)."""
    from plast_plugin.cli import main

    return main(argv)


def _write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def parallel(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 20), (200, 10, 10)).save(tmp_path / "red.png")
    rows = []
    for qid, en, zh, ar in [("a", "What color is it?", "这是什么颜色？", "ما هذا اللون؟"),
                            ("b", "How many cats?", "有几只猫？", "كم عدد القطط؟")]:
        rows += [{"id": qid, "lang": "en", "question": en, "image": "red.png"},
                 {"id": qid, "lang": "zh", "question": zh}, {"id": qid, "lang": "ar", "question": ar}]
    return _write_jsonl(tmp_path / "q.jsonl", rows)


def test_build_data_llava_format(parallel, tmp_path, capsys):
    out = tmp_path / "train.json"
    assert plast(["build-data", "--data", str(parallel), "--out", str(out), "--languages", "zh,ar", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "zh -> en: 2" in printed and "ar -> en: 2" in printed
    records = json.loads(out.read_text(encoding="utf-8"))
    assert len(records) == 4
    first = records[0]
    assert first["id"] == "a-zh" and Path(first["image"]).is_file()
    assert first["conversations"][0] == {
        "from": "human", "value": "<image>\nTranslate the following question from Chinese to English.\n这是什么颜色？"}
    assert first["conversations"][1] == {"from": "gpt", "value": "What color is it?"}


def test_build_data_template_text_only_and_llava_preprocess(parallel, tmp_path, assets):
    out = tmp_path / "train.json"
    assert plast(["build-data", "--data", str(parallel), "--out", str(out), "--images", "off", "--quiet",
                  "--template", "{lang}->{target_lang}: {question}"]) == 0
    records = json.loads(out.read_text(encoding="utf-8"))
    assert records[0]["conversations"][0]["value"] == "ar->en: ما هذا اللون؟" and "image" not in records[0]
    # LLaVA's own preprocessing accepts it and puts the loss on the answer only.
    import transformers
    from llava import conversation as conversation_lib
    from llava.train.train import preprocess

    tok = transformers.AutoTokenizer.from_pretrained(str(assets["model"]), use_fast=False)
    tok.pad_token = tok.unk_token
    conversation_lib.default_conversation = conversation_lib.conv_templates["vicuna_v1"]
    batch = preprocess([records[0]["conversations"]], tok, has_image=False)
    labels = batch["labels"][0]
    kept = tok.decode([t for t in labels.tolist() if t >= 0])
    assert "What color is it?" in kept and "اللون" not in kept


def test_build_data_inline_images_and_refusal(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()  # a few KB: an inline image, as in VLMEvalKit TSVs
    header = "index\tquestion\timage\n"
    (tmp_path / "mmmb_en.tsv").write_text(header + f"1\tWhat is green?\t{b64}\n2\tIs it big?\t1\n", encoding="utf-8")
    (tmp_path / "mmmb_tr.tsv").write_text(header + f"1\tYeşil olan ne?\t{b64}\n2\tBüyük mü?\t1\n", encoding="utf-8")
    out = tmp_path / "d.json"
    assert plast(["build-data", "--data", str(tmp_path / "mmmb_en.tsv"), str(tmp_path / "mmmb_tr.tsv"),
                  "--out", str(out), "--quiet"]) == 0
    records = json.loads(out.read_text(encoding="utf-8"))
    assert len(records) == 2 and records[0]["image"] == records[1]["image"] and Path(records[0]["image"]).is_file()
    # Unparallel input: the loader refuses, the command fails with one clear line.
    (tmp_path / "mmmb_ru.tsv").write_text(header + "1\tЧто зелёное?\t\n", encoding="utf-8")
    assert plast(["build-data", "--data", str(tmp_path / "mmmb_en.tsv"), str(tmp_path / "mmmb_ru.tsv"),
                  "--out", str(tmp_path / "bad.json"), "--quiet"]) == 1
    assert not (tmp_path / "bad.json").exists()


def _all_tensors(directory: Path) -> dict:
    from plast_plugin.checkpoints.weights import CheckpointWeights

    with CheckpointWeights(directory) as weights:
        return weights.read_all()


def test_export_delta_and_bit_exact_merge(assets, spec_run, tmp_path, capsys):
    import torch

    trained = spec_run["out"]
    assert spec_run["proc"].returncode == 0, spec_run["proc"].stdout[-3000:]
    delta = tmp_path / "delta"
    assert plast(["export", str(trained), "--out", str(delta)]) == 0
    manifest = json.loads((delta / "plast_delta.json").read_text())
    assert manifest["layers"] == [1, 2] and manifest["base_model"] == str(assets["model"])
    assert all(n.startswith(("model.layers.1.", "model.layers.2.")) for n in manifest["tensors"])
    assert (delta / "plast_delta.safetensors").stat().st_size < (trained / "model.safetensors").stat().st_size / 2

    merged = tmp_path / "merged"
    assert plast(["export", str(delta), "--merge-into", str(assets["model"]), "--out", str(merged)]) == 0
    a, b = _all_tensors(trained), _all_tensors(merged)
    assert set(a) == set(b)
    for name in a:
        if ".vision_tower." in name:
            # LLaVA's train() casts the frozen tower to fp16/bf16 before saving; same values.
            assert torch.equal(a[name], b[name].to(a[name].dtype)), name
            continue
        assert a[name].dtype == b[name].dtype and torch.equal(a[name].view(torch.uint8), b[name].view(torch.uint8)), name
    assert (merged / "config.json").exists() and (merged / "tokenizer.model").exists()


def test_merge_into_sharded_base_and_mismatch(assets, spec_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from plast_plugin.checkpoints.export import ExportError, export_delta, merge_delta

    base = tmp_path / "sharded"
    base.mkdir()
    tensors = load_file(str(assets["model"] / "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(base / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    (base / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    # The whole record (layers 1-2): a subset would drop trained tensors and is refused (issue 10).
    delta = export_delta(spec_run["out"], tmp_path / "delta")
    merged = merge_delta(base, delta, tmp_path / "merged")
    got, want = _all_tensors(merged), load_file(str(spec_run["out"] / "model.safetensors"))
    for n in got:
        same = torch.equal(got[n], want[n] if (n.startswith(("model.layers.1.", "model.layers.2."))) else tensors[n])
        assert same, n
    small = tmp_path / "small"
    small.mkdir()
    save_file({"model.layers.2.mlp.up_proj.weight": torch.zeros(3, 3)}, str(small / "model.safetensors"))
    with pytest.raises(ExportError, match="another model"):
        merge_delta(small, delta, tmp_path / "bad")


def test_export_to_hf_calls_the_converter(monkeypatch, tmp_path):
    """`plast export --to-hf` hands over to plast_plugin.checkpoints.hf_convert.convert_to_hf (imported lazily)."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("plast_plugin.checkpoints.hf_convert")
    fake.convert_to_hf = lambda checkpoint, out: calls.append((checkpoint, out))
    monkeypatch.setitem(sys.modules, "plast_plugin.checkpoints.hf_convert", fake)
    assert plast(["export", "ckpt", "--to-hf", "--out", str(tmp_path / "hf")]) == 0
    assert calls == [("ckpt", str(tmp_path / "hf"))]
    assert plast(["export", "ckpt", "--to-hf", "--merge-into", "base", "--out", "x"]) == 1


def test_module_entry_consumes_attn_implementation(monkeypatch):
    from plast_plugin.llava.train import _pop_flag

    argv = ["prog", "--attn_implementation", "sdpa", "--output_dir", "o"]
    assert _pop_flag(argv, "--attn_implementation") == "sdpa" and argv == ["prog", "--output_dir", "o"]
    argv = ["prog", "--attn_implementation=eager"]
    assert _pop_flag(argv, "--attn_implementation") == "eager" and argv == ["prog"]
