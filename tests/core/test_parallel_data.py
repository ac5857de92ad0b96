"""Parallel questions are read from JSONL and VLMEvalKit TSVs; anything unparallel is refused
with an error naming the file and question."""

from __future__ import annotations

import base64
import io

import pytest

from core_testutil import question_rows, write_jsonl
from plast_plugin.data.parallel_data import load_image, load_parallel_questions
from plast_plugin.errors import PlastError


def test_jsonl_loads_aligned(questions_jsonl):
    questions = load_parallel_questions(questions_jsonl, ["zh", "ru"], "en", max_samples=3)
    assert questions.languages == ["en", "zh", "ru"]
    assert questions.ids == ["1", "2", "3"]
    assert questions.question("2", "ru") == "Какого цвета небо в ясный день?"
    assert len(questions.fingerprint) == 64
    assert questions.fingerprint == load_parallel_questions(questions_jsonl, ["zh", "ru"], "en", 3).fingerprint


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: [r for r in rows if not (r["id"] == "3" and r["lang"] == "tr")], r"not parallel: 1 id\(s\) of 'en' missing in 'tr'"),
    (lambda rows: [r for r in rows if r["lang"] != "en"], "pivot language 'en' is missing"),
    (lambda rows: rows + [{"id": "1", "lang": "xx", "question": "?"}], "unknown language code 'xx'"),
    (lambda rows: rows + [dict(rows[0])], "appears twice"),
    (lambda rows: rows + [{"id": "9", "lang": "zh", "question": "多余的问题"}], r"id\(s\) of 'zh' missing in 'en'"),
    (lambda rows: [dict(r, question="  ") if r["id"] == "2" and r["lang"] == "ar" else r for r in rows], "is empty"),
])
def test_unparallel_or_broken_data_is_refused(tmp_path, mutate, message):
    path = write_jsonl(tmp_path / "q.jsonl", mutate(question_rows()))
    with pytest.raises(PlastError, match=message):
        load_parallel_questions(path, None, "en")


def test_empty_and_unreadable_inputs(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(PlastError, match="no questions found"):
        load_parallel_questions(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "lang": "en"}\n')
    with pytest.raises(PlastError, match=r"broken.jsonl:1: missing field\(s\) \['question'\]"):
        load_parallel_questions(broken)
    with pytest.raises(PlastError, match="cannot read"):
        load_parallel_questions(tmp_path / "questions.csv")
    with pytest.raises(PlastError, match="languages: unknown language code 'klingon'"):
        load_parallel_questions(write_jsonl(tmp_path / "q.jsonl", question_rows()), ["klingon"])
    with pytest.raises(PlastError, match=r"requested but not in the data"):
        load_parallel_questions(write_jsonl(tmp_path / "q2.jsonl", question_rows(("en", "zh"))), ["ru"])


def _png_base64(color=(255, 0, 0)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _write_tsv(path, rows):
    lines = ["index\tquestion\timage"] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_vlmevalkit_tsvs_aligned_by_index_with_image_references(tmp_path):
    image = _png_base64()
    en = _write_tsv(tmp_path / "mmmb_en.tsv", [("10", "What is shown?", image), ("11", "Which color?", "10")])
    cn = _write_tsv(tmp_path / "mmmb_cn.tsv", [("10", "图中显示了什么？", image), ("11", "什么颜色？", "10")])
    questions = load_parallel_questions([str(en), str(cn)], None, "en")
    assert questions.languages == ["en", "zh"]  # 'cn' in the file name is Chinese
    assert questions.image("11") == image  # the back-reference resolved to row 10's image
    assert load_image(questions.image("11")).size == (8, 8)
    explicit = load_parallel_questions([f"en={en}", f"zh={cn}"], ["zh"], "en")
    assert explicit.ids == ["10", "11"]


def test_tsv_errors_name_file_and_row(tmp_path):
    en = _write_tsv(tmp_path / "x_en.tsv", [("1", "Where?", "7")])
    with pytest.raises(PlastError, match=r"x_en.tsv:2: image refers to row index '7'"):
        load_parallel_questions([str(en)])
    bad = tmp_path / "x_ru.tsv"
    bad.write_text("idx\tquestion\n1\tГде?\n")
    with pytest.raises(PlastError, match=r"x_ru.tsv: missing column\(s\) \['index'\]"):
        load_parallel_questions([str(bad)])
    with pytest.raises(PlastError, match="cannot decode image"):
        load_image("A" * 400)
