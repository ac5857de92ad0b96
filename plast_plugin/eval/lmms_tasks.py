"""The functions lmms-eval's task YAMLs in ``eval_tasks/`` call (their ``utils.py`` re-exports).

How data reaches lmms-eval: each task YAML loads, with lmms-eval's ordinary ``dataset_path: json``
loader, a one-line *source* file (``eval_tasks/<bench>/sources/<task>.jsonl``) naming the benchmark and
language; ``process_docs`` replaces that line by the rows of the Parrot TSV, read and checked by
:mod:`plast_plugin.eval.parrot_data` from ``$PLAST_PARROT_DIR`` or the Hugging Face hub. This keeps one
setting for the data location (a YAML cannot read an environment variable), the md5 check of the file,
and errors that name the file and row; a ``class:`` task would not work with lmms-eval's chat models
(such as ``llava_hf``), which need ``ConfigurableMessagesTask`` objects.
"""

from __future__ import annotations

import io
import json
import logging
import os

from plast_plugin.eval.exact_match import exact_choice
from plast_plugin.eval.extract import extract_choice
from plast_plugin.eval.judge import JudgeConfig, judge_choice
from plast_plugin.eval.parrot_data import load_parrot_task
from plast_plugin.eval.prompts import build_prompt, protocol_messages, resolve_layout, resolve_protocol
from plast_plugin.eval.scoring import CIRCULAR_BENCHMARKS, CIRCULAR_OFFSET, metric_names, summarize
from plast_plugin.errors import PlastError

log = logging.getLogger(__name__)
# What process_docs read for each task (file, md5, counts, warnings), reported with the scores.
# Aggregation runs in the process (rank 0) that also ran process_docs.
_TASK_DATA: dict[str, dict] = {}
# `plast eval --limit N`: the first N questions of each task, a circular question with all its
# rotated copies (lmms-eval's own --limit cuts rows, and with them circular groups).
LIMIT_ENV = "PLAST_EVAL_LIMIT"


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
        "answerable": datasets.Value("bool"),
        "category": datasets.Value("string"),
        "l2_category": datasets.Value("string"),
        "image": datasets.Image(),
        "language": datasets.Value("string"),
        "benchmark": datasets.Value("string"),
        "source": datasets.Value("string"),
        "row": datasets.Value("int64"),
        "protocol": datasets.Value("string"),
        "layout": datasets.Value("string"),
        "source_md5": datasets.Value("string"),
        "group_size": datasets.Value("int64"),
    })
    rows = [{**{c: None for c in letters}, "group_size": None, **d, "image": {"bytes": d["image"], "path": None}} for d in docs]
    return datasets.Dataset.from_list(rows, features=features)


def _loguru(level: str, message: str) -> None:
    """lmms-eval logs through loguru: messages sent there reach its console."""
    from loguru import logger  # lmms-eval's dependency: these hooks run only inside lmms-eval

    getattr(logger, level)(message)


def _limit() -> int | None:
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{LIMIT_ENV}={raw!r}: give a whole number of questions >= 1")
    return int(raw)


def with_groups(docs: list[dict], circular: bool, limit: int | None = None) -> list[dict]:
    """Each doc with the size of its circular group in the file (``group_size``, which scoring
    uses to tell a complete group), cut to the first `limit` questions, whole groups."""
    key = (lambda d: int(d["index"]) % CIRCULAR_OFFSET) if circular else (lambda d: d["row"])
    sizes: dict[int, int] = {}
    for d in docs:
        sizes[key(d)] = sizes.get(key(d), 0) + 1
    kept = set(list(sizes)[:limit]) if limit is not None else sizes.keys()
    return [{**d, "group_size": sizes[key(d)] if circular else None} for d in docs if key(d) in kept]


