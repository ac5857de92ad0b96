#!/usr/bin/env python
"""The demo's offline multiple-choice set: held-out question translation, in Parrot's TSV layout.

    python scripts/demo_mc_set.py --heldout runs/demo/data/questions_heldout.jsonl \
        --exclude .cache/demo/questions_train.jsonl --exclude runs/demo/data/questions_train.jsonl \
        --languages en,zh,ar,ru --out runs/demo/eval/mc_set

NOT Parrot's benchmark. It measures exactly what PLAST trains in the demo, on questions the demo
never selected layers or trained on: for every held-out question and non-English language, the
question in that language is the hint, the question is "Which English sentence is the translation
of this question?", and the four options are English question sentences: its true translation and
the translations of three other held-out questions (chance 25%). English is a control (the English
question is the hint; the right option is the same sentence): it tells whether the model can answer
a multiple-choice prompt at all. The options and the right letter of a question are the same in
every language, so the languages are paired. Each question also appears three more times with its
options rotated (index + k * 1,000,000, k = 1..3), so lmms-eval's circular score (right only if all
four are right) runs on it too. Image: one blank white image for every row (the demo's vision tower
is random and untrained; the rows reference the first row's image, VLMEvalKit's convention).

The files are served by the plugin's own `mmbench_ml_<lang>` tasks through PLAST_PARROT_DIR with
their md5s pinned explicitly (`plast eval --parrot-md5 "$(cat OUT/parrot_md5.txt)"`), so scores of
it carry `md5_check: user pin`, a question count far from the published 1164, `plast compare`'s
warning that the data are not the published files, and the category
"plast demo translation choice (not MMBench)". Never report them as MMBench numbers.

Refused with a message naming the file: a held-out id or a held-out (language, text) pair that
also appears in an --exclude file (the data `plast select` probed and the data training used),
held-out data that is not parallel, fewer than four distinct English sentences.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from plast_plugin.errors import PlastError  # noqa: E402
from plast_plugin.eval.parrot_data import parrot_filename, parrot_language  # noqa: E402
from plast_plugin.eval.scoring import CIRCULAR_OFFSET  # noqa: E402
from plast_plugin.data.parallel_data import load_parallel_questions  # noqa: E402

BENCHMARK = "mmbench_ml"  # the plugin's circular-scored task family serves the files
LABEL = "plast demo translation choice (not MMBench)"
QUESTION = "Which English sentence is the translation of this question?"
CONTROL_QUESTION = "Which English sentence is this question?"
LETTERS = "ABCD"
ROTATIONS = len(LETTERS)  # the original order and three rotations
CHANCE = 1 / len(LETTERS)
BLANK_IMAGE_SIZE = 64
COLUMNS = ("index", "question", "hint", *LETTERS, "answer", "category", "l2-category", "image")
MANIFEST = "mc_set.json"
PIN_FILE = "parrot_md5.txt"  # the pins alone, for `plast eval --parrot-md5 "$(cat .../parrot_md5.txt)"`


class MCSetError(PlastError):
    """The set cannot be built honestly; the message names the file and the fix."""


def blank_image_base64() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (BLANK_IMAGE_SIZE, BLANK_IMAGE_SIZE), (255, 255, 255)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _excluded(paths: list[Path]) -> tuple[dict[str, Path], dict[tuple[str, str], Path]]:
    """Ids and (lang, text) pairs of the probe / training files, each with the file it came from."""
    ids: dict[str, Path] = {}
    texts: dict[tuple[str, str], Path] = {}
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise MCSetError(f"--exclude {path}: cannot read it ({exc})") from None
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                qid, lang, text = str(row["id"]), str(row["lang"]), str(row["question"]).strip()
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise MCSetError(f"--exclude {path}: line {n} is not a JSON object with id, lang, question "
                                 f"({exc})") from None
            ids.setdefault(qid, Path(path))
            texts.setdefault((lang, text), Path(path))
    return ids, texts


def _option_order(qid: str, english: dict[str, str], seed: str) -> tuple[list[str], int]:
    """Four distinct English sentences (the true one and three other held-out questions') in a
    fixed random order, and the position of the true one; the same in every language."""
    rng = random.Random(f"{seed}:{qid}")
    true_text = english[qid]
    pool = sorted({text for other, text in english.items() if other != qid and text != true_text})
    if len(pool) < len(LETTERS) - 1:
        raise MCSetError(f"question {qid}: only {len(pool)} other distinct English sentence(s) among the held-out "
                         f"questions; four options need at least {len(LETTERS)} held-out questions")
    options = rng.sample(pool, len(LETTERS) - 1)
    answer = rng.randrange(len(LETTERS))
    options.insert(answer, true_text)
    return options, answer


def rotate(options: list[str], answer: int, k: int) -> tuple[list[str], int]:
    """Options moved k places to the right (circularly), and where the right one lands."""
    n = len(options)
    return [options[(position - k) % n] for position in range(n)], (answer + k) % n


def build_rows(heldout, languages: list[str], seed: str) -> dict[str, list[dict]]:
    """language -> TSV rows (dicts over COLUMNS); rotated copies after the originals."""
    english = {qid: heldout.question(qid, "en") for qid in heldout.ids}
    image = blank_image_base64()
    orders = {qid: _option_order(qid, english, seed) for qid in heldout.ids}
    out: dict[str, list[dict]] = {}
    for lang in languages:
        rows = []
        for k in range(ROTATIONS):
            for index, qid in enumerate(heldout.ids):
                options, answer = rotate(*orders[qid], k)
                rows.append({
                    "index": index + k * CIRCULAR_OFFSET,
                    "question": CONTROL_QUESTION if lang == "en" else QUESTION,
                    "hint": heldout.question(qid, lang),
                    **dict(zip(LETTERS, options)),
                    "answer": LETTERS[answer],
                    "category": LABEL,
                    "l2-category": qid,
                    # every row shows the same blank image: the first row holds it, the others name its index
                    "image": image if not rows else "0",
                })
        out[lang] = rows
    return out


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_tsv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def build_mc_set(heldout_path, exclude: list, languages: list[str], out_dir, seed: str = "plast-demo-mc-v1",
                 max_questions: int | None = None) -> dict:
    """Write the TSVs (Parrot's names, under `out_dir`) and `out_dir/mc_set.json`; return the manifest."""
    try:
        languages = list(dict.fromkeys(parrot_language(lang) for lang in languages))
    except PlastError as exc:
        raise MCSetError(f"--languages: {exc}") from None
    if "en" not in languages or len(languages) < 2:
        raise MCSetError(f"--languages {','.join(languages)}: needs en (the options' language) and at least one other")
    heldout = load_parallel_questions([str(heldout_path)], [lang for lang in languages if lang != "en"], "en",
                                      max_samples=max_questions)
    ids, texts = _excluded([Path(p) for p in exclude])
    for qid in heldout.ids:
        if qid in ids:
            raise MCSetError(f"{heldout_path}: held-out question {qid} also appears in {ids[qid]} (probed or trained "
                             f"on): the demo's split is broken; rebuild it (scripts/demo_assets.py --force)")
        for lang in heldout.languages:
            text = heldout.question(qid, lang).strip()
            if (lang, text) in texts:
                raise MCSetError(f"{heldout_path}: held-out question {qid} ({lang}) has the same text as a question "
                                 f"in {texts[(lang, text)]}: {text!r}; a model trained on it has seen the answer")
    out_dir = Path(out_dir)
    rows = build_rows(heldout, languages, seed)
    files, pins = {}, {}
    for lang in languages:
        path = out_dir / parrot_filename(BENCHMARK, lang)
        write_tsv(path, rows[lang])
        files[lang] = str(path)
        pins[f"{BENCHMARK}_{lang}"] = _md5(path)
    manifest = {
        "label": LABEL,
        "what": "for each held-out question: which of four English sentences translates it (en: is it); "
                f"the true one and three other held-out questions' English; chance {CHANCE:.0%}",
        "not_parrot": "served by the mmbench_ml_<lang> tasks through PLAST_PARROT_DIR with user-pinned md5s; "
                      "these are not MMBench or MMMB scores",
        "question": QUESTION, "control_question_en": CONTROL_QUESTION,
        "image": f"one blank white {BLANK_IMAGE_SIZE}x{BLANK_IMAGE_SIZE} PNG for every row",
        "languages": languages, "questions_per_language": len(heldout.ids),
        "rows_per_language": len(heldout.ids) * ROTATIONS, "rotations": ROTATIONS, "chance": CHANCE,
        "seed": seed, "heldout": str(heldout_path), "question_ids": list(heldout.ids),
        "excluded_files": [str(p) for p in exclude], "excluded_ids": len(ids),
        "files": files, "md5": pins,
        "parrot_md5_spec": ",".join(f"{task}={md5}" for task, md5 in pins.items()),
    }
    for name, text in ((PIN_FILE, manifest["parrot_md5_spec"] + "\n"),
                       (MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out_dir / name)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heldout", required=True, help="held-out parallel questions (JSONL: id, lang, question)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="a JSONL file of questions that were probed or trained on (repeatable): none of its "
                        "ids or texts may be in the set")
    parser.add_argument("--languages", default="en,zh,ar,ru", help="comma list, must include en (default en,zh,ar,ru)")
    parser.add_argument("--max-questions", type=int, default=None, help="use only the first N held-out questions")
    parser.add_argument("--out", required=True, help="output folder (becomes PLAST_PARROT_DIR)")
    args = parser.parse_args(argv)
    if not args.exclude:
        parser.error("give the probe and training files with --exclude: the set must not contain them")
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    try:
        manifest = build_mc_set(args.heldout, args.exclude, languages, args.out, max_questions=args.max_questions)
    except (PlastError, ValueError) as exc:
        print(f"demo_mc_set: error: {exc}", file=sys.stderr)
        return 1
    print(f"   {manifest['label']}: {manifest['questions_per_language']} held-out questions x {ROTATIONS} rotations "
          f"in {', '.join(languages)} (chance {CHANCE:.0%}), none of the {manifest['excluded_ids']} probed/trained "
          f"ids; {Path(args.out) / MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
