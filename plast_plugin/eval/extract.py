"""Which option a free-text answer to a multiple-choice question picks, across scripts.

Rule matching in the spirit of VLMEvalKit's ``can_infer`` (letter first, then option text),
made to work for answers in the six Parrot languages:

- Letters are read after Unicode NFKC normalisation, so full-width ``Ｂ``, ``（Ｂ）`` and circled
  ``Ⓑ`` become ``B`` and ``(B)``.
- Arabic and Cyrillic letters stand for Latin ones (the language table's ``option_letter_aliases``:
  ``أ ب ج د هـ`` are A-E); a Cyrillic ``В`` is the look-alike ``B``, not the third option, as
  Russian prompts show Latin letters.
- A letter counts only when it stands alone in its script: ``B`` in ``答案是B`` (no spaces in
  Chinese) counts, ``B`` in ``B12`` or ``Bus`` does not.
- A capital that reads as a word — the article ``A`` ("A resposta é B", "A cat"), Russian
  ``А В С`` ("В комнате") — at the start of a sentence and followed by a lower-case word is
  *weak*: it counts only when nothing else names an option and the answer has at most three
  words ("A is correct"). Given the question's language, this applies only where such words
  exist (en, pt, ru); in zh, ar, tr a capital A is always a letter ("A seçeneği doğru cevaptır").
- Lower-case letters count only in brackets (``(b)``) or as the whole answer (``b.``).
- Without any letter, an option's text found in the answer picks that option (a match that
  lies inside the match of a longer option is ignored).
- Several different options, or none, give ``None``: the answer scores wrong.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

from plast_plugin.data.languages import LANGUAGE_TABLE

# Each language's own letters (Arabic, Cyrillic), read in any answer, and Greek look-alikes a model may write.
LETTER_ALIASES: dict[str, str] = {
    **{char: letter for lang in LANGUAGE_TABLE for char, letter in lang.option_letter_aliases.items()},
    "Α": "A", "Β": "B", "Ε": "E",
}
# Capitals that are also words ("A" in en/pt, Russian "А", "В", "С"): a language with such words reads
# all of them as possible words, one without (zh, ar, tr) never; an unknown language as having some.
_WORDLIKE_ALL = frozenset().union(*(lang.option_letter_words or () for lang in LANGUAGE_TABLE))
_WORDLIKE = {lang.code: _WORDLIKE_ALL if lang.option_letter_words else frozenset()
             for lang in LANGUAGE_TABLE if lang.option_letter_words is not None}
_BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">"}


def normalize_text(text: str) -> str:
    """NFKC, Arabic tatweel dropped (``هـ`` -> ``ه``), whitespace collapsed."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.replace("\u0640", "")  # tatweel
    return re.sub(r"\s+", " ", text).strip()


def _script(ch: str) -> str:
    """Coarse script of a letter or digit: tells whether two neighbours form one word."""
    if ch.isdigit():
        return "digit"
    cp = ord(ch)
    if 0x0600 <= cp <= 0x06FF or 0x0750 <= cp <= 0x077F or 0xFB50 <= cp <= 0xFEFF:
        return "arabic"
    if 0x0400 <= cp <= 0x052F:
        return "cyrillic"
    if 0x0370 <= cp <= 0x03FF:
        return "greek"
    if (0x2E80 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x2FFFF):
        return "cjk"  # no spaces between words: a letter next to it still stands alone
    return "latin"


def _joins(ch: str) -> bool:
    """Whether a neighbour `ch` would make a letter part of a longer word or code."""
    if not ch or not (ch.isalnum() or unicodedata.category(ch).startswith("M")):
        return False
    return _script(ch) != "cjk"


def _fold(text: str) -> str:
    """Lower case, one character for one (``İ``.lower() has two), so spans map back."""
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


def _letter_of(ch: str) -> str | None:
    return ch if "A" <= ch <= "Z" else LETTER_ALIASES.get(ch)


