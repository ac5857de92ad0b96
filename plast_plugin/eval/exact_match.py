"""A VLMEvalKit-style exact answer matcher, written here from its published rules.

VLMEvalKit (``vlmeval/utils/matching_util.py``: ``can_infer``) reads a multiple-choice answer by
rules before any LLM judge; without a judge, an answer the rules cannot read is "no answer"
(scored wrong). The published baseline rows were scored this way (or with a judge on top), so
this matcher shows how much of a score comes from our multilingual extractor
(:mod:`plast_plugin.eval.extract`), which also reads full-width, Arabic and Cyrillic letters
and phrases such as "A resposta é B". The rules:

1. Replace each of ``.()[],:;!*#{}`` by a space and split on whitespace. If exactly one of the
   row's option letters occurs as a token, that is the answer (``"(B)"`` -> B, ``"答案是B"`` ->
   none: ``B`` is not a token there).
2. Otherwise, if exactly one option's text occurs in the answer (both lower-cased, plain
   substring), that option is the answer.
3. Otherwise no answer. (VLMEvalKit also maps a few refusal phrases to "no answer"; they have
   no letter token and rarely an option text, so they end here too.)
"""

from __future__ import annotations

from typing import Mapping

_SPLIT_CHARS = ".()[],:;!*#{}"


def exact_choice(response: str | None, options: Mapping[str, str | None]) -> str | None:
    """The option letter `response` names by VLMEvalKit's exact rules, or None."""
    present = {k: str(v) for k, v in options.items() if v is not None and str(v).strip() != ""}
    if response is None or not present:
        return None
    text = str(response)
    spaced = text
    for ch in _SPLIT_CHARS:
        spaced = spaced.replace(ch, " ")
    tokens = set(spaced.split())
    letters = [k for k in present if k in tokens]
    if len(letters) == 1:
        return letters[0]
    low = text.lower()
    by_text = [k for k, v in present.items() if v.lower() in low]
    if len(by_text) == 1:
        return by_text[0]
    return None
