"""Question-translation training data for PLAST, in LLaVA's conversation JSON format.

Each non-pivot question becomes one conversation: (optional image) + the template filled with
the question's language -> the pivot (English) question. LLaVA puts the loss on the answer only.

    [{"id": "q7-zh", "image": "/abs/q7.png",
      "conversations": [{"from": "human", "value": "<image>\\nTranslate the following question
                         from Chinese to English.\\n图片中..."},
                        {"from": "gpt", "value": "What is in the picture?"}]}, ...]

Input is what `plast select` reads (``load_parallel_questions``, which refuses unparallel data).
"""
from __future__ import annotations

import hashlib
import json
import os
import string
from dataclasses import dataclass, field
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.data.languages import language_row
from plast_plugin.data.parallel_data import ParallelQuestions, load_image

DEFAULT_TEMPLATE = "Translate the following question from {language} to {target}.\n{question}"
IMAGE_TOKEN = "<image>"  # LLaVA's DEFAULT_IMAGE_TOKEN
TEMPLATE_FIELDS = ("language", "target", "question", "lang", "target_lang")


def check_template(template: str) -> str:
    """The template must contain {question}; only the documented placeholders are allowed."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:  # e.g. "expected '}' before end of string"
        raise PlastError(f"--template {template!r} is not a valid template ({err}); write literal braces "
                         f"as {{{{ and }}}}") from None
    unknown = sorted(names - set(TEMPLATE_FIELDS))
    if not unknown:
        try:
            template.format(**{name: "x" for name in TEMPLATE_FIELDS})
        except (ValueError, IndexError, KeyError) as err:  # a bad conversion or format spec
            raise PlastError(f"--template {template!r} cannot be filled in ({err}); use plain "
                             f"placeholders such as {{question}}") from None
    if unknown or "question" not in names:
        raise PlastError(
            f"template {template!r}: placeholders must be among {{{'}, {'.join(TEMPLATE_FIELDS)}}} "
            f"and include {{question}}" + (f"; unknown: {unknown}" if unknown else "")
        )
    return template


@dataclass
class TranslationData:
    records: list[dict]
    counts: dict[str, int]  # per source language
    with_images: int = 0
    inline_images: dict[str, str] = field(default_factory=dict, repr=False)  # file path -> base64, written by save()

    def save(self, path) -> Path:
        """Write the inline images, then the JSON, each file atomically; if anything fails, the
        images this call created are removed and an existing JSON is left as it was."""
        from plast_plugin.atomic import atomic_output_file, write_text_atomic

        path = Path(path)
        if path.is_dir():
            raise PlastError(f"--out {path} is a folder; give the path of the .json file to write")
        text = json.dumps(self.records, ensure_ascii=False, indent=1) + "\n"
        text.encode("utf-8")  # fails here, before any file is touched, on invalid text
        created: list[Path] = []
        try:
            for target, reference in self.inline_images.items():
                target = Path(target)
                if not target.exists():
                    created.append(target)
                with atomic_output_file(target) as tmp:
                    load_image(reference).save(tmp, format="PNG")
            write_text_atomic(path, text)
        except BaseException:
            for target in created:
                target.unlink(missing_ok=True)
            raise
        return path


def _image_file(reference: str, image_dir: Path | None, qid: str, planned: dict) -> str:
    """The path LLaVA will open. Files stay (absolute); base64 images get a file in image_dir,
    written by ``TranslationData.save``. Every image is decoded here, so nothing unreadable (a
    text file, ``../../etc/passwd``) reaches the training data."""
    try:
        load_image(reference)  # decodes, or names the image it cannot decode
    except PlastError as err:
        raise PlastError(f"question {qid!r}: {err}; only readable images can be trained on") from None
    if os.path.isfile(reference):
        return str(Path(reference).resolve())
    if reference in planned:
        return planned[reference]
    if image_dir is None:
        raise PlastError("the data has inline (base64) images: pass an image directory to write them to")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in qid)[:40]
    name = f"{safe}-{hashlib.sha256(reference.encode()).hexdigest()[:10]}.png"
    target = str((image_dir / name).resolve())
    planned[reference] = target
    return target


def build_translation_data(questions: ParallelQuestions, *, template: str = DEFAULT_TEMPLATE,
                           images: str = "auto", image_dir=None, progress: bool = False) -> TranslationData:
    """Conversations for every (question, non-pivot language). ``images``: 'auto' (use them when the
    data has them), 'on' (require them), 'off' (text only). Writes nothing: ``save`` does."""
    from tqdm import tqdm

    check_template(template)
    if images not in ("auto", "on", "off"):
        raise PlastError(f"images={images!r}: use auto, on or off")
    if images == "on" and len(questions.images) < len(questions.ids):
        raise PlastError(f"images='on' but only {len(questions.images)} of {len(questions.ids)} questions have one")
    use_images = images != "off"
    image_dir = Path(image_dir) if image_dir else None
    if image_dir is not None and image_dir.exists() and not image_dir.is_dir():
        raise PlastError(f"image directory {image_dir} is an existing file; give a folder")
    target = language_row(questions.pivot).name
    records, planned = [], {}
    for qid in tqdm(questions.ids, desc="build-data", unit="question", disable=not progress):
        reference = questions.image(qid) if use_images else None
        image = _image_file(reference, image_dir, qid, planned) if reference else None
        for lang in questions.other_languages:
            prompt = template.format(language=language_row(lang).name, target=target, lang=lang,
                                     target_lang=questions.pivot, question=questions.question(qid, lang))
            records.append({"id": f"{qid}-{lang}", **({"image": image} if image else {}), "conversations": [
                {"from": "human", "value": f"{IMAGE_TOKEN}\n{prompt}" if image else prompt},
                {"from": "gpt", "value": questions.question(qid, questions.pivot)},
            ]})
    counts = {lang: len(questions.ids) for lang in questions.other_languages}  # one conversation per question
    return TranslationData(records, counts, sum("image" in r for r in records),
                           {path: ref for ref, path in planned.items()})
