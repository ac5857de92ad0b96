"""Reading and checking Parrot's MMMB and multilingual MMBench TSVs (VLMEvalKit MCQ layout).

The files (``mmmb/mmmb_<code>.tsv``, ``mmbench/mmbench_dev_<code>.tsv`` in the Hugging Face dataset
``AIDC-AI/Parrot-dataset``, ``<code>`` the language table's ``parrot_file_code``) come from
``$PLAST_PARROT_DIR`` (that layout, or flat) or the hub cache, and are read as text by
:mod:`plast_plugin.data.vlmevalkit_tsv`.

Data identity (the published LLaVA-1.5 rows were computed on specific files): a download is
taken from revision :data:`PARROT_REVISION` (``$PLAST_PARROT_REVISION`` overrides), and every
file, downloaded or from ``$PLAST_PARROT_DIR``, must have the md5 VLMEvalKit lists for it
(:data:`PUBLISHED_MD5`); a mismatch is refused unless ``$PLAST_PARROT_MD5`` says otherwise
(``any``, or ``<task>=<md5>,...`` to pin other files). Row counts are checked against the
published 1710 (MMMB) and 1164 questions (MMBench-dev) with a warning.

Every problem is a :class:`PlastError` naming the file and row; docs/evaluation.md lists the checks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.eval.scoring import CIRCULAR_BENCHMARKS, CIRCULAR_OFFSET
from plast_plugin.data.languages import PARROT_LANGUAGES, language_row, normalize_language
from plast_plugin.data.vlmevalkit_tsv import ImageReferenceError, read_vlmevalkit_tsv

log = logging.getLogger(__name__)

PARROT_REPO = "AIDC-AI/Parrot-dataset"
PARROT_DIR_ENV = "PLAST_PARROT_DIR"
# benchmark name used by the tasks -> (folder in the repo, file prefix)
BENCHMARKS = {
    "mmmb": ("mmmb", "mmmb_"),
    "mmbench_ml": ("mmbench", "mmbench_dev_"),
}
REQUIRED_COLUMNS = ("index", "question", "answer", "image", "A", "B")

# The revision downloads come from. The dataset's `main` has moved ("updata mmmb/mmbench"
# commits); the md5 check below is what pins the content, whatever the revision.
PARROT_REVISION = "main"
PARROT_REVISION_ENV = "PLAST_PARROT_REVISION"
PARROT_MD5_ENV = "PLAST_PARROT_MD5"
# VLMEvalKit's md5 of each file (its dataset table for MMMB / MTL_MMBench_DEV).
PUBLISHED_MD5 = {
    "mmmb_ar": "f3a18b6385f1d9701840aa42de27aead",
    "mmmb_zh": "13ed82fa89730037292fcaa27f08f430",
    "mmmb_en": "1cd781a71ec5a2983c090b84105d6a01",
    "mmmb_pt": "548ea2b3bb2da991790386f0015d30d1",
    "mmmb_ru": "ce1cc8a0533425ab0d86b326ebfc2984",
    "mmmb_tr": "0733739d43090327975294292bc5cd67",
    "mmbench_ml_ar": "4271b4a0d0200e1a86380a878e0d64a4",
    "mmbench_ml_zh": "2ed5135326fed02c8e51ea50dda8222f",
    "mmbench_ml_en": "d9ab776fc018b3d45785e9a5c23431c2",
    "mmbench_ml_pt": "4ddfbcd27ef12444b908c03831cd0295",
    "mmbench_ml_tr": "4fab39d501389d3d6cc90264bb708f11",
    "mmbench_ml_ru": "5ba1171ff2e68f80637bf78349e402a5",
}
# Questions per language the published percentages fit: MMMB rows, MMBench-dev circular groups.
PUBLISHED_QUESTIONS = {"mmmb": 1710, "mmbench_ml": 1164}


def parrot_language(language: str) -> str:
    """Normalise `language` (``cn`` -> ``zh``) and check that Parrot has it."""
    try:
        code = normalize_language(language)
    except PlastError as exc:
        raise PlastError(f"{exc}; Parrot's benchmarks cover {', '.join(PARROT_LANGUAGES)}") from None
    if code not in PARROT_LANGUAGES:
        raise PlastError(
            f"Parrot's benchmarks have no language {language!r}; use one of {', '.join(PARROT_LANGUAGES)}")
    return code


def _benchmark(benchmark: str) -> tuple[str, str]:
    if benchmark not in BENCHMARKS:
        raise PlastError(f"unknown benchmark {benchmark!r}; use one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[benchmark]


def parrot_filename(benchmark: str, language: str) -> str:
    """Path of the TSV inside the Parrot repo, e.g. ``mmmb/mmmb_cn.tsv`` for (mmmb, zh)."""
    folder, prefix = _benchmark(benchmark)
    return f"{folder}/{prefix}{language_row(parrot_language(language)).parrot_file_code}.tsv"


def parrot_revision() -> str:
    return os.environ.get(PARROT_REVISION_ENV, "").strip() or PARROT_REVISION


def file_md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DataIdentity:
    """What was evaluated: recorded with the scores."""

    task: str
    file: str
    md5: str
    check: str  # "published" (VLMEvalKit's md5), "user pin" (PLAST_PARROT_MD5) or "unchecked" (any)
    expected_md5: str | None  # the published file's md5, whatever was accepted instead
    pinned_md5: str | None = None  # the user's pin (PLAST_PARROT_MD5=<task>=<md5>), if any

    @property
    def published(self) -> bool:
        return self.md5 == self.expected_md5

    def as_dict(self) -> dict:
        return {"task": self.task, "file": self.file, "md5": self.md5, "md5_check": self.check,
                "expected_md5": self.expected_md5, "pinned_md5": self.pinned_md5,
                "published_file": self.published}


def _md5_setting(environ=None) -> tuple[bool, dict[str, str]]:
    """(accept any file, {task: md5} user pins) from ``$PLAST_PARROT_MD5``."""
    raw = (os.environ if environ is None else environ).get(PARROT_MD5_ENV, "").strip()
    if not raw:
        return False, {}
    if raw.lower() == "any":
        return True, {}
    pins = {}
    for item in raw.split(","):
        task, sep, md5 = item.strip().partition("=")
        task, md5 = task.strip(), md5.strip().lower()
        if not sep or task not in PUBLISHED_MD5 or len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
            raise PlastError(
                f"{PARROT_MD5_ENV}={raw!r}: {item.strip()!r} is not <task>=<32 hex md5> with task one of "
                f"{', '.join(PUBLISHED_MD5)}; or set it to 'any' to accept any file (recorded, not checked)")
        pins[task] = md5
    return False, pins


def check_identity(path, benchmark: str, language: str, environ=None) -> DataIdentity:
    """The file's md5 against VLMEvalKit's (or the user's pin); a mismatch is refused."""
    task = f"{benchmark}_{parrot_language(language)}"
    accept_any, pins = _md5_setting(environ)
    md5 = file_md5(path)
    if accept_any:
        log.warning("%s: %s md5 %s is not checked (%s=any); scores may not be comparable with published ones",
                    task, path, md5, PARROT_MD5_ENV)
        return DataIdentity(task, str(path), md5, "unchecked", PUBLISHED_MD5.get(task))
    expected, check = (pins[task], "user pin") if task in pins else (PUBLISHED_MD5[task], "published")
    if md5 != expected:
        raise PlastError(
            f"{path}: md5 {md5} differs from the {'pinned' if check == 'user pin' else 'published (VLMEvalKit)'} "
            f"md5 {expected} of {task}: this is not the file the published scores were computed on (the "
            f"dataset's main branch has changed, or the copy is damaged). Download it again, or accept this "
            f"file explicitly: {PARROT_MD5_ENV}={task}={md5} (plast eval --parrot-md5 ...), or "
            f"{PARROT_MD5_ENV}=any")
    return DataIdentity(task, str(path), md5, check, PUBLISHED_MD5[task], expected if check == "user pin" else None)


def resolve_parrot_file(benchmark: str, language: str) -> Path:
    """Local path of the TSV: from ``$PLAST_PARROT_DIR`` if set, else the Hugging Face hub."""
    rel = parrot_filename(benchmark, language)
    local = os.environ.get(PARROT_DIR_ENV)
    if local:
        root = Path(local).expanduser()
        for candidate in (root / rel, root / Path(rel).name):
            if candidate.is_file():
                return candidate
        raise PlastError(
            f"{PARROT_DIR_ENV}={local} holds neither {root / rel} nor {root / Path(rel).name}; "
            f"download {rel} from the dataset repo {PARROT_REPO} or unset {PARROT_DIR_ENV}")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(PARROT_REPO, rel, repo_type="dataset", revision=parrot_revision()))
    except Exception as exc:  # network, offline mode, gated repo ...
        raise PlastError(
            f"could not fetch {rel} from the Hugging Face dataset {PARROT_REPO} ({exc}); "
            f"download the TSVs yourself and set {PARROT_DIR_ENV} to their directory") from exc


