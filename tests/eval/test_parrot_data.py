"""Reading Parrot TSVs: layout, back-references, option texts, answers, data identity, prompts."""

import base64

import pytest

from eval_testutil import parrot_dir  # noqa: F401 (fixture)
from parrot_fixtures import COLUMNS, write_tsv
from plast_plugin.eval import parrot_data
from plast_plugin.eval.parrot_data import (check_identity, file_md5, load_parrot_docs,
                                           load_parrot_task, parrot_filename, read_parrot_tsv, resolve_parrot_file)
from plast_plugin.eval.prompts import (ANSWER_INSTRUCTIONS, VLMEVALKIT_INSTRUCTION_CJK, answer_instruction,
                                       build_prompt, resolve_protocol)
from plast_plugin.eval.scoring import summarize
from plast_plugin.errors import PlastError


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
    monkeypatch.setenv("PLAST_PARROT_MD5", "any")
    assert resolve_parrot_file("mmmb", "zh") == parrot_dir / "mmmb" / "mmmb_cn.tsv"
    docs = load_parrot_docs("mmbench_ml", "ru")
    assert [d["index"] for d in docs][:4] == [0, 1000000, 2000000, 3000000]
    assert docs[1]["image"] == docs[0]["image"]  # back-reference resolved
    q2 = next(d for d in docs if d["index"] == 2)
    assert q2["options"] == "ABC" and q2["C"] == "None"  # "None" is an option text, not a missing value


def test_local_dir_missing_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    with pytest.raises(PlastError, match="mmmb_tr.tsv"):
        resolve_parrot_file("mmmb", "tr")


def test_flat_local_dir(tmp_path, monkeypatch):
    write_tsv(tmp_path / "mmmb_pt.tsv", [_row(0, _png_b64())])
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    monkeypatch.setenv("PLAST_PARROT_MD5", "any")
    assert load_parrot_docs("mmmb", "pt")[0]["language"] == "pt"


def test_missing_columns(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64())], columns=[c for c in COLUMNS if c != "answer"])
    with pytest.raises(PlastError, match=r"bad\.tsv: missing column\(s\) answer"):
        read_parrot_tsv(path, "en", "mmmb")


def test_bad_base64_names_file_and_row(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(7, "not*base64!" * 10)])
    with pytest.raises(PlastError, match=r"bad\.tsv: row 2 \(index 7\): image is not valid base64"):
        read_parrot_tsv(path, "en", "mmmb")


def test_base64_that_is_no_image(tmp_path):
    junk = base64.b64encode(b"hello world, this is not a picture at all!" * 3).decode()
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, junk)])
    with pytest.raises(PlastError, match=r"row 1 \(index 0\): image decodes from base64 but is not an image"):
        read_parrot_tsv(path, "en", "mmmb")


def test_back_reference_to_missing_row(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(1, "42")])
    with pytest.raises(PlastError, match=r"bad\.tsv: row 2 \(index 1\): image refers to index 42, which no row has"):
        read_parrot_tsv(path, "en", "mmmb")


def test_back_reference_chain(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(1, "0"), _row(2, "1")])
    with pytest.raises(PlastError, match=r"row 3 \(index 2\): image refers to index 1, whose image is itself a reference"):
        read_parrot_tsv(path, "en", "mmmb")


@pytest.mark.parametrize("answer,what", [
    ("", "answer is empty"),
    ("None", "answer 'None' is not one option letter"),
    ("NA", "answer 'NA' is not one option letter"),
    ("AB", "answer 'AB' is not one option letter"),
    ("CD", "answer 'CD' is not one option letter"),
    ("E", "answer 'E' is not one option letter"),  # no E column
])
def test_answer_must_be_exactly_one_option_letter(tmp_path, answer, what):
    """A substring test on "ABCD" would accept each of these."""
    path = write_tsv(tmp_path / "bad.tsv", [_row(0, _png_b64()), _row(5, _png_b64(), answer=answer)])
    with pytest.raises(PlastError, match=rf"bad\.tsv: row 2 \(index 5\): {what}; the answer cell must hold "
                                              r"exactly one of the option letters A, B, C, D"):
        read_parrot_tsv(path, "en", "mmmb")


