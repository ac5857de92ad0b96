"""The prompt under each evaluation protocol: the text of the question, and the chat messages
that lay it out for a LLaVA-1.5 model (a checkpoint converted by ``plast export --to-hf``, whose chat
template is :data:`plast_plugin.checkpoints.llava_text.LLAVA_CHAT_TEMPLATE`).

Both protocols reproduce a model class of VLMEvalKit as AIDC-AI/Parrot ran it (commit 989d6d0):

- ``vlmevalkit`` (default): VLMEvalKit's ``LLaVA`` class, behind the LLaVA-1.5 rows of the Parrot
  paper's Table 2. Question block ``[hint\\n]question\\nA. text...``, then ``请直接回答选项字母。``
  when the block holds a CJK ideograph (``cn_string``: U+4E00..U+9FFF), else the English
  instruction. The model receives ``system + 'USER: ' + ' <image> ' + block + ' ASSISTANT: '``
  with the system text :data:`VLMEVALKIT_SYSTEM` + ``' '``, tokenized by LLaVA's
  ``tokenizer_image_token``.
- ``parrot``: the prompt rules of Parrot's own class (``vlm/parrot.py``): the same block, then
  Parrot's instruction of the language (the ``parrot_instruction`` column of the language table),
  the Chinese one whenever the block holds a CJK ideograph, and the image first (``<image>\\n``).
  Parrot's model is a Qwen2 LM with its own ChatML turns; a LLaVA-1.5 model keeps its own
  ``llava_v1`` conversation around that content.

The *layout* says whose turns carry that text (``$PLAST_EVAL_LAYOUT``, set by ``plast eval`` from
the model's config):

- ``llava-1.5`` (default): the turns above, for a LLaVA-1.5 model whose chat template is the
  converter's (VLMEvalKit's system text and ``' <image> '`` are written into the messages).
- ``model``: one user turn, the image, then the protocol's text; the model's own chat template
  (Qwen2.5-VL, Qwen3-VL, InternVL, LLaVA-OneVision) lays out system text, turns and image
  placeholders, as its lmms-eval class applies it. VLMEvalKit's classes for these models put the
  image before the question in the user turn too; the question text is the protocol's, the same
  for every family, so a comparison between families is one of models, not of prompts.

Cells are what VLMEvalKit reads with ``pd.read_csv(sep='\\t')`` (the tasks read them so:
:func:`plast_plugin.eval.lmms_tasks.vlmevalkit_docs`): an option or hint whose text is one of pandas'
default missing-value strings (:data:`PANDAS_NA_VALUES`: ``None``, ``NA``, ``nan``, ``null``, empty
...) is NaN there, and dropped from the prompt (and from the answer choices).
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
# VLMEvalKit's LLaVA system prompt ("curious human", not llava_v1's "curious user"); VLMEvalKit
# writes it with a trailing space, which the chat template adds after a system message.
VLMEVALKIT_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                     "The assistant gives helpful, detailed, and polite answers to the human's questions.")
# pandas' default na_values (pandas._libs.parsers.STR_NA_VALUES, pandas 2.x and 3.x): a cell with
# exactly one of these texts is NaN in VLMEvalKit's data frame.
PANDAS_NA_VALUES = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
PROTOCOLS = ("vlmevalkit", "parrot")
DEFAULT_PROTOCOL = "vlmevalkit"
PROTOCOL_ENV = "PLAST_EVAL_PROTOCOL"
LAYOUTS = ("llava-1.5", "model")
DEFAULT_LAYOUT = "llava-1.5"
LAYOUT_ENV = "PLAST_EVAL_LAYOUT"
_CJK = re.compile("[\u4e00-\u9fff]")


def resolve_protocol(value: str | None = None) -> str:
    """`value`, else ``$PLAST_EVAL_PROTOCOL``, else ``vlmevalkit``; anything else is refused."""
    chosen = (value if value is not None else os.environ.get(PROTOCOL_ENV, "")).strip().lower() or DEFAULT_PROTOCOL
    if chosen not in PROTOCOLS:
        source = "protocol" if value is not None else PROTOCOL_ENV
        raise PlastError(f"{source}={chosen!r}: unknown evaluation protocol; use one of {', '.join(PROTOCOLS)} "
                         f"(vlmevalkit reproduces the published LLaVA-1.5 rows)")
    return chosen


def resolve_layout(value: str | None = None) -> str:
    """`value`, else ``$PLAST_EVAL_LAYOUT``, else ``llava-1.5``; anything else is refused."""
    chosen = (value if value is not None else os.environ.get(LAYOUT_ENV, "")).strip().lower() or DEFAULT_LAYOUT
    if chosen not in LAYOUTS:
        source = "layout" if value is not None else LAYOUT_ENV
        raise PlastError(f"{source}={chosen!r}: unknown chat layout; use llava-1.5 (a LLaVA-1.5 model converted by "
                         "plast export --to-hf) or model (the model's own chat template lays out the turns)")
    return chosen


def answer_instruction(language: str) -> str:
    """Parrot's answer instruction for `language` (``cn`` accepted for ``zh``)."""
    return ANSWER_INSTRUCTIONS[parrot_language(language)]


