"""Question-translation training data for PLAST, in LLaVA's conversation JSON format.

Each non-pivot question becomes one conversation: (optional image) + the template filled with
the question's language -> the pivot (English) question. LLaVA puts the loss on the answer only.

    [{"id": "q7-zh", "image": "/abs/q7.png",
      "conversations": [{"from": "human", "value": "<image>\\nTranslate the following question
                         from Chinese to English.\\n图片中..."},
                        {"from": "gpt", "value": "What is in the picture?"}]}, ...]

Input is what `plast select` reads (``load_parallel_questions``), so unparallel data is refused
there with a message naming the file and the question.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .languages import language_name
from .parallel_data import ParallelQuestions

DEFAULT_TEMPLATE = "Translate the following question from {language} to {target}.\n{question}"
IMAGE_TOKEN = "<image>"  # LLaVA's DEFAULT_IMAGE_TOKEN
TEMPLATE_FIELDS = ("language", "target", "question", "lang", "target_lang")


def check_template(template: str) -> str:
    """The template must contain {question}; only the documented placeholders are allowed."""
    import string

    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(names - set(TEMPLATE_FIELDS))
    if unknown or "question" not in names:
        raise ValueError(
            f"template {template!r}: placeholders must be among {{{'}, {'.join(TEMPLATE_FIELDS)}}} "
            f"and include {{question}}" + (f"; unknown: {unknown}" if unknown else "")
        )
    return template


@dataclass
class TranslationData:
    records: list[dict]
    counts: dict[str, int]  # per source language
    with_images: int = 0
    image_files: list[str] = field(default_factory=list)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path


def _image_file(reference: str, image_dir: Path | None, qid: str, written: dict) -> str:
    """A path LLaVA can open. Files stay (absolute); base64 images are written once to image_dir.
    Files and base64 are told apart as the loader does (`load_image`), so both read an image the same way."""
    from .parallel_data import load_image

    if os.path.isfile(reference):
        return str(Path(reference).resolve())
    if reference in written:
        return written[reference]
    if image_dir is None:
        raise ValueError("the data has inline (base64) images: pass an image directory to write them to")
    image = load_image(reference)  # decodes, or names the image it cannot decode
    image_dir.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in qid)[:40]
    name = f"{safe}-{hashlib.sha256(reference.encode()).hexdigest()[:10]}.png"
    image.save(image_dir / name)
    written[reference] = str((image_dir / name).resolve())
    return written[reference]


def build_translation_data(questions: ParallelQuestions, *, template: str = DEFAULT_TEMPLATE,
                           images: str = "auto", image_dir=None, progress: bool = False) -> TranslationData:
    """Conversations for every (question, non-pivot language). ``images``: 'auto' (use them when the
    data has them), 'on' (require them), 'off' (text only)."""
    check_template(template)
    if images not in ("auto", "on", "off"):
        raise ValueError(f"images={images!r}: use auto, on or off")
    if images == "on" and len(questions.images) < len(questions.ids):
        raise ValueError(f"images='on' but only {len(questions.images)} of {len(questions.ids)} questions have one")
    use_images = images != "off"
    image_dir = Path(image_dir) if image_dir else None
    target = language_name(questions.pivot)
    records, counts, written = [], Counter(), {}
    items = [(qid, lang) for qid in questions.ids for lang in questions.other_languages]
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="build-data", unit="pair")
    with_images = 0
    for qid, lang in items:
        prompt = template.format(language=language_name(lang), target=target, lang=lang,
                                 target_lang=questions.pivot, question=questions.question(qid, lang))
        record = {"id": f"{qid}-{lang}"}
        reference = questions.image(qid) if use_images else None
        if reference:
            record["image"] = _image_file(reference, image_dir, qid, written)
            prompt = f"{IMAGE_TOKEN}\n{prompt}"
            with_images += 1
        record["conversations"] = [
            {"from": "human", "value": prompt},
            {"from": "gpt", "value": questions.question(qid, questions.pivot)},
        ]
        records.append(record)
        counts[lang] += 1
    return TranslationData(records, {lang: counts[lang] for lang in questions.other_languages}, with_images,
                           sorted(set(written.values())))