def _decode_image(b64: str, where: str) -> bytes:
    try:
        raw = base64.b64decode("".join(b64.split()), validate=True)
    except ValueError as exc:  # binascii.Error is one
        raise PlastError(f"{where}: image is not valid base64 ({exc})") from None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:  # reads the header only
            img.size
    except Exception as exc:
        raise PlastError(f"{where}: image decodes from base64 but is not an image ({exc})") from None
    return raw


def read_parrot_tsv(path, language: str, benchmark: str) -> list[dict]:
    """Rows of one Parrot TSV as checked docs, image back-references resolved.

    Each doc: ``index`` (int), ``question``, ``hint`` ("" if none), one key per option letter
    column (text, or None where the row has no such option), ``options`` (the letters present,
    e.g. ``"ABC"``), ``answer``, ``answerable`` (False when the answer's option cell is empty:
    the row is kept and scored wrong, as VLMEvalKit does), ``category``, ``l2_category``,
    ``image`` (raw image bytes), ``language``, ``benchmark``, ``source`` (the file) and ``row``
    (1-based data row).
    """
    path = Path(path)
    language = parrot_language(language)
    _benchmark(benchmark)
    table = read_vlmevalkit_tsv(path)
    columns = table.columns
    missing = table.missing_columns(REQUIRED_COLUMNS)
    if missing:
        raise PlastError(
            f"{path}: missing column(s) {', '.join(missing)}; a VLMEvalKit MCQ TSV needs "
            f"{', '.join(REQUIRED_COLUMNS)} (+ C, D, hint, category optional); found {', '.join(columns)}")
    letters = [c for c in columns if len(c) == 1 and "A" <= c <= "Z"]
    indices = _row_indices(path, table.rows)
    wheres = [f"{path}: row {pos + 1} (index {index})" for pos, index in enumerate(indices)]
    images: dict[int, bytes] = {}  # row -> its decoded image: an image rows share is decoded once
    docs = []
    for pos, rec in enumerate(table.rows):
        fields = _checked_row(rec, wheres[pos], letters)
        source = _image_source(table, pos, wheres[pos])
        if source not in images:
            images[source] = _decode_image(table.rows[source]["image"], wheres[source])
        docs.append({"index": indices[pos], **fields, "image": images[source], "language": language,
                     "benchmark": benchmark, "source": str(path), "row": pos + 1})
    if not docs:
        raise PlastError(f"{path}: no rows")
    return docs


