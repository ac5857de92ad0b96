"""Parallel problems: the parallel questions as `load_parallel_questions` reads them, plus the pivot
rows' reference answers; a pivot row without an answer is refused naming the file and the question."""

from __future__ import annotations

import pytest

from core_testutil import question_rows, write_jsonl
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.data.parallel_problems import load_parallel_problems
from plast_plugin.errors import PlastError


def _answer(qid: str) -> str:
    return f"First, restate problem {qid}: its numbers {qid} and {int(qid) * 2}."


def problem_rows(pivot: str = "en", ids=None):
    """The shared parallel questions, each `pivot` row with a reference answer (others without)."""
    return [dict(row, answer=_answer(row["id"])) if row["lang"] == pivot else row for row in question_rows(ids=ids)]


def test_answers_are_read_per_id_from_the_pivot_rows(tmp_path):
    path = write_jsonl(tmp_path / "problems.jsonl", problem_rows())
    problems = load_parallel_problems(path)
    assert problems.questions.ids == ["1", "2", "3", "4", "5"]
    assert problems.answers == {qid: _answer(qid) for qid in problems.questions.ids}


def test_questions_are_those_of_load_parallel_questions(tmp_path):
    """The extra `answer` field changes nothing of the questions, for every selection argument."""
    path = write_jsonl(tmp_path / "problems.jsonl", problem_rows())
    plain = write_jsonl(tmp_path / "questions.jsonl", question_rows())
    for languages, max_samples in ((None, None), (["zh", "ru"], 3), (["ar"], 1)):
        problems = load_parallel_problems(path, languages, "en", max_samples)
        questions = load_parallel_questions(plain, languages, "en", max_samples)
        assert problems.questions.languages == questions.languages
        assert problems.questions.ids == questions.ids
        assert problems.questions.texts == questions.texts
        assert problems.questions.fingerprint == questions.fingerprint
        assert list(problems.answers) == questions.ids  # only the kept ids' answers, in their order


def test_another_pivot_reads_its_own_rows_answers(tmp_path):
    path = write_jsonl(tmp_path / "problems.jsonl", problem_rows(pivot="pt"))
    problems = load_parallel_problems(path, ["en", "ru"], pivot="pt", max_samples=2)
    assert problems.questions.languages == ["pt", "en", "ru"]
    assert problems.answers == {"1": _answer("1"), "2": _answer("2")}
    with pytest.raises(PlastError, match=r"problems.jsonl:1: question '1' \(en\) has no reference answer"):
        load_parallel_problems(path, pivot="en")  # the answers sit on the Portuguese rows only


MISSING = object()


@pytest.mark.parametrize("answer, shown", [(MISSING, "missing"), (None, "null"), ("  ", "empty"), (7, "int 7")])
def test_a_pivot_row_without_a_text_answer_is_refused_naming_file_and_id(tmp_path, answer, shown):
    rows = problem_rows()
    bad = next(i for i, row in enumerate(rows) if row["id"] == "3" and row["lang"] == "en")
    if answer is MISSING:
        del rows[bad]["answer"]
    else:
        rows[bad]["answer"] = answer
    path = write_jsonl(tmp_path / "problems.jsonl", rows)
    with pytest.raises(PlastError, match=rf"problems.jsonl:{bad + 1}: question '3' \(en\) has no reference answer "
                                         rf"\('answer' is {shown}\); give every 'en' row a non-empty string 'answer'"):
        load_parallel_problems(path)


def test_unparallel_problems_are_refused_as_questions_are(tmp_path):
    rows = [row for row in problem_rows() if not (row["id"] == "2" and row["lang"] == "tr")]
    with pytest.raises(PlastError, match=r"not parallel: 1 id\(s\) of 'en' missing in 'tr'"):
        load_parallel_problems(write_jsonl(tmp_path / "problems.jsonl", rows))


def test_tsv_sources_are_refused_since_answers_are_read_from_jsonl_only(tmp_path):
    for lang in ("en", "cn"):
        (tmp_path / f"mmmb_{lang}.tsv").write_text("index\tquestion\n1\tWhat is shown?\n", encoding="utf-8")
    with pytest.raises(PlastError, match=r"mmmb_en.tsv: reference answers are read from JSONL only"):
        load_parallel_problems([tmp_path / "mmmb_en.tsv", tmp_path / "mmmb_cn.tsv"])