def _letter_hits(text: str, valid: set[str], wordlike=_WORDLIKE_ALL) -> tuple[set[str], set[str]]:
    """(strong, weak) option letters standing alone in `text`."""
    strong: set[str] = set()
    weak: set[str] = set()
    stripped = text.strip(" .,:;!?()[]{}<>\"'*#")
    for i, ch in enumerate(text):
        prev = text[i - 1] if i > 0 else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if _joins(prev) or _joins(nxt):
            continue
        letter = _letter_of(ch)
        if letter is None and ch.islower() and "a" <= ch <= "z":
            # lower case only in brackets or as the whole answer
            if (prev in _BRACKETS and nxt == _BRACKETS[prev]) or stripped == ch:
                letter = ch.upper()
        if letter is None or letter not in valid:
            continue
        after = text[i + 1:]
        sentence_start = re.search(r"(^|[.!?。！？\n]\s*)[\"'«“]?$", text[:i]) is not None
        # "A ou B", "А или Б": a letter, a short word, a letter -> both are options
        listed = re.match(r" \w{1,4} [(\[]?(\w)(?![\w])", after)
        listed = listed is not None and _letter_of(listed.group(1)) in valid
        if ch in wordlike and sentence_start and re.match(r" \w", after) and after[1].islower() and not listed:
            weak.add(letter)
        else:
            strong.add(letter)
    return strong, weak


def _span_matches(text: str, needle: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    while needle:
        i = text.find(needle, start)
        if i < 0:
            break
        j = i + len(needle)
        before = text[i - 1] if i > 0 else ""
        after = text[j] if j < len(text) else ""
        if not (_joins(before) and _joins(needle[0])) and not (_joins(after) and _joins(needle[-1])):
            spans.append((i, j))
        start = i + 1
    return spans


def _text_hits(text: str, options: Mapping[str, str]) -> dict[str, list[tuple[int, int]]]:
    low = _fold(text)
    hits = {}
    for letter, option in options.items():
        spans = _span_matches(low, _fold(normalize_text(option)))  # an empty text matches nowhere
        if spans:
            hits[letter] = spans
    # drop an option whose every match lies inside the match of another, longer option
    keep = {}
    for letter, spans in hits.items():
        inside = all(
            any(o != letter and a <= s and e <= b and (b - a) > (e - s) for o, ospans in hits.items()
                for a, b in ospans)
            for s, e in spans
        )
        if not inside:
            keep[letter] = spans
    return keep


def extract_choice(response: str, options: Mapping[str, str | None], language: str | None = None) -> str | None:
    """The option letter `response` picks among `options` (letter -> text), or None.

    `options` may hold None/empty texts for absent options (rows with fewer than four
    options); those letters are not valid answers. `language` (the question's, e.g. ``tr``)
    says whether a sentence-initial capital A can be a word ("A resposta", "A cat") or is
    always a letter ("A şıkkı doğrudur"); None treats it as possibly a word.
    """
    wordlike = _WORDLIKE.get(language, _WORDLIKE_ALL) if language else _WORDLIKE_ALL
    present = {k: str(v) for k, v in options.items() if v is not None and str(v).strip() != ""}
    valid = set(present)
    if response is None or not valid:
        return None
    text = normalize_text(response)
    # An option text that itself contains a standalone letter ("Vitamin C") must not count
    # as that letter: mask such texts before looking for letters.
    masked = text
    for letter, option in sorted(present.items(), key=lambda kv: -len(kv[1])):
        opt = normalize_text(option)
        if len(opt) >= 3 and any(_letter_hits(opt, valid)):
            for s, e in reversed(_span_matches(_fold(masked), _fold(opt))):
                masked = masked[:s] + " " * (e - s) + masked[e:]
    strong, weak = _letter_hits(masked, valid, wordlike)
    if len(strong) == 1:
        return next(iter(strong))
    if len(strong) > 1:
        return None
    by_text = _text_hits(text, present)
    if len(by_text) == 1:
        return next(iter(by_text))
    if len(by_text) > 1:
        return None
    if len(weak) == 1 and len(text.split()) <= 3:
        return next(iter(weak))
    return None