def _row_indices(path: Path, rows: list[dict]) -> list[int]:
    """Each row's ``index`` as an integer; refused when one is not an integer or repeats."""
    row_of: dict[int, int] = {}  # index -> row number, in row order
    for n, rec in enumerate(rows, start=1):
        try:
            idx = int(rec["index"].strip())
        except ValueError:
            raise PlastError(f"{path}: row {n}: index {rec['index']!r} is not an integer") from None
        if idx in row_of:
            raise PlastError(f"{path}: row {n}: index {idx} repeats row {row_of[idx]}")
        row_of[idx] = n
    return list(row_of)


_REFERENCE_PROBLEMS = {"no such row": "which no row has", "empty image": "whose image is empty",
                       "a reference": "whose image is itself a reference"}


def _image_source(table, pos: int, where: str) -> int:
    """The row holding row `pos`'s image, its back-reference followed; an unusable cell is refused."""
    try:
        source = table.image_row(pos)
    except ImageReferenceError as err:
        if err.problem == "not an index":
            raise PlastError(
                f"{where}: image {err.reference!r} is too short for base64 and not a row index") from None
        raise PlastError(
            f"{where}: image refers to index {err.reference}, {_REFERENCE_PROBLEMS[err.problem]}") from None
    if source is None:
        raise PlastError(f"{where}: empty image")
    return source


