"""Small Parrot-layout TSVs (VLMEvalKit MCQ format) and a script of answers with known scores.

``write_parrot_dir(root)`` writes ``mmmb/mmmb_<code>.tsv`` and ``mmbench/mmbench_dev_<code>.tsv``
(``cn`` for Chinese) like the published ``AIDC-AI/Parrot-dataset``: base64 PNG images, images
reused by index back-reference, option texts ``None``/``NA`` (texts, not missing values),
rows with two or three options, and for MMBench rotated copies at ``index + k * 1,000,000``.

``scripted_answers()`` gives, per task and row index, a model answer written the way models
answer in that language (Arabic and Cyrillic letters, full-width letters, "A resposta é B",
option text ...). The scores it must produce, computed by hand, are in ``EXPECTED``.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

LANGS = ("en", "zh", "pt", "ar", "tr", "ru")
FILE_CODE = {"zh": "cn"}
COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image"]

# (index, options A-D ("" = absent; "None"/"NA" are option texts), answer, category, image)
# image: an RGB colour (a fresh picture) or an int (the index whose picture it reuses)
MMMB_ROWS = [
    (0, ("red", "green", "blue", "yellow"), "A", "culture", (255, 0, 0)),
    (1, ("one", "two", "three", ""), "C", "culture", 0),
    (2, ("Paris", "NA", "Rome", "Berlin"), "D", "science", (0, 0, 255)),
    (3, ("yes", "no", "", ""), "B", "science", (0, 255, 0)),
    (4, ("cat", "dog", "bird", "fish"), "A", "science", 3),
]
# row index -> (picked letter, answer style); None = an answer naming two options
MMMB_SCRIPT = {0: "A", 1: "C", 2: "text:A", 3: "B", 4: None}
# acc: rows 0, 1, 3 right; 2 (option text of A) and 4 (two letters) wrong
MMMB_EXPECTED = {"acc": 3 / 5, "by_category": {"culture": 1.0, "science": 1 / 3}}

MMBENCH_ROWS = [
    (0, ("cube", "sphere", "cone", "torus"), "A", "attribute", (200, 10, 10)),
    (1000000, ("torus", "cube", "sphere", "cone"), "B", "attribute", 0),
    (2000000, ("cone", "torus", "cube", "sphere"), "C", "attribute", 0),
    (3000000, ("sphere", "cone", "torus", "cube"), "D", "attribute", 0),
    (1, ("left", "right", "above", ""), "B", "relation", (10, 200, 10)),
    (1000001, ("above", "left", "right", ""), "C", "relation", 1),
    (2000001, ("right", "above", "left", ""), "A", "relation", 1),
    (2, ("true", "false", "None", ""), "A", "attribute", (10, 10, 200)),
    (1000002, ("false", "true", "None", ""), "B", "attribute", 2),
]
MMBENCH_SCRIPT = {0: "A", 1000000: "B", 2000000: "C", 3000000: "text:D",
                  1: "B", 1000001: "A", 2000001: "A",
                  2: "B", 1000002: "B"}
# originals 0 right, 1 right, 2 wrong -> acc 2/3; circular: only question 0 fully right -> 1/3
MMBENCH_EXPECTED = {
    "acc": 2 / 3,
    "circular_acc": 1 / 3,
    "by_category": {"acc": {"attribute": 1 / 2, "relation": 1.0},
                    "circular_acc": {"attribute": 1 / 2, "relation": 0.0}},
}

# VLMEvalKit's exact matcher (letter token after splitting on punctuation and spaces, else a unique
# option text) on the same answers, by hand. MMMB (answers A C D B A): en and tr read rows 0 1 3;
# pt reads "A resposta é A" (only token A) and "C", but "A resposta é B" has two letter tokens;
# zh ("答案是A", full-width), ar (Arabic letters) and ru (Cyrillic) read nothing right.
# MMBench originals (A B A): en, pt, tr right on 0 and 1. Circular: en group 0 (its copies "(B)",
# "C. That one.", option text "cube"); pt group 0 fails on "... é a letra C." (tokens A and C),
# tr on "C'dir" (no token C).
EXACT_EXPECTED = {
    "mmmb": {"en": 3 / 5, "zh": 0.0, "pt": 2 / 5, "ar": 0.0, "tr": 3 / 5, "ru": 0.0},
    "mmbench_ml": {"en": (2 / 3, 1 / 3), "zh": (0.0, 0.0), "pt": (2 / 3, 0.0), "ar": (0.0, 0.0),
                   "tr": (2 / 3, 0.0), "ru": (0.0, 0.0)},
}

ARABIC = {"A": "أ", "B": "ب", "C": "ج", "D": "د"}
CYRILLIC = {"A": "А", "B": "В", "C": "С", "D": "Д"}
FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "ABCD"}


def styled(lang: str, letter: str, k: int) -> str:
    """An answer naming `letter` the way a model might in `lang` (style varies with k)."""
    styles = {
        "en": [f"{letter}", f"The answer is ({letter}).", f"{letter}. That one."],
        "zh": [f"答案是{letter}", f"{FULLWIDTH[letter]}", f"选项（{FULLWIDTH[letter]}）"],
        "pt": [f"A resposta é {letter}", f"{letter}", f"A resposta correta é a letra {letter}."],
        "ar": [ARABIC[letter], f"الإجابة هي {ARABIC[letter]}", f"الإجابة: ({letter})"],
        "tr": [f"Cevap: {letter}", f"{letter} şıkkı", f"Doğru cevap {letter}'dir."],
        "ru": [CYRILLIC[letter], f"Ответ: {CYRILLIC[letter]}", f"Правильный ответ — {letter}."],
    }[lang]
    return styles[k % len(styles)]


def _png(rgb) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), rgb).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def tsv_rows(rows, lang: str, hint_every: int = 3):
    out = []
    for n, (index, options, answer, category, image) in enumerate(rows):
        out.append({
            "index": index,
            # Chinese questions carry CJK ideographs (VLMEvalKit's protocol switches its instruction on them)
            "question": f"[{lang}] {'问题' if lang == 'zh' else 'question'} {index % 1000000}?",
            "hint": f"[{lang}] hint {index}" if n % hint_every == 2 else "",
            "A": options[0], "B": options[1], "C": options[2], "D": options[3],
            "answer": answer,
            "category": category,
            "l2-category": f"{category}-l2",
            "image": str(image) if isinstance(image, int) else _png(image),
        })
    return out


def write_tsv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(columns)]
    for r in rows:
        lines.append("\t".join(str(r.get(c, "")) for c in columns))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def md5_pins(root, langs=LANGS) -> str:
    """``PLAST_PARROT_MD5`` value pinning the fixture files of `root` (they are not the published ones)."""
    from plast_plugin.eval.parrot_data import file_md5

    root = Path(root)
    pins = []
    for lang in langs:
        code = FILE_CODE.get(lang, lang)
        pins.append(f"mmmb_{lang}={file_md5(root / 'mmmb' / f'mmmb_{code}.tsv')}")
        pins.append(f"mmbench_ml_{lang}={file_md5(root / 'mmbench' / f'mmbench_dev_{code}.tsv')}")
    return ",".join(pins)


def write_parrot_dir(root, langs=LANGS) -> Path:
    root = Path(root)
    for lang in langs:
        code = FILE_CODE.get(lang, lang)
        write_tsv(root / "mmmb" / f"mmmb_{code}.tsv", tsv_rows(MMMB_ROWS, lang))
        write_tsv(root / "mmbench" / f"mmbench_dev_{code}.tsv", tsv_rows(MMBENCH_ROWS, lang))
    return root


def _answer(lang: str, rows, script, index: int, k: int) -> str:
    pick = script[index]
    if pick is None:
        return {"en": "A or B", "zh": "A和B", "pt": "A ou B", "ar": "أ أو ب",
                "tr": "A veya B", "ru": "А или Б"}[lang]
    if pick.startswith("text:"):
        letter = pick[5:]
        options = next(r[1] for r in rows if r[0] == index)
        return options["ABCD".index(letter)]
    return styled(lang, pick, k)


def scripted_answers(langs=LANGS) -> dict:
    """{task: {str(index): answer}} for the scripted lmms-eval model."""
    out = {}
    for lang in langs:
        out[f"mmmb_{lang}"] = {str(r[0]): _answer(lang, MMMB_ROWS, MMMB_SCRIPT, r[0], k)
                               for k, r in enumerate(MMMB_ROWS)}
        out[f"mmbench_ml_{lang}"] = {str(r[0]): _answer(lang, MMBENCH_ROWS, MMBENCH_SCRIPT, r[0], k)
                                     for k, r in enumerate(MMBENCH_ROWS)}
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys

    d = write_parrot_dir(sys.argv[1])
    (d / "answers.json").write_text(json.dumps(scripted_answers(), ensure_ascii=False, indent=1))
    print(d)
