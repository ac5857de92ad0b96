"""Parallel problems: parallel questions plus, for each question, a reference answer in the pivot
language, the input of the understanding measure (how well the model predicts the pivot answer given
the question in each language).

The layout is the JSONL of parallel questions (`id`, `lang`, `question`) where every pivot row also
carries `answer`: `{"id": "q1", "lang": "en", "question": "...", "answer": "..."}`. The questions go
through `load_parallel_questions`, so the same parallel checks hold; VLMEvalKit TSVs have no answer
column of this kind and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plast_plugin.data.languages import normalize_language
from plast_plugin.data.parallel_data import ParallelQuestions, load_parallel_questions
from plast_plugin.errors import PlastError
from plast_plugin.json_files import iter_json_lines


@dataclass
class ParallelProblems:
    questions: ParallelQuestions
    answers: dict[str, str]  # question id -> reference answer in the pivot language


def load_parallel_problems(sources, languages=None, pivot: str = "en", max_samples: int | None = None) -> ParallelProblems:
    """Parallel questions as `load_parallel_questions` reads them, and the pivot rows' `answer`s of
    the ids it keeps. Raises `PlastError` on anything unparallel or a pivot row without an answer."""
    questions = load_parallel_questions(sources, languages, pivot, max_samples)
    answers: dict[str, str] = {}
    for source in questions.sources:
        path = Path(source)
        if path.suffix not in (".jsonl", ".json"):
            raise PlastError(
                f"{source}: reference answers are read from JSONL only (an 'answer' field on each "
                f"{questions.pivot!r} row); convert the questions and answers to one .jsonl file"
            )
        # The file was read and checked once above; here only the pivot rows' answers are taken.
        for where, obj in iter_json_lines(path):
            if normalize_language(obj["lang"], where) != questions.pivot:
                continue
            qid = str(obj["id"])
            answer = obj.get("answer")
            if not isinstance(answer, str) or not answer.strip():
                shown = ("missing" if "answer" not in obj else "null" if answer is None
                         else "empty" if isinstance(answer, str) else f"{type(answer).__name__} {answer!r}"[:80])
                raise PlastError(
                    f"{where}: question {qid!r} ({questions.pivot}) has no reference answer ('answer' is {shown}); "
                    f"give every {questions.pivot!r} row a non-empty string 'answer'"
                )
            answers[qid] = answer
    return ParallelProblems(questions, {qid: answers[qid] for qid in questions.ids})
