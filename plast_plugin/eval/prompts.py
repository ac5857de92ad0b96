"""The question prompt: LLaVA-1.5's MMBench layout with Parrot's per-language instruction.

LLaVA-1.5 (``model_vqa_mmbench``) asks ``hint\\nquestion\\nA. text\\nB. text\\n...`` followed by
"Answer with the option's letter from the given choices directly."; Parrot asks the same in the
question's language. Only the options a row has are listed (some rows have two or three).
"""

from __future__ import annotations

from typing import Mapping

from plast_plugin.eval.parrot_data import parrot_language

__all__ = ["ANSWER_INSTRUCTIONS", "answer_instruction", "build_prompt"]

ANSWER_INSTRUCTIONS: dict[str, str] = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接用给定选项中的选项字母回答。",
    "pt": "Responda diretamente com a letra da opção das escolhas dadas.",
    "ar": "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
    "ru": "Ответьте буквой варианта из предложенных вариантов напрямую.",
    "tr": "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
}


def answer_instruction(language: str) -> str:
    """Parrot's answer instruction for `language` (``cn`` accepted for ``zh``)."""
    return ANSWER_INSTRUCTIONS[parrot_language(language)]


def build_prompt(doc: Mapping, instruction: str | None = None) -> str:
    """Prompt text for one doc of :func:`plast_plugin.eval.parrot_data.read_parrot_tsv`.

    `instruction` replaces the per-language instruction when given ("" drops it).
    """
    parts = []
    if doc.get("hint"):
        parts.append(str(doc["hint"]))
    parts.append(str(doc["question"]))
    for letter in doc["options"]:
        parts.append(f"{letter}. {doc[letter]}")
    if instruction is None:
        instruction = answer_instruction(doc["language"])
    if instruction:
        parts.append(instruction)
    return "\n".join(parts)
