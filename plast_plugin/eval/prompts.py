"""The question prompt under each evaluation protocol.

Both protocols lay a question out as LLaVA-1.5 does for MMBench (``model_vqa_mmbench``, and
VLMEvalKit's LLaVA class): ``[hint\\n]question\\nA. text\\nB. text\\n...\\n<instruction>``, listing
only the options a row has. They differ in the instruction line:

- ``vlmevalkit`` (default): VLMEvalKit's LLaVA prompt, behind the published LLaVA-1.5 rows of
  the Parrot paper (Table 2, "all compared methods with VLMEvalKit"): the English instruction for
  every language, except ``请直接回答选项字母。`` when the prompt contains a CJK ideograph
  (VLMEvalKit's ``cn_string``: a character in U+4E00..U+9FFF).
- ``parrot``: Parrot's own model class, the instruction in the question's language (the
  ``parrot_instruction`` of :data:`plast_plugin.data.languages.LANGUAGE_TABLE`).

Generation is the same for both (the task YAMLs): greedy, ``max_new_tokens`` 2048 as VLMEvalKit's
LLaVA, so that a verbose answer is never cut before its letter (a model that answers with a
letter stops at its end-of-sequence token, so the limit costs nothing then).
"""

from __future__ import annotations

import os
import re
from typing import Mapping

from plast_plugin.errors import PlastError
from plast_plugin.eval.parrot_data import parrot_language
from plast_plugin.data.languages import PARROT_LANGUAGES, language_row

# Parrot's instruction per language: the `parrot_instruction` column of the language table.
# VLMEvalKit's English instruction is Parrot's English one.
ANSWER_INSTRUCTIONS: dict[str, str] = {code: language_row(code).parrot_instruction for code in PARROT_LANGUAGES}
VLMEVALKIT_INSTRUCTION_CJK = "请直接回答选项字母。"
PROTOCOLS = ("vlmevalkit", "parrot")
DEFAULT_PROTOCOL = "vlmevalkit"
PROTOCOL_ENV = "PLAST_EVAL_PROTOCOL"
_CJK = re.compile("[\u4e00-\u9fff]")


def resolve_protocol(value: str | None = None) -> str:
    """`value`, else ``$PLAST_EVAL_PROTOCOL``, else ``vlmevalkit``; anything else is refused."""
    chosen = (value if value is not None else os.environ.get(PROTOCOL_ENV, "")).strip().lower() or DEFAULT_PROTOCOL
    if chosen not in PROTOCOLS:
        source = "protocol" if value is not None else PROTOCOL_ENV
        raise PlastError(f"{source}={chosen!r}: unknown evaluation protocol; use one of {', '.join(PROTOCOLS)} "
                         f"(vlmevalkit reproduces the published LLaVA-1.5 rows)")
    return chosen


def answer_instruction(language: str) -> str:
    """Parrot's answer instruction for `language` (``cn`` accepted for ``zh``)."""
    return ANSWER_INSTRUCTIONS[parrot_language(language)]


def protocol_instruction(protocol: str, language: str, body: str) -> str:
    """The instruction line `protocol` appends to a prompt whose question part is `body`."""
    if resolve_protocol(protocol) == "parrot":
        return answer_instruction(language)
    return VLMEVALKIT_INSTRUCTION_CJK if _CJK.search(body) else ANSWER_INSTRUCTIONS["en"]


def build_prompt(doc: Mapping, instruction: str | None = None, protocol: str | None = None) -> str:
    """Prompt text for one doc of :func:`plast_plugin.eval.parrot_data.read_parrot_tsv`.

    `protocol` defaults to the doc's ``protocol`` field, else :func:`resolve_protocol`.
    `instruction` replaces the protocol's instruction when given ("" drops it).
    """
    parts = []
    if doc.get("hint"):
        parts.append(str(doc["hint"]))
    parts.append(str(doc["question"]))
    for letter in doc["options"]:
        parts.append(f"{letter}. {doc[letter]}")
    if instruction is None:
        instruction = protocol_instruction(protocol or doc.get("protocol") or resolve_protocol(),
                                           doc["language"], "\n".join(parts))
    if instruction:
        parts.append(instruction)
    return "\n".join(parts)