def test_none_and_na_option_texts_are_answerable(tmp_path):
    path = write_tsv(tmp_path / "ok.tsv", [_row(0, _png_b64(), C="None", answer="C"),
                                           _row(1, _png_b64(), B="NA", D="", answer="b")])
    none_row, na_row = read_parrot_tsv(path, "en", "mmmb")
    assert none_row["options"] == "ABCD" and none_row["C"] == "None" and none_row["answerable"]
    assert na_row["options"] == "ABC" and na_row["B"] == "NA" and na_row["answer"] == "B" and na_row["D"] is None
    assert "C. None" in build_prompt({**none_row, "protocol": "vlmevalkit"})


def test_empty_correct_option_is_kept_unanswerable_and_reported(tmp_path, monkeypatch):
    """VLMEvalKit keeps such a row (scored wrong): the denominator stays the published one."""
    write_tsv(tmp_path / "mmmb_en.tsv", [_row(0, _png_b64()), _row(1, _png_b64(), D="", answer="D")])
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    monkeypatch.setenv("PLAST_PARROT_MD5", "any")
    task = load_parrot_task("mmmb", "en")
    assert [d["answerable"] for d in task.docs] == [True, False]
    assert task.as_dict()["unanswerable_rows"] == [2]
    assert any("rows 2" in w and "scored wrong" in w for w in task.warnings)