def process_docs(dataset):
    """Replace the one-line source dataset by the benchmark's rows."""
    if len(dataset) != 1 or "benchmark" not in dataset.column_names:
        raise ValueError("a Parrot task's data_files must be its one-line sources/<task>.jsonl")
    source = dataset[0]
    task = f"{source['benchmark']}_{source['language']}"
    try:
        protocol = resolve_protocol()
        layout = resolve_layout()
        limit = _limit()
        data = load_parrot_task(source["benchmark"], source["language"])
        docs = vlmevalkit_docs(data)
    except (PlastError, ValueError) as exc:
        # lmms-eval retries dataset loading and then shows only the exception's type: say why here
        _loguru("error", f"{task}: {exc}")
        raise
    record = {"protocol": protocol, "layout": layout, **data.as_dict()}
    dropped = [d["row"] for d in docs if d["answerable"] and d["answer"] not in d["options"]]
    if dropped:
        # VLMEvalKit shows no option pandas reads as NaN, so no model can pick it: scored wrong
        record["unanswerable_rows"] = sorted(record["unanswerable_rows"] + dropped)
        record["warnings"].append(
            f"{data.identity.file}: {len(dropped)} row(s) whose correct option's text pandas reads as a missing "
            f"value (None, NA, ...): not shown (as in VLMEvalKit), kept and scored wrong: rows "
            + ", ".join(map(str, dropped[:20])) + (" ..." if len(dropped) > 20 else ""))
    for warning in record["warnings"]:
        _loguru("warning", f"{task}: {warning}")
    _TASK_DATA[task] = record
    _loguru("info", f"{task}: {len(docs)} rows from {data.identity.file} (md5 {data.identity.md5}, "
                    f"{data.identity.check}), protocol {protocol}, chat layout {layout}")
    docs = with_groups(docs, source["benchmark"] in CIRCULAR_BENCHMARKS, limit)
    if limit is not None:
        _loguru("warning", f"{task}: {LIMIT_ENV}={limit}: the first {limit} questions only ({len(docs)} rows)")
    return docs_to_dataset([{**d, "protocol": protocol, "layout": layout, "source_md5": data.identity.md5}
                            for d in docs])


def vlmevalkit_docs(data) -> list[dict]:
    """The docs of a :class:`~plast_plugin.eval.parrot_data.ParrotTask` with the option and hint
    cells VLMEvalKit's prompt shows: it reads the TSV with ``pd.read_csv(sep='\\t')`` (defaults), so
    a cell pandas reads as NaN (``None``, ``NA``, empty ...) is no option (not shown, not an answer
    choice) and no hint, and a column pandas reads as numbers or booleans prints as them (``3.0``
    in a numeric column with empty cells). pandas itself reads the file here, as VLMEvalKit does."""
    import pandas as pd

    path = data.identity.file
    frame = pd.read_csv(path, sep="\t")
    if len(frame) != len(data.docs) or any(str(frame["index"].iloc[d["row"] - 1]).split(".")[0] != str(d["index"])
                                           for d in data.docs):
        raise PlastError(f"{path}: pandas reads {len(frame)} rows (or other indices) where the plugin's reader "
                              f"reads {len(data.docs)}: the file's quoting is ambiguous; fix the file")
    docs = []
    for doc in data.docs:
        line = frame.iloc[doc["row"] - 1]
        cells = {c: (None if c not in line or pd.isna(line[c]) else f"{line[c]}") for c in doc["options"]}
        hint = line["hint"] if "hint" in line and not pd.isna(line["hint"]) else ""
        docs.append({**doc, **cells, "hint": f"{hint}",
                     "options": "".join(c for c in doc["options"] if cells[c] is not None)})
    return docs


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
    """Prompt of the doc's protocol; ``lmms_eval_specific_kwargs: {instruction: ...}`` overrides
    the protocol's instruction line."""
    kwargs = lmms_eval_specific_kwargs or {}
    text = build_prompt(doc, kwargs.get("instruction"))
    return f"{kwargs.get('pre_prompt', '')}{text}{kwargs.get('post_prompt', '')}"


def doc_to_messages(doc, lmms_eval_specific_kwargs=None):
    """The chat messages of the doc's protocol and layout (lmms-eval's chat models, such as
    ``llava_hf`` or ``qwen2_5_vl``): see :func:`plast_plugin.eval.prompts.protocol_messages`."""
    return protocol_messages(doc, doc_to_visual(doc)[0], doc_to_text(doc, lmms_eval_specific_kwargs))


