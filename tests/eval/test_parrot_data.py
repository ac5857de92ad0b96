"""Reading Parrot TSVs: layout, back-references, pandas NA handling, and clear errors."""

import base64

import pytest

from eval_testutil import parrot_dir  # noqa: F401 (fixture)
from parrot_fixtures import COLUMNS, write_tsv
from plast_plugin.eval.parrot_data import (ParrotDataError, load_parrot_docs, parrot_filename,
                                           read_parrot_tsv, resolve_parrot_file)
from plast_plugin.eval.prompts import ANSWER_INSTRUCTIONS, answer_instruction, build_prompt
from plast_plugin.eval.scoring import summarize


def _png_b64():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _row(index, image, **kw):
    row = {"index": index, "question": "q?", "hint": "", "A": "x", "B": "y", "C": "z", "D": "w",
           "answer": "A", "category": "c", "l2-category": "l2", "image": image}
    row.update(kw)
    return row


def test_file_names_use_cn_for_chinese():
    assert parrot_filename("mmmb", "zh") == "mmmb/mmmb_cn.tsv"
    assert parrot_filename("mmmb", "cn") == "mmmb/mmmb_cn.tsv"
    assert parrot_filename("mmbench_ml", "ar") == "mmbench/mmbench_dev_ar.tsv"


def test_local_dir_setting(parrot_dir, monkeypatch):
    monkeypatch.setenv("PLAST_PARROT_DIR", str(parrot_dir))
    assert resolve_parrot_file("mmmb", "zh") == parrot_dir / "mmmb" / "mmmb_cn.tsv"
    docs = load_parrot_docs("mmbench_ml", "ru")
    assert [d["index"] for d in docs][:4] == [0, 1000000, 2000000, 3000000]
    assert docs[1]["image"] == docs[0]["image"]  # back-reference resolved
    q2 = next(d for d in docs if d["index"] == 2)
    assert q2["options"] == "AB" and q2["C"] is None  # "None" option text read as absent


def test_local_dir_missing_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    with pytest.raises(ParrotDataError, match="mmmb_tr.tsv"):
        resolve_parrot_file("mmmb", "tr")


def test_flat_local_dir(tmp_path, monkeypatch):
    write_tsv(tmp_path / "mmmb_pt.tsv", [_row(0, _png_b64())])
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    assert load_parrot_docs("mmmb", "pt")[0]["language"] == "pt"


def test_missing_columns(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64())], columns=[c for c in COLUMNS if c != "answer"])
    with pytest.raises(ParrotDataError, match=r"bad\.tsv: missing column\(s\) answer"):
        read_parrot_tsv(path, "en", "mmmb")


def test_bad_base64_names_file_and_row(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(7, "not*base64!" * 10)])
    with pytest.raises(ParrotDataError, match=r"bad\.tsv: row 2 \(index 7\): image is not valid base64"):
        read_parrot_tsv(path, "en", "mmmb")


def test_base64_that_is_no_image(tmp_path):
    junk = base64.b64encode(b"hello world, this is not a picture at all!" * 3).decode()
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, junk)])
    with pytest.raises(ParrotDataError, match=r"row 1 \(index 0\): image decodes from base64 but is not an image"):
        read_parrot_tsv(path, "en", "mmmb")


def test_back_reference_to_missing_row(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(1, "42")])
    with pytest.raises(ParrotDataError, match=r"bad\.tsv: row 2 \(index 1\): image refers to index 42, which no row has"):
        read_parrot_tsv(path, "en", "mmmb")


def test_back_reference_chain(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(1, "0"), _row(2, "1")])
    with pytest.raises(ParrotDataError, match=r"row 3 \(index 2\): image refers to index 1, whose image is itself a reference"):
        read_parrot_tsv(path, "en", "mmmb")


def test_answer_must_be_a_present_option(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64(), D="NA", answer="D")])
    with pytest.raises(ParrotDataError, match=r"row 1 \(index 0\): answer 'D' is not one of the row's options A, B, C"):
        read_parrot_tsv(path, "en", "mmmb")


def test_non_integer_and_duplicate_index(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row("x1", _png_b64())])
    with pytest.raises(ParrotDataError, match=r"row 1: index 'x1' is not an integer"):
        read_parrot_tsv(path, "en", "mmmb")
    path = write_tsv(tmp_path / "dup.tsv", [_row(3, _png_b64()), _row(3, _png_b64())])
    with pytest.raises(ParrotDataError, match=r"dup\.tsv: row 2: index 3 repeats row 1"):
        read_parrot_tsv(path, "en", "mmmb")


def test_unknown_language(tmp_path):
    path = write_tsv(tmp_path / "ok.tsv", [_row(0, _png_b64())])
    with pytest.raises(ParrotDataError, match="unknown language code 'xx'"):
        read_parrot_tsv(path, "xx", "mmmb")
    with pytest.raises(ParrotDataError, match="no language 'de'"):
        parrot_filename("mmmb", "de")
    with pytest.raises(ParrotDataError, match="unknown benchmark"):
        parrot_filename("mmbench_en", "en")


def test_missing_file(tmp_path):
    with pytest.raises(ParrotDataError, match=r"nothere\.tsv: no such file"):
        read_parrot_tsv(tmp_path / "nothere.tsv", "en", "mmmb")


def test_prompt_layout_and_instructions():
    doc = {"hint": "h", "question": "q?", "options": "AC", "A": "x", "C": "z", "language": "ar"}
    assert build_prompt(doc) == "h\nq?\nA. x\nC. z\n" + ANSWER_INSTRUCTIONS["ar"]
    assert build_prompt({**doc, "hint": ""}, instruction="") == "q?\nA. x\nC. z"
    assert answer_instruction("cn") == "请直接用给定选项中的选项字母回答。"
    assert set(ANSWER_INSTRUCTIONS) == {"en", "zh", "pt", "ar", "tr", "ru"}


def test_circular_scoring_by_hand():
    rec = lambda i, ok, cat="c": {"index": i, "correct": ok, "category": cat, "l2_category": ""}
    records = [rec(0, True), rec(1000000, True), rec(1, True, "d"), rec(1000001, False, "d"),
               rec(2000001, True, "d"), rec(2, False), rec(1000002, True)]
    s = summarize(records, circular=True)
    assert s["acc"] == pytest.approx(2 / 3) and s["circular_acc"] == pytest.approx(1 / 3)
    assert s["by_category"]["circular_acc"]["c"]["acc"] == pytest.approx(0.5)
    assert s["by_category"]["circular_acc"]["d"]["acc"] == 0.0
    assert summarize(records, circular=False)["acc"] == pytest.approx(5 / 7)