def _checked_row(rec: dict, where: str, letters: list[str]) -> dict:
    """A row's question, hint, options and answer, checked; ``where`` names the row in errors."""
    question = rec["question"]
    if not question.strip():
        raise PlastError(f"{where}: empty question")
    # cells are text: "None" and "NA" are options; only a blank cell is an absent one
    options = {c: (rec[c] if rec[c].strip() else None) for c in letters}
    present = "".join(c for c in letters if options[c] is not None)
    if len(present) < 2:
        raise PlastError(f"{where}: fewer than two options ({present or 'none'})")
    answer = rec["answer"].strip().upper()
    if len(answer) != 1 or answer not in letters:
        what = "is empty" if not answer else f"{rec['answer'].strip()!r} is not one option letter"
        raise PlastError(
            f"{where}: answer {what}; the answer cell must hold exactly one of the option letters "
            f"{', '.join(letters)} (the row's options: {', '.join(present)}); fix or drop the row")
    answerable = answer in present
    if not answerable:
        # VLMEvalKit keeps such a row (no model can pick an option that is not shown) and scores
        # it wrong; dropping it would change the denominator of the published percentages.
        log.warning("%s: the correct option %s has no text; the row is kept and scores wrong "
                    "(as in VLMEvalKit)", where, answer)
    return {"question": question, "hint": rec.get("hint", ""), **options, "options": present,
            "answer": answer, "answerable": answerable, "category": rec.get("category", ""),
            "l2_category": rec.get("l2-category", rec.get("l2_category", ""))}


@dataclass
class ParrotTask:
    """One benchmark language, read and checked: its docs, data identity and count checks."""

    docs: list[dict]
    identity: DataIdentity
    revision: str | None  # the hub revision asked for; None for a local copy
    questions: int  # MMMB rows, or MMBench circular groups
    expected_questions: int
    rotated_copies: int  # MMBench rows with index >= 1,000,000
    warnings: list[str]

    @property
    def single_pass(self) -> bool:
        """A circular benchmark whose file has no rotated copies: circular_acc is plain accuracy."""
        return self.docs[0]["benchmark"] in CIRCULAR_BENCHMARKS and self.rotated_copies == 0

    def as_dict(self) -> dict:
        return {**self.identity.as_dict(), "revision": self.revision, "rows": len(self.docs),
                "questions": self.questions, "expected_questions": self.expected_questions,
                "rotated_copies": self.rotated_copies, "single_pass": self.single_pass,
                "unanswerable_rows": [d["row"] for d in self.docs if not d["answerable"]],
                "warnings": list(self.warnings)}


def load_parrot_task(benchmark: str, language: str) -> ParrotTask:
    """Resolve (``$PLAST_PARROT_DIR`` or the hub), check the md5, read and count one TSV."""
    path = resolve_parrot_file(benchmark, language)
    identity = check_identity(path, benchmark, language)
    docs = read_parrot_tsv(path, language, benchmark)
    circular = benchmark in CIRCULAR_BENCHMARKS
    copies = sum(d["index"] >= CIRCULAR_OFFSET for d in docs) if circular else 0
    questions = len({d["index"] % CIRCULAR_OFFSET for d in docs}) if circular else len(docs)
    expected = PUBLISHED_QUESTIONS[benchmark]
    warnings = []
    if identity.check == "unchecked":
        warnings.append(f"md5 {identity.md5} not checked ({PARROT_MD5_ENV}=any): the data may differ from the "
                        "published benchmark")
    if identity.check == "user pin" and not identity.published:
        warnings.append(f"not the published file: md5 {identity.md5} (accepted by {PARROT_MD5_ENV}) differs from the "
                        f"published (VLMEvalKit) md5 {identity.expected_md5}; scores are on other data under "
                        "the task's name, not comparable with published ones")
    if questions != expected:
        warnings.append(f"{path} has {questions} {'questions (circular groups)' if circular else 'rows'}, the "
                        f"published scores are over {expected}: percentages are not comparable with them")
    if circular and copies == 0:
        warnings.append(f"{path} holds no rotated copies (index >= {CIRCULAR_OFFSET}): circular_acc is "
                        "SINGLE-PASS here (equal to acc), not MMBench's circular evaluation")
    unanswerable = [d["row"] for d in docs if not d["answerable"]]
    if unanswerable:
        warnings.append(f"{path}: {len(unanswerable)} row(s) whose correct option has no text, kept and scored "
                        f"wrong as in VLMEvalKit: rows {', '.join(map(str, unanswerable[:20]))}"
                        + (" ..." if len(unanswerable) > 20 else ""))
    revision = None if os.environ.get(PARROT_DIR_ENV) else parrot_revision()
    return ParrotTask(docs, identity, revision, questions, expected, copies, warnings)


def load_parrot_docs(benchmark: str, language: str) -> list[dict]:
    """The checked docs of :func:`load_parrot_task`."""
    return load_parrot_task(benchmark, language).docs
