"""The one VLMEvalKit TSV reader of the probe data and the evaluation tasks: text cells, quoting,
file lines, and VLMEvalKit's image back-reference rule (a cell of at most 64 characters)."""

import base64
import io

import pytest

from plast_plugin.errors import PlastError
from plast_plugin.eval.parrot_data import read_parrot_tsv
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.data.vlmevalkit_tsv import (IMAGE_REFERENCE_MAX_CHARS, ImageReferenceError, is_image_reference,
                                         read_vlmevalkit_tsv)


def _png_b64():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_cells_are_text_quoted_as_pandas_and_rows_know_their_file_line(tmp_path):
    path = _write(tmp_path / "t.tsv", '\ufeffindex\tquestion\tA\tB\r\n1\t"a\tb"\tNone\tNA\r\n\r\n'
                                      '2\t"two\nlines ""quoted"""\tx\r\n3\tshort\r\n')
    table = read_vlmevalkit_tsv(path)
    assert table.columns == ["index", "question", "A", "B"]  # the byte-order mark is not in "index"
    assert table.rows == [
        {"index": "1", "question": "a\tb", "A": "None", "B": "NA"},  # texts, not missing values
        {"index": "2", "question": 'two\nlines "quoted"', "A": "x", "B": ""},  # short row: empty cells
        {"index": "3", "question": "short", "A": "", "B": ""},
    ]
    assert table.lines == [2, 4, 6]  # the blank line and the two-line cell counted


def test_unreadable_files_name_file_and_line(tmp_path):
    with pytest.raises(PlastError, match=r"nothere\.tsv: no such file"):
        read_vlmevalkit_tsv(tmp_path / "nothere.tsv")
    open_quote = _write(tmp_path / "q.tsv", 'index\tquestion\n1\tfine\n2\t"never closed\n3\tlost\n')
    with pytest.raises(PlastError, match=r"q\.tsv:\d+: not a readable TSV .*quote"):
        read_vlmevalkit_tsv(open_quote)
    extra = _write(tmp_path / "x.tsv", "index\tquestion\n1\tq\n2\tq\tstray\n")
    with pytest.raises(PlastError, match=r"x\.tsv:3: 3 cells, the header has 2"):
        read_vlmevalkit_tsv(extra)
    latin = tmp_path / "l.tsv"
    latin.write_bytes("index\tquestion\n1\tma\xe7\xe3\n".encode("latin-1"))
    with pytest.raises(PlastError, match=r"l\.tsv: not UTF-8 text"):
        read_vlmevalkit_tsv(latin)


def test_image_back_references_follow_vlmevalkit(tmp_path):
    image = _png_b64()
    assert len(image) > IMAGE_REFERENCE_MAX_CHARS
    assert is_image_reference("7") and is_image_reference("9" * 64) and not is_image_reference("9" * 65)
    rows = [("7", image), ("8", "7"), ("9", "7.0"), ("10", ""), ("11", "8"), ("12", "42"), ("13", "abc"),
            ("14", "10")]
    path = _write(tmp_path / "r.tsv", "index\timage\n" + "".join(f"{i}\t{c}\n" for i, c in rows))
    table = read_vlmevalkit_tsv(path)
    assert [table.image_row(pos) for pos in range(4)] == [0, 0, 0, None]
    for pos, problem in ((4, "a reference"), (5, "no such row"), (6, "not an index"), (7, "empty image")):
        with pytest.raises(ImageReferenceError) as caught:
            table.image_row(pos)
        assert caught.value.problem == problem


def test_both_readers_apply_the_same_64_character_rule(tmp_path):
    image = _png_b64()
    short = image[:IMAGE_REFERENCE_MAX_CHARS]  # base64 text, but short enough to be a reference
    en = _write(tmp_path / "p_en.tsv", f"index\tquestion\timage\n1\tq\t{image}\n2\tq\t{short}\n")
    with pytest.raises(PlastError, match=rf"p_en\.tsv:3: image refers to row index '{short}'"):
        load_parallel_questions([str(en)])
    tsv = _write(tmp_path / "mmmb_en.tsv", f"index\tquestion\tA\tB\tanswer\timage\n1\tq\tx\ty\tA\t{image}\n"
                                           f"2\tq\tx\ty\tA\t{short}\n")
    with pytest.raises(PlastError, match=r"row 2 \(index 2\): image .* too short for base64"):
        read_parrot_tsv(tsv, "en", "mmmb")


def test_probe_data_refuses_a_reference_to_a_reference(tmp_path):
    # Before the shared reader, the probe data passed the short cell "1" on as if it were an image.
    image = _png_b64()
    en = _write(tmp_path / "c_en.tsv", f"index\tquestion\timage\n1\tq\t{image}\n2\tq\t1\n3\tq\t2\n")
    zh = _write(tmp_path / "c_zh.tsv", f"index\tquestion\timage\n1\tq\t{image}\n2\tq\t1\n3\tq\t1\n")
    with pytest.raises(PlastError, match=r"c_en\.tsv:4: image refers to row index '2'.*a reference"):
        load_parallel_questions([str(en), str(zh)])
