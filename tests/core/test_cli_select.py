"""`plast select` end to end on a tiny model: outputs, determinism, and bad input that fails
with a clear message and leaves no partial output."""

from __future__ import annotations

import json

import pytest

from core_testutil import question_rows, write_jsonl
from plast_plugin.cli import main


def _select(model_dir, data, out, *extra):
    return main(["select", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--quiet",
                 "--device", "cpu", "--dtype", "fp32", *extra])


def test_select_writes_json_and_plot_deterministically(tiny_llama_dir, questions_jsonl, tmp_path, capsys):
    assert _select(tiny_llama_dir, questions_jsonl, tmp_path / "a", "--languages", "zh,pt,ar,tr,ru") == 0
    printed = capsys.readouterr().out
    assert "selected layers (auto)" in printed and "R_zh" in printed
    selection = json.loads((tmp_path / "a" / "plast_layers.json").read_text())
    assert selection["schema"] == "plast-layers/1"
    assert selection["model"]["num_layers"] == 4 and selection["model"]["ffn_width"] == 128
    assert selection["data"]["languages"] == ["en", "zh", "pt", "ar", "tr", "ru"]
    assert selection["data"]["questions_per_language"] == 5
    assert selection["options"]["rule"] == "auto" and selection["options"]["statistic"] == "overlap"
    assert selection["options"]["contiguous_shallow"] is True
    assert len(selection["layers"]) == 4 and set(selection["layers"][0]["overlap"]) == {"zh", "pt", "ar", "tr", "ru"}
    assert 0 < selection["trainable"]["fraction"] < 1
    assert (tmp_path / "a" / "plast_layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _select(tiny_llama_dir, questions_jsonl, tmp_path / "b", "--languages", "zh,pt,ar,tr,ru") == 0
    assert (tmp_path / "a" / "plast_layers.json").read_bytes() == (tmp_path / "b" / "plast_layers.json").read_bytes()


def test_manual_rule_and_ablation_are_recorded(tiny_llama_dir, questions_jsonl, tmp_path):
    assert _select(tiny_llama_dir, questions_jsonl, tmp_path / "m", "--rule", "last:2", "--modules", "mlp") == 0
    selection = json.loads((tmp_path / "m" / "plast_layers.json").read_text())
    assert selection["selected_layers"] == [2, 3] and selection["rule"] == "last:2"
    assert selection["trainable"]["modules"] == "mlp"
    assert _select(tiny_llama_dir, questions_jsonl, tmp_path / "r", "--rule", "0,2,3", "--no-contiguous-shallow",
                   "--statistic", "rate") == 0
    selection = json.loads((tmp_path / "r" / "plast_layers.json").read_text())
    assert selection["selected_layers"] == [0, 2, 3]
    assert selection["options"]["contiguous_shallow"] is False and selection["options"]["statistic"] == "rate"


@pytest.mark.parametrize("rows, extra, message", [
    (lambda: [r for r in question_rows() if not (r["id"] == "4" and r["lang"] == "ar")], (), "not parallel"),
    (lambda: [r for r in question_rows() if r["lang"] != "en"], (), "pivot language 'en' is missing"),
    (lambda: question_rows(), ("--languages", "zh,xx"), "unknown language code 'xx'"),
    (lambda: [], (), "no questions found"),
    (lambda: question_rows(), ("--rule", "0-9"), "names layer 9, but the model has 4 decoder layers"),
    (lambda: question_rows(), ("--rule", "0-two"), "malformed layer spec"),
    (lambda: question_rows(), ("--rule", "msd-bottom:2"), "unknown selection rule"),
    (lambda: question_rows(), ("--statistic", "median"), "statistic='median'"),
])
def test_bad_input_fails_clearly_without_output(tiny_llama_dir, tmp_path, capsys, rows, extra, message):
    data = write_jsonl(tmp_path / "q.jsonl", rows())
    out = tmp_path / "out"
    assert _select(tiny_llama_dir, data, out, *extra) == 1
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
