"""Reading and checking Parrot's MMMB and multilingual MMBench TSVs (VLMEvalKit MCQ layout).

The published files live in the Hugging Face dataset repo ``AIDC-AI/Parrot-dataset``
(CC BY-NC-SA 4.0) as ``mmmb/mmmb_<code>.tsv`` and ``mmbench/mmbench_dev_<code>.tsv`` with
``<code>`` one of ``en cn pt ar tr ru`` (``cn``, not ``zh``). Set ``PLAST_PARROT_DIR`` to a
directory holding the same files (that layout, or all files flat in one folder) to work
offline; otherwise they are fetched once through ``huggingface_hub`` into its cache.

Columns (VLMEvalKit): ``index``, ``question``, ``hint`` (optional), one column per option
letter ``A``, ``B``, ... (empty where a question has fewer options), ``answer`` (a letter),
``category`` and ``l2-category`` (optional), ``image`` (base64; a value of at most 64
characters is the ``index`` of the row whose image it reuses). The file is read with pandas'
defaults, as VLMEvalKit does, so option texts such as ``None`` or ``NA`` become empty options.
Every problem is reported as a :class:`ParrotDataError` naming the file and the row.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from pathlib import Path

from plast_plugin.languages import UnknownLanguageError, normalize_language

__all__ = [
    "BENCHMARKS",
    "PARROT_LANGUAGES",
    "PARROT_REPO",
    "PARROT_DIR_ENV",
    "ParrotDataError",
    "parrot_filename",
    "resolve_parrot_file",
    "read_parrot_tsv",
    "load_parrot_docs",
    "parrot_language",
]

PARROT_REPO = "AIDC-AI/Parrot-dataset"
PARROT_DIR_ENV = "PLAST_PARROT_DIR"
PARROT_LANGUAGES = ("en", "zh", "pt", "ar", "tr", "ru")
# Parrot's file names spell Chinese "cn".
_FILE_CODE = {"en": "en", "zh": "cn", "pt": "pt", "ar": "ar", "tr": "tr", "ru": "ru"}
# benchmark name used by the tasks -> (folder in the repo, file prefix)
BENCHMARKS = {
    "mmmb": ("mmmb", "mmmb_"),
    "mmbench_ml": ("mmbench", "mmbench_dev_"),
}
REQUIRED_COLUMNS = ("index", "question", "answer", "image", "A", "B")
_BACKREF_MAX_LEN = 64


class ParrotDataError(ValueError):
    """A Parrot TSV (or the way to it) is unusable; the message names the file and row."""


def parrot_language(language: str) -> str:
    """Normalise `language` (``cn`` -> ``zh``) and check that Parrot has it."""
    try:
        code = normalize_language(language)
    except UnknownLanguageError as exc:
        raise ParrotDataError(f"{exc}; Parrot's benchmarks cover {', '.join(PARROT_LANGUAGES)}") from None
    if code not in PARROT_LANGUAGES:
        raise ParrotDataError(
            f"Parrot's benchmarks have no language {language!r}; use one of {', '.join(PARROT_LANGUAGES)}")
    return code


def _benchmark(benchmark: str) -> tuple[str, str]:
    if benchmark not in BENCHMARKS:
        raise ParrotDataError(f"unknown benchmark {benchmark!r}; use one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[benchmark]


def parrot_filename(benchmark: str, language: str) -> str:
    """Path of the TSV inside the Parrot repo, e.g. ``mmmb/mmmb_cn.tsv`` for (mmmb, zh)."""
    folder, prefix = _benchmark(benchmark)
    return f"{folder}/{prefix}{_FILE_CODE[parrot_language(language)]}.tsv"


def resolve_parrot_file(benchmark: str, language: str) -> Path:
    """Local path of the TSV: from ``$PLAST_PARROT_DIR`` if set, else the Hugging Face hub."""
    rel = parrot_filename(benchmark, language)
    local = os.environ.get(PARROT_DIR_ENV)
    if local:
        root = Path(local).expanduser()
        for candidate in (root / rel, root / Path(rel).name):
            if candidate.is_file():
                return candidate
        raise ParrotDataError(
            f"{PARROT_DIR_ENV}={local} holds neither {root / rel} nor {root / Path(rel).name}; "
            f"download {rel} from the dataset repo {PARROT_REPO} or unset {PARROT_DIR_ENV}")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(PARROT_REPO, rel, repo_type="dataset"))
    except Exception as exc:  # network, offline mode, gated repo ...
        raise ParrotDataError(
            f"could not fetch {rel} from the Hugging Face dataset {PARROT_REPO} ({exc}); "
            f"download the TSVs yourself and set {PARROT_DIR_ENV} to their directory") from exc


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value) -> str:
    return "" if _is_missing(value) else str(value)


def _decode_image(b64: str, where: str) -> bytes:
    try:
        raw = base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParrotDataError(f"{where}: image is not valid base64 ({exc})") from None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:  # reads the header only
            img.size
    except Exception as exc:
        raise ParrotDataError(f"{where}: image decodes from base64 but is not an image ({exc})") from None
    return raw


def read_parrot_tsv(path, language: str, benchmark: str) -> list[dict]:
    """Rows of one Parrot TSV as checked docs, image back-references resolved.

    Each doc: ``index`` (int), ``question``, ``hint`` ("" if none), one key per option letter
    column (text, or None where the row has no such option), ``options`` (the letters present,
    e.g. ``"ABC"``), ``answer``, ``category``, ``l2_category``, ``image`` (raw image bytes),
    ``language``, ``benchmark``, ``source`` (the file) and ``row`` (1-based data row).
    """
    import pandas as pd

    path = Path(path)
    language = parrot_language(language)
    _benchmark(benchmark)
    try:
        frame = pd.read_csv(path, sep="\t")
    except FileNotFoundError:
        raise ParrotDataError(f"{path}: no such file") from None
    except Exception as exc:
        raise ParrotDataError(f"{path}: not a readable TSV ({exc})") from None
    columns = [str(c) for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ParrotDataError(
            f"{path}: missing column(s) {', '.join(missing)}; a VLMEvalKit MCQ TSV needs "
            f"{', '.join(REQUIRED_COLUMNS)} (+ C, D, hint, category optional); found {', '.join(columns)}")
    letters = [c for c in columns if len(c) == 1 and "A" <= c <= "Z"]
    rows = frame.to_dict(orient="records")

    # indices first: back-references may point forward
    indices: list[int] = []
    by_index: dict[int, int] = {}
    for n, rec in enumerate(rows, start=1):
        raw = rec["index"]
        try:
            idx = int(str(raw).strip())
        except ValueError:
            try:  # "12.0" (a column pandas read as float)
                as_float = float(str(raw).strip())
            except ValueError:
                as_float = math.nan
            if not as_float.is_integer():
                raise ParrotDataError(f"{path}: row {n}: index {raw!r} is not an integer") from None
            idx = int(as_float)
        if idx in by_index:
            raise ParrotDataError(f"{path}: row {n}: index {idx} repeats row {by_index[idx] + 1}")
        by_index[idx] = n - 1
        indices.append(idx)

    images: dict[int, bytes] = {}

    def image_of(pos: int) -> bytes:
        where = f"{path}: row {pos + 1} (index {indices[pos]})"
        value = rows[pos]["image"]
        if _is_missing(value):
            raise ParrotDataError(f"{where}: empty image")
        value = str(value).strip()
        if len(value) <= _BACKREF_MAX_LEN:
            try:
                ref = int(float(value))
            except ValueError:
                raise ParrotDataError(
                    f"{where}: image {value!r} is too short for base64 and not a row index") from None
            if ref not in by_index:
                raise ParrotDataError(f"{where}: image refers to index {ref}, which no row has")
            target = by_index[ref]
            target_value = _text(rows[target]["image"]).strip()
            if len(target_value) <= _BACKREF_MAX_LEN:
                raise ParrotDataError(
                    f"{where}: image refers to index {ref}, whose image is itself a reference")
            pos = target
        if pos not in images:
            images[pos] = _decode_image(str(rows[pos]["image"]), f"{path}: row {pos + 1} (index {indices[pos]})")
        return images[pos]

    docs = []
    for pos, rec in enumerate(rows):
        where = f"{path}: row {pos + 1} (index {indices[pos]})"
        question = _text(rec["question"])
        if not question.strip():
            raise ParrotDataError(f"{where}: empty question")
        options = {c: (None if _is_missing(rec[c]) else str(rec[c])) for c in letters}
        present = "".join(c for c in letters if options[c] is not None and options[c].strip() != "")
        if len(present) < 2:
            raise ParrotDataError(f"{where}: fewer than two options ({present or 'none'})")
        answer = _text(rec["answer"]).strip()
        if len(answer) == 1:
            answer = answer.upper()
        if answer not in present:
            raise ParrotDataError(
                f"{where}: answer {answer!r} is not one of the row's options {', '.join(present)}")
        doc = {
            "index": indices[pos],
            "question": question,
            "hint": _text(rec.get("hint")),
            **options,
            "options": present,
            "answer": answer,
            "category": _text(rec.get("category")),
            "l2_category": _text(rec.get("l2-category", rec.get("l2_category"))),
            "image": image_of(pos),
            "language": language,
            "benchmark": benchmark,
            "source": str(path),
            "row": pos + 1,
        }
        docs.append(doc)
    if not docs:
        raise ParrotDataError(f"{path}: no rows")
    return docs


def load_parrot_docs(benchmark: str, language: str) -> list[dict]:
    """Resolve (``$PLAST_PARROT_DIR`` or the hub) and read one benchmark's TSV for `language`."""
    return read_parrot_tsv(resolve_parrot_file(benchmark, language), language, benchmark)