def is_pandas_na(cell) -> bool:
    """Whether pandas' default reader reads this cell text as NaN."""
    return cell is None or str(cell) in PANDAS_NA_VALUES


def protocol_instruction(protocol: str, language: str, body: str) -> str:
    """The instruction line `protocol` appends to a prompt whose question part is `body`."""
    cjk = _CJK.search(body) is not None
    if resolve_protocol(protocol) == "parrot":
        # Parrot's class tests the dataset suffix `_cn` or cn_string(prompt) first, in every language
        return ANSWER_INSTRUCTIONS["zh"] if cjk else answer_instruction(language)
    return VLMEVALKIT_INSTRUCTION_CJK if cjk else ANSWER_INSTRUCTIONS["en"]


def protocol_messages(doc: Mapping, image, text: str, protocol: str | None = None,
                      layout: str | None = None) -> list[dict]:
    """The chat messages (lmms-eval's format) that give the model `text` (the prompt of
    :func:`build_prompt`) and `image` under the doc's protocol and layout: for ``llava-1.5``, a
    LLaVA-1.5 model's turns through the converter's template; for ``model``, one user turn (image,
    text) that the model's own chat template lays out."""
    protocol = resolve_protocol(protocol or doc.get("protocol"))
    # parrot: "<image>\n" + prompt, as Parrot's class, inside llava_v1's turns; model: the model's
    # own template places the image where its turns keep one
    if resolve_layout(layout or doc.get("layout")) == "model" or protocol == "parrot":
        return [{"role": "user", "content": [{"type": "image", "url": image}, {"type": "text", "text": text}]}]
    # VLMEvalKit: system + 'USER: ' + ' <image> ' + prompt + ' ASSISTANT: ' (the template writes the
    # space after the system text and after the user turn; the empty assistant turn ends the prompt
    # with "ASSISTANT: ", trailing space included)
    return [{"role": "system", "content": [{"type": "text", "text": VLMEVALKIT_SYSTEM}]},
            {"role": "user", "content": [{"type": "image", "url": image}, {"type": "text", "text": " <image> " + text}]},
            {"role": "assistant", "content": [{"type": "text", "text": ""}]}]


def build_prompt(doc: Mapping, instruction: str | None = None, protocol: str | None = None) -> str:
    """Prompt text for one doc of :func:`plast_plugin.eval.parrot_data.read_parrot_tsv`.

    `protocol` defaults to the doc's ``protocol`` field, else :func:`resolve_protocol`.
    `instruction` replaces the protocol's instruction when given ("" drops it).
    """
    parts = []
    if not is_pandas_na(doc.get("hint")):
        parts.append(str(doc["hint"]))
    parts.append(str(doc["question"]))
    for letter in doc["options"]:  # the letters whose cells are not NaN (lmms_tasks.process_docs)
        parts.append(f"{letter}. {doc[letter]}")
    if instruction is None:
        instruction = protocol_instruction(protocol or doc.get("protocol") or resolve_protocol(),
                                           doc["language"], "\n".join(parts))
    if instruction:
        parts.append(instruction)
    return "\n".join(parts)