def doc_to_target(doc):
    return doc["answer"]


def process_results(doc, results):
    response = results[0] if results else ""
    if not isinstance(response, str):  # chat models may return richer objects
        response = getattr(response, "text", None) or str(response)
    options = {c: doc[c] for c in doc["options"]}
    answerable = doc["answer"] in doc["options"]  # else its option has no text and was not shown
    prediction = extract_choice(response, options, doc["language"])
    # VLMEvalKit's exact rules, never judged: the gap to `prediction` is what our extractor adds
    prediction_exact = exact_choice(response, options)
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
        "answerable": answerable,
        "prediction": prediction,
        "prediction_exact": prediction_exact,
        "response": response,
        "judged": judged,
        # an unanswerable row (its correct option has no text, so it was not shown) scores wrong
        "correct": answerable and prediction == doc["answer"],
        "correct_exact": answerable and prediction_exact == doc["answer"],
        "protocol": doc.get("protocol"),
        "layout": doc.get("layout"),
        "source_md5": doc.get("source_md5"),
        "group_size": doc.get("group_size"),
    }
    # "score": the row's 0/1 verdict under the name lmms-eval's --baseline paired t-test reads from
    # sample logs (its own and the baseline's); no aggregation, so it adds no metric to the results
    return {**{metric: record for metric in metric_names(doc["benchmark"])}, "score": float(record["correct"])}


def _exact(items) -> list[dict]:
    return [{**r, "correct": r["correct_exact"], "prediction": r["prediction_exact"]} for r in items]


def _summary(items, args) -> dict:
    first = items[0]
    benchmark, language = first["benchmark"], first["language"]
    task = f"{benchmark}_{language}"
    circular = benchmark in CIRCULAR_BENCHMARKS
    summary = {"task": task, "protocol": first.get("protocol"), "layout": first.get("layout"),
               **summarize(items, circular=circular)}
    summary["unmatched"] = sum(r["prediction"] is None for r in items)
    summary["judged"] = sum(bool(r.get("judged")) for r in items)
    exact = summarize(_exact(items), circular=circular)
    summary["exact_match"] = {k: exact[k] for k in ("acc", "circular_acc") if k in exact}
    summary["exact_match"]["unmatched"] = sum(r["prediction_exact"] is None for r in items)
    summary["data"] = _TASK_DATA.get(task, {"md5": first.get("source_md5")})
    for warning in summary.get("warnings", []):
        _loguru("warning", f"{task}: {warning}")
    if circular and summary["data"].get("single_pass"):
        summary["circular_acc_kind"] = "single-pass (the file has no rotated copies)"
    try:
        from lmms_eval.tasks._task_utils.file_utils import generate_submission_file

        path = generate_submission_file(f"{task}_scores.json", args)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1, ensure_ascii=False)
        log.info("%s: scores with per-category breakdown in %s", task, path)
    except Exception as exc:  # never lose the score because the breakdown could not be written
        log.warning("could not write the per-category scores: %s", exc)
    return summary


def _measured(value: float | None) -> float:
    """lmms-eval needs a number: NaN (shown as nan) where nothing was scored, never a 0.0."""
    return float("nan") if value is None else value


def aggregate_acc(items, args=None):
    """Plain accuracy (MMMB: all rows; MMBench: original rows of complete groups), in [0, 1]."""
    return _measured(_summary(items, args)["acc"])


def aggregate_circular_acc(items, args=None):
    """MMBench circular accuracy, in [0, 1] (single-pass when the file has no rotated copies)."""
    return _measured(_summary(items, args)["circular_acc"])


def aggregate_acc_exact(items, args=None):
    """``acc`` with VLMEvalKit's exact matcher instead of the multilingual extractor."""
    return _measured(summarize(_exact(items), circular=items[0]["benchmark"] in CIRCULAR_BENCHMARKS)["acc"])


def aggregate_circular_acc_exact(items, args=None):
    """``circular_acc`` with VLMEvalKit's exact matcher."""
    return _measured(summarize(_exact(items), circular=True)["circular_acc"])
