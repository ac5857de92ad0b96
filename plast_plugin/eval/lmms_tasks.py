"""The functions lmms-eval's task YAMLs in ``eval_tasks/`` call (their ``utils.py`` re-exports).

How data reaches lmms-eval: each task YAML loads, with lmms-eval's ordinary ``dataset_path:
json`` loader, a one-line *source* file (``eval_tasks/<bench>/sources/<task>.jsonl``) naming
the benchmark and language; ``process_docs`` replaces that line by the rows of the Parrot TSV,
read and checked by :mod:`plast_plugin.eval.parrot_data` from ``$PLAST_PARROT_DIR`` or the
Hugging Face hub. This keeps one setting for the data location (a YAML cannot read an
environment variable), pandas' reading of the TSVs (as VLMEvalKit), and errors that name the
file and row; a ``class:`` task would not work with lmms-eval's chat models (such as
``llava_hf``), which need ``ConfigurableMessagesTask`` objects.
"""

from __future__ import annotations

import io
import json
import logging

from plast_plugin.eval.extract import extract_choice
from plast_plugin.eval.judge import JudgeConfig, judge_choice
from plast_plugin.eval.parrot_data import ParrotDataError, load_parrot_docs
from plast_plugin.eval.prompts import build_prompt
from plast_plugin.eval.scoring import CIRCULAR_BENCHMARKS, summarize

__all__ = [
    "process_docs", "doc_to_visual", "doc_to_text", "doc_to_target", "process_results",
    "aggregate_acc", "aggregate_circular_acc", "docs_to_dataset",
]

log = logging.getLogger(__name__)


def docs_to_dataset(docs: list[dict]):
    """A ``datasets.Dataset`` of docs with the image as an ``Image`` feature (PIL on access)."""
    import datasets

    letters = sorted({k for d in docs for k in d if len(k) == 1 and "A" <= k <= "Z"})
    features = datasets.Features({
        "index": datasets.Value("int64"),
        "question": datasets.Value("string"),
        "hint": datasets.Value("string"),
        **{c: datasets.Value("string") for c in letters},
        "options": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "category": datasets.Value("string"),
        "l2_category": datasets.Value("string"),
        "image": datasets.Image(),
        "language": datasets.Value("string"),
        "benchmark": datasets.Value("string"),
        "source": datasets.Value("string"),
        "row": datasets.Value("int64"),
    })
    rows = [{**{c: None for c in letters}, **d, "image": {"bytes": d["image"], "path": None}} for d in docs]
    return datasets.Dataset.from_list(rows, features=features)


def _loguru_error(message: str) -> None:
    try:
        from loguru import logger

        logger.error(message)
    except ImportError:  # pragma: no cover
        log.error(message)


def process_docs(dataset):
    """Replace the one-line source dataset by the benchmark's rows."""
    if len(dataset) != 1 or "benchmark" not in dataset.column_names:
        raise ValueError("a Parrot task's data_files must be its one-line sources/<task>.jsonl")
    source = dataset[0]
    try:
        docs = load_parrot_docs(source["benchmark"], source["language"])
    except ParrotDataError as exc:
        # lmms-eval retries dataset loading and then shows only the exception's type: say why here
        _loguru_error(f"{source['benchmark']}_{source['language']}: {exc}")
        raise
    log.info("%s %s: %d rows from %s", source["benchmark"], source["language"], len(docs), docs[0]["source"])
    return docs_to_dataset(docs)


def doc_to_visual(doc):
    image = doc["image"]
    if isinstance(image, dict):  # raw bytes (docs not passed through datasets)
        from PIL import Image

        image = Image.open(io.BytesIO(image["bytes"]))
    try:
        return [image.convert("RGB")]
    except Exception as exc:
        raise ValueError(f"{doc['source']}: row {doc['row']} (index {doc['index']}): image does not decode ({exc})") from exc


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """Prompt; ``lmms_eval_specific_kwargs: {instruction: ...}`` overrides Parrot's instruction."""
    kwargs = lmms_eval_specific_kwargs or {}
    text = build_prompt(doc, kwargs.get("instruction"))
    return f"{kwargs.get('pre_prompt', '')}{text}{kwargs.get('post_prompt', '')}"


def doc_to_target(doc):
    return doc["answer"]


def _options(doc) -> dict:
    return {c: doc[c] for c in doc["options"]}


def process_results(doc, results):
    response = results[0] if results else ""
    if not isinstance(response, str):  # chat models may return richer objects
        response = getattr(response, "text", None) or str(response)
    options = _options(doc)
    prediction = extract_choice(response, options, doc["language"])
    judged = False
    if prediction is None:
        judge = JudgeConfig.from_env()
        if judge is not None:
            prediction = judge_choice(doc_to_text(doc), options, response, judge)
            judged = True
    record = {
        "benchmark": doc["benchmark"],
        "language": doc["language"],
        "index": int(doc["index"]),
        "category": doc["category"],
        "l2_category": doc["l2_category"],
        "answer": doc["answer"],
        "prediction": prediction,
        "response": response,
        "judged": judged,
        "correct": prediction == doc["answer"],
    }
    if doc["benchmark"] in CIRCULAR_BENCHMARKS:
        return {"acc": record, "circular_acc": record}
    return {"acc": record}


def _summary(items, args) -> dict:
    first = items[0]
    benchmark, language = first["benchmark"], first["language"]
    summary = {"task": f"{benchmark}_{language}",
               **summarize(items, circular=benchmark in CIRCULAR_BENCHMARKS)}
    summary["unmatched"] = sum(r["prediction"] is None for r in items)
    summary["judged"] = sum(bool(r.get("judged")) for r in items)
    try:
        from lmms_eval.tasks._task_utils.file_utils import generate_submission_file

        path = generate_submission_file(f"{summary['task']}_scores.json", args)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1, ensure_ascii=False)
        log.info("%s: scores with per-category breakdown in %s", summary["task"], path)
    except Exception as exc:  # never lose the score because the breakdown could not be written
        log.warning("could not write the per-category scores: %s", exc)
    return summary


def aggregate_acc(items, args=None):
    """Plain accuracy (MMMB: all rows; MMBench: original rows), in [0, 1]."""
    return _summary(items, args)["acc"]


def aggregate_circular_acc(items, args=None):
    """MMBench circular accuracy, in [0, 1]."""
    return _summary(items, args)["circular_acc"]