def test_non_integer_and_duplicate_index(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", [_row("x1", _png_b64())])
    with pytest.raises(PlastError, match=r"row 1: index 'x1' is not an integer"):
        read_parrot_tsv(path, "en", "mmmb")
    path = write_tsv(tmp_path / "dup.tsv", [_row(3, _png_b64()), _row(3, _png_b64())])
    with pytest.raises(PlastError, match=r"dup\.tsv: row 2: index 3 repeats row 1"):
        read_parrot_tsv(path, "en", "mmmb")


def test_unknown_language(tmp_path):
    path = write_tsv(tmp_path / "ok.tsv", [_row(0, _png_b64())])
    with pytest.raises(PlastError, match="unknown language code 'xx'"):
        read_parrot_tsv(path, "xx", "mmmb")
    with pytest.raises(PlastError, match="no language 'de'"):
        parrot_filename("mmmb", "de")
    with pytest.raises(PlastError, match="unknown benchmark"):
        parrot_filename("mmbench_en", "en")


def test_missing_file(tmp_path):
    with pytest.raises(PlastError, match=r"nothere\.tsv: no such file"):
        read_parrot_tsv(tmp_path / "nothere.tsv", "en", "mmmb")


def test_prompt_layout_and_instructions():
    doc = {"hint": "h", "question": "q?", "options": "AC", "A": "x", "C": "z", "language": "ar"}
    assert build_prompt(doc, protocol="parrot") == "h\nq?\nA. x\nC. z\n" + ANSWER_INSTRUCTIONS["ar"]
    assert build_prompt({**doc, "hint": ""}, instruction="") == "q?\nA. x\nC. z"
    assert answer_instruction("cn") == "请直接用给定选项中的选项字母回答。"
    assert set(ANSWER_INSTRUCTIONS) == {"en", "zh", "pt", "ar", "tr", "ru"}


def test_vlmevalkit_protocol_instruction_follows_cjk_not_language(monkeypatch):
    english = "Answer with the option's letter from the given choices directly."
    doc = {"hint": "", "question": "Qual é a cor?", "options": "AB", "A": "azul", "B": "verde", "language": "pt"}
    assert build_prompt(doc, protocol="vlmevalkit") == "Qual é a cor?\nA. azul\nB. verde\n" + english
    zh = {**doc, "question": "这是什么颜色?", "language": "zh"}
    assert build_prompt(zh, protocol="vlmevalkit").endswith("\nB. verde\n" + VLMEVALKIT_INSTRUCTION_CJK)
    # VLMEvalKit looks at the whole prompt, options included, and only at U+4E00..U+9FFF
    assert build_prompt({**doc, "B": "绿色"}, protocol="vlmevalkit").endswith(VLMEVALKIT_INSTRUCTION_CJK)
    assert build_prompt({**doc, "question": "ひらがな"}, protocol="vlmevalkit").endswith(english)
    assert build_prompt(zh, protocol="parrot").endswith(ANSWER_INSTRUCTIONS["zh"])
    # the default is vlmevalkit; the doc's recorded protocol wins over the environment
    monkeypatch.delenv("PLAST_EVAL_PROTOCOL", raising=False)
    assert resolve_protocol() == "vlmevalkit" and build_prompt(doc).endswith(english)
    monkeypatch.setenv("PLAST_EVAL_PROTOCOL", "parrot")
    assert build_prompt(doc).endswith(ANSWER_INSTRUCTIONS["pt"])
    assert build_prompt({**doc, "protocol": "vlmevalkit"}).endswith(english)
    monkeypatch.setenv("PLAST_EVAL_PROTOCOL", "vlmevalkt")
    with pytest.raises(PlastError, match="PLAST_EVAL_PROTOCOL='vlmevalkt': unknown evaluation protocol"):
        resolve_protocol()


def test_md5_published_pinned_any_and_refused(tmp_path, monkeypatch):
    path = write_tsv(tmp_path / "mmmb_en.tsv", [_row(0, _png_b64())])
    md5 = file_md5(path)
    with pytest.raises(PlastError, match=rf"mmmb_en\.tsv: md5 {md5} differs from the published \(VLMEvalKit\) "
                                              r"md5 1cd781a71ec5a2983c090b84105d6a01 of mmmb_en"):
        check_identity(path, "mmmb", "en", environ={})
    monkeypatch.setitem(parrot_data.PUBLISHED_MD5, "mmmb_en", md5)  # as if this were the published file
    ok = check_identity(path, "mmmb", "en", environ={})
    assert (ok.md5, ok.check, ok.expected_md5) == (md5, "published", md5)
    monkeypatch.setitem(parrot_data.PUBLISHED_MD5, "mmmb_en", "1cd781a71ec5a2983c090b84105d6a01")
    pinned = check_identity(path, "mmmb", "en", environ={"PLAST_PARROT_MD5": f"mmmb_en={md5.upper()}"})
    assert pinned.check == "user pin"
    with pytest.raises(PlastError, match="differs from the pinned md5 0{32} of mmmb_en"):
        check_identity(path, "mmmb", "en", environ={"PLAST_PARROT_MD5": "mmmb_en=" + "0" * 32})
    assert check_identity(path, "mmmb", "en", environ={"PLAST_PARROT_MD5": "any"}).check == "unchecked"
    with pytest.raises(PlastError, match=r"'mmmb_xx=abc' is not <task>=<32 hex md5>"):
        check_identity(path, "mmmb", "en", environ={"PLAST_PARROT_MD5": "mmmb_xx=abc"})


def test_counts_checked_against_the_published_ones(tmp_path, monkeypatch):
    write_tsv(tmp_path / "mmbench_dev_ar.tsv", [_row(0, _png_b64()), _row(1, _png_b64())])
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    monkeypatch.setenv("PLAST_PARROT_MD5", "any")
    task = load_parrot_task("mmbench_ml", "ar")
    assert (task.questions, task.expected_questions, task.rotated_copies, task.single_pass) == (2, 1164, 0, True)
    assert any("has 2 questions (circular groups), the published scores are over 1164" in w for w in task.warnings)
    assert any("SINGLE-PASS" in w for w in task.warnings)
    assert task.revision is None  # a local copy has no hub revision


def test_circular_scoring_by_hand():
    rec = lambda i, ok, cat="c": {"index": i, "correct": ok, "category": cat, "l2_category": ""}
    records = [rec(0, True), rec(1000000, True), rec(1, True, "d"), rec(1000001, False, "d"),
               rec(2000001, True, "d"), rec(2, False), rec(1000002, True)]
    s = summarize(records, circular=True)
    assert s["acc"] == pytest.approx(2 / 3) and s["circular_acc"] == pytest.approx(1 / 3)
    assert s["by_category"]["circular_acc"]["c"]["acc"] == pytest.approx(0.5)
    assert s["by_category"]["circular_acc"]["d"]["acc"] == 0.0
    assert summarize(records, circular=False)["acc"] == pytest.approx(5 / 7)
