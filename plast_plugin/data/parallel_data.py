"""Parallel multilingual questions: the input of `plast select` and `plast build-data`.

Two layouts are read:
- JSONL, one object per line: `id`, `lang`, `question`, optional `image` (a path, relative to
  the file, or base64). The same `id` in every language is the same question.
- VLMEvalKit TSVs, one file per language, aligned by `index`; the language comes from the file
  name's last `_xx` part (`mmmb_cn.tsv` -> zh) or from an explicit `zh=path.tsv`. An `image`
  cell may refer to the row whose image it reuses (read by `plast_plugin.data.vlmevalkit_tsv`).

Anything that is not parallel is an error naming the file and the question: training or
probing on misaligned pairs would silently measure the wrong thing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.json_files import iter_json_lines
from plast_plugin.data.languages import normalize_language
from plast_plugin.data.vlmevalkit_tsv import IMAGE_REFERENCE_MAX_CHARS, ImageReferenceError, read_vlmevalkit_tsv


@dataclass
class ParallelQuestions:
    pivot: str
    languages: list[str]  # pivot first, then the others in the order asked
    ids: list[str]
    texts: dict[str, dict[str, str]]  # lang -> id -> question
    images: dict[str, str] = field(default_factory=dict)  # id -> path or base64
    sources: list[str] = field(default_factory=list)

    @property
    def other_languages(self) -> list[str]:
        return [lang for lang in self.languages if lang != self.pivot]

    def question(self, qid: str, lang: str) -> str:
        return self.texts[lang][qid]

    def image(self, qid: str) -> str | None:
        return self.images.get(qid)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for lang in self.languages:
            for qid in self.ids:
                digest.update(f"{lang}\x1f{qid}\x1f{self.texts[lang][qid]}\x1e".encode())
        for qid in self.ids:
            if qid in self.images:
                digest.update(f"img\x1f{qid}\x1f".encode() + hashlib.sha256(self.images[qid].encode()).digest())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {
            "sources": self.sources,
            "fingerprint": self.fingerprint,
            "pivot": self.pivot,
            "languages": self.languages,
            "questions_per_language": len(self.ids),
            "with_images": len(self.images),
        }


Row = tuple[str, str, str, str | None, str]  # id, lang, question, image, where (file:line)


def _text_field(obj: dict, key: str, where: str) -> str:
    """A JSONL field that must be text (ids may be JSON numbers): never the string 'None'."""
    value = obj[key]
    if key == "id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        shown = "null" if value is None else f"{type(value).__name__} {value!r}"[:80]
        raise PlastError(f"{where}: field {key!r} must be a string, got {shown}; fix that line")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise PlastError(
            f"{where}: field {key!r} holds an invalid character {value[err.start:err.end]!r} at position "
            f"{err.start} (a lone surrogate, e.g. a JSON escape like \\ud800 without its pair); fix the text"
        ) from None
    return value


_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")  # what an image that is no file must look like


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    for where, obj in iter_json_lines(path):
        if not isinstance(obj, dict):
            raise PlastError(
                f"{where}: a JSON {type(obj).__name__}, not an object; each line needs "
                f'{{"id": ..., "lang": ..., "question": ...}}'
            )
        missing = [key for key in ("id", "lang", "question") if key not in obj]
        if missing:
            raise PlastError(f"{where}: missing field(s) {missing}; each line needs id, lang, question")
        qid, lang, question = (_text_field(obj, key, where) for key in ("id", "lang", "question"))
        image = obj.get("image")
        if image is not None and not isinstance(image, str):
            raise PlastError(f"{where}: field 'image' must be a path or base64 string, got {type(image).__name__}")
        if image:
            image_path = path.parent / image  # an absolute image path stays as it is
            if os.path.isfile(image_path):  # os.path: a long base64 string is no error here
                image = str(image_path)
            elif not (len(image) > IMAGE_REFERENCE_MAX_CHARS and _BASE64.match(image[:4096])):
                raise PlastError(f"{where}: image {image!r} not found (looked at {image_path})")
        rows.append((qid, lang, question, image or None, where))
    return rows


def load_image(reference: str):
    """A PIL image from a path or a base64 string; a clear error names what failed."""
    from PIL import Image

    try:
        if os.path.isfile(reference):
            return Image.open(reference).convert("RGB")
        return Image.open(io.BytesIO(base64.b64decode(reference, validate=False))).convert("RGB")
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        shown = reference if len(reference) < 80 else reference[:40] + "..."
        raise PlastError(f"cannot decode image {shown!r}: {err}") from None


def _read_tsv(spec: str) -> list[Row]:
    path = Path(spec)
    lang_text = path.stem.rsplit("_", 1)[-1]
    if "=" in spec and not path.exists():
        lang_text, _, rest = spec.partition("=")
        path = Path(rest)
    table = read_vlmevalkit_tsv(path)
    missing = table.missing_columns(("index", "question"))
    if missing:
        raise PlastError(f"{path}: missing column(s) {missing}; VLMEvalKit TSVs have index, question[, image]")
    rows: list[Row] = []
    for pos, (row, line) in enumerate(zip(table.rows, table.lines)):
        where = f"{path}:{line}"
        try:
            source = table.image_row(pos)
        except ImageReferenceError as err:
            raise PlastError(f"{where}: image refers to row index {err.reference!r}, which has no image "
                             f"({err.problem}); fix the image cell") from None
        image = None if source is None else table.rows[source]["image"]
        rows.append((row["index"], lang_text, row["question"], image, where))
    return rows


def _read_source(source: str) -> list[Row]:
    path = Path(source)
    if path.suffix == ".jsonl" or (path.suffix == ".json" and path.exists()):
        if not path.exists():
            raise PlastError(f"data file {path} does not exist")
        return _read_jsonl(path)
    if path.suffix == ".tsv" or source.endswith(".tsv"):
        return _read_tsv(source)
    raise PlastError(
        f"cannot read {source!r}: give a .jsonl file (id, lang, question[, image]) or VLMEvalKit "
        f".tsv files, one per language (lang from the name's '_xx' suffix, or 'zh=path.tsv')"
    )


def load_parallel_questions(sources, languages=None, pivot: str = "en", max_samples: int | None = None) -> ParallelQuestions:
    """Read, validate and align parallel questions. `languages` (without the pivot) defaults to
    every language present. Raises `PlastError` on anything unparallel."""
    sources = [str(sources)] if isinstance(sources, (str, os.PathLike)) else [str(s) for s in sources]
    if not sources:
        raise PlastError("no data given; pass a .jsonl file or per-language .tsv files")
    pivot = normalize_language(pivot, "pivot")
    texts, images, order = _read_questions(sources, pivot)
    wanted = _wanted_languages(texts, languages, pivot, sources)
    _check_parallel(texts, wanted, pivot, order)
    if max_samples is not None:
        if max_samples < 1:
            raise PlastError(f"max_samples must be positive, got {max_samples}")
        order = order[:max_samples]
    languages_out = [pivot, *wanted]
    return ParallelQuestions(
        pivot=pivot,
        languages=languages_out,
        ids=order,
        texts={lang: {qid: texts[lang][qid] for qid in order} for lang in languages_out},
        images={qid: images[qid] for qid in order if qid in images},
        sources=sources,
    )


def _read_questions(sources: list[str], pivot: str) -> tuple[dict[str, dict[str, str]], dict[str, str], list[str]]:
    """(language -> id -> text, id -> image, the pivot's ids in file order) of every source."""
    texts: dict[str, dict[str, str]] = {}
    images: dict[str, str] = {}
    order: list[str] = []
    for source in sources:
        for qid, lang_text, question, image, where in _read_source(source):
            lang = normalize_language(lang_text, where)
            if not question.strip():
                raise PlastError(f"{where}: question {qid!r} ({lang}) is empty")
            per_lang = texts.setdefault(lang, {})
            if qid in per_lang:
                raise PlastError(f"{where}: question id {qid!r} appears twice for language {lang!r}")
            per_lang[qid] = question
            if lang == pivot:
                order.append(qid)
            if image and (lang == pivot or qid not in images):
                images[qid] = image
    return texts, images, order


def _wanted_languages(texts: dict, languages, pivot: str, sources: list[str]) -> list[str]:
    """The languages to compare with the pivot: those asked for (all in the data), else every one present."""
    if not texts:
        raise PlastError(f"no questions found in {sources}")
    if pivot not in texts:
        raise PlastError(
            f"the pivot language {pivot!r} is missing from the data (found: {', '.join(sorted(texts))}); "
            f"PLAST compares every language with the pivot: add its questions or choose another --pivot"
        )
    if languages is None:
        wanted = sorted(lang for lang in texts if lang != pivot)
    else:
        wanted = [lang for lang in (normalize_language(code, "languages") for code in languages) if lang != pivot]
        absent = [lang for lang in wanted if lang not in texts]
        if absent:
            raise PlastError(
                f"language(s) {absent} requested but not in the data (found: {', '.join(sorted(texts))})"
            )
    if not wanted:
        raise PlastError(f"no language besides the pivot {pivot!r} in the data; PLAST needs at least one")
    return wanted


def _check_parallel(texts: dict, wanted: list[str], pivot: str, order: list[str]) -> None:
    """Every wanted language has exactly the pivot's question ids."""
    pivot_ids = set(order)
    for lang in wanted:
        ids = set(texts[lang])
        gaps = ((sorted(pivot_ids - ids), pivot, lang), (sorted(ids - pivot_ids), lang, pivot))
        parts = [f"{len(gap)} id(s) of {have!r} missing in {lack!r} (e.g. {gap[:5]})" for gap, have, lack in gaps if gap]
        if parts:
            raise PlastError(
                "data is not parallel: " + "; ".join(parts) + ". Every question id must exist in every language."
            )
