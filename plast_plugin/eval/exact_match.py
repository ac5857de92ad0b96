"""A VLMEvalKit-style exact answer matcher, written here from its published rules
(``vlmeval/utils/matching_util.py``: ``can_infer``, what VLMEvalKit reads before any LLM judge).
Reported beside our multilingual extractor (:mod:`plast_plugin.eval.extract`), it shows how much of a
score comes from the extractor. The rules: if exactly one option letter is a token once each of
``.()[],:;!*#{}`` is a space (``"(B)"`` -> B; ``"答案是B"`` -> none), that letter; else if exactly one
option's text occurs in the answer (lower-cased substring), that option; else no answer (wrong).
"""

from __future__ import annotations

from typing import Mapping

_TO_SPACE = str.maketrans(dict.fromkeys(".()[],:;!*#{}", " "))


def exact_choice(response: str | None, options: Mapping[str, str | None]) -> str | None:
    """The option letter `response` names by VLMEvalKit's exact rules, or None."""
    present = {k: str(v) for k, v in options.items() if v is not None and str(v).strip() != ""}
    if response is None or not present:
        return None
    text = str(response)
    tokens = set(text.translate(_TO_SPACE).split())
    letters = [k for k in present if k in tokens]
    if len(letters) == 1:
        return letters[0]
    low = text.lower()
    by_text = [k for k, v in present.items() if v.lower() in low]
    if len(by_text) == 1:
        return by_text[0]
    return None
