"""The language table: every fact PLAST keeps about a language, in one place.

:data:`LANGUAGE_TABLE` has one :class:`Language` row per language: its ISO 639-1 code and English
name, and for the six languages of Parrot's benchmarks (MMMB, multilingual MMBench) the code in
their file names, the ``parrot`` protocol's answer instruction, and what answer extraction must
know of the language's script.

Codes are ISO 639-1. Benchmarks and catalogs spell some of them differently (Parrot's TSVs use
`cn` for Chinese, gettext uses `zh_Hans`, `pt_BR`), so every code that enters the package goes
through `normalize_language` once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from plast_plugin.errors import PlastError


@dataclass(frozen=True)
class Language:
    """One row of :data:`LANGUAGE_TABLE`; the Parrot and extraction fields are empty for a language
    Parrot's benchmarks do not cover."""

    code: str  # ISO 639-1
    name: str  # English name
    # Parrot's benchmarks: the code in their file names (mmmb/mmmb_<code>.tsv,
    # mmbench/mmbench_dev_<code>.tsv; "cn" for Chinese); None: the benchmarks lack the language.
    parrot_file_code: str | None = None
    # The answer instruction Parrot's own model class appends (the `parrot` prompt protocol).
    parrot_instruction: str | None = None
    # Answer extraction (plast_plugin.eval.extract). Characters of the language's script that,
    # standing alone, name an option letter (Arabic lists use the abjad order أ ب ج د هـ).
    option_letter_aliases: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Option-letter capitals that are also words at the start of a sentence (the article "A",
    # Russian "В" = in): empty when the language has none, so a capital A is always a letter;
    # None when not known (extraction then assumes it may be a word).
    option_letter_words: frozenset[str] | None = None

    def __post_init__(self):
        object.__setattr__(self, "option_letter_aliases", MappingProxyType(dict(self.option_letter_aliases)))


LANGUAGE_TABLE: tuple[Language, ...] = (
    Language("en", "English", parrot_file_code="en",
             parrot_instruction="Answer with the option's letter from the given choices directly.",
             option_letter_words=frozenset({"A"})),
    Language("zh", "Chinese", parrot_file_code="cn",
             parrot_instruction="请直接用给定选项中的选项字母回答。",
             option_letter_words=frozenset()),
    Language("pt", "Portuguese", parrot_file_code="pt",
             parrot_instruction="Responda diretamente com a letra da opção das escolhas dadas.",
             option_letter_words=frozenset({"A"})),
    Language("ar", "Arabic", parrot_file_code="ar",
             parrot_instruction="أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
             option_letter_aliases={"أ": "A", "ا": "A", "إ": "A", "آ": "A", "ب": "B", "ج": "C", "د": "D",
                                    "ه": "E"},
             option_letter_words=frozenset()),
    Language("tr", "Turkish", parrot_file_code="tr",
             parrot_instruction="Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
             option_letter_words=frozenset()),
    # Cyrillic look-alikes А В С Е and the transliterations Б Д.
    Language("ru", "Russian", parrot_file_code="ru",
             parrot_instruction="Ответьте буквой варианта из предложенных вариантов напрямую.",
             option_letter_aliases={"А": "A", "В": "B", "С": "C", "Е": "E", "Б": "B", "Д": "D"},
             option_letter_words=frozenset({"А", "В", "С"})),
    Language("de", "German"), Language("fr", "French"), Language("es", "Spanish"),
    Language("it", "Italian"), Language("ja", "Japanese"), Language("ko", "Korean"),
    Language("vi", "Vietnamese"), Language("th", "Thai"), Language("hi", "Hindi"),
    Language("bn", "Bengali"), Language("id", "Indonesian"), Language("nl", "Dutch"),
    Language("pl", "Polish"), Language("uk", "Ukrainian"), Language("fa", "Persian"),
    Language("he", "Hebrew"), Language("sw", "Swahili"), Language("el", "Greek"),
    Language("cs", "Czech"), Language("sv", "Swedish"), Language("fi", "Finnish"),
    Language("hu", "Hungarian"), Language("ro", "Romanian"), Language("ms", "Malay"),
)

# Views of the table (derived, never edited by hand).
LANGUAGES: dict[str, str] = {lang.code: lang.name for lang in LANGUAGE_TABLE}
# The languages of Parrot's benchmarks, in the table's order (the order of tasks and reports).
PARROT_LANGUAGES: tuple[str, ...] = tuple(lang.code for lang in LANGUAGE_TABLE if lang.parrot_file_code)
_BY_CODE: dict[str, Language] = {lang.code: lang for lang in LANGUAGE_TABLE}

# Spellings seen in benchmark file names and locale catalogs.
_ALIASES: dict[str, str] = {
    "cn": "zh", "zh_hans": "zh", "zh-hans": "zh", "zh_cn": "zh", "zh-cn": "zh",
    "zh_hant": "zh", "zh-hant": "zh", "zh_tw": "zh", "zh-tw": "zh",
    "pt_br": "pt", "pt-br": "pt", "pt_pt": "pt", "pt-pt": "pt", "jp": "ja", "kr": "ko",
}


def normalize_language(code: str, where: str = "") -> str:
    """Return the ISO 639-1 code for `code` or raise naming the known codes (after ``where: ``)."""
    key = str(code).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LANGUAGES:
        prefix = f"{where}: " if where else ""
        raise PlastError(
            f"{prefix}unknown language code {code!r}; use one of: {', '.join(sorted(LANGUAGES))} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return key


def language_row(code: str) -> Language:
    """The table row of `code` (any spelling `normalize_language` accepts)."""
    return _BY_CODE[normalize_language(code)]


def parse_language_list(text: str | list[str]) -> list[str]:
    """'zh,pt, ar' -> ['zh', 'pt', 'ar'], normalised, order kept, duplicates refused."""
    items = text.split(",") if isinstance(text, str) else list(text)
    codes = [normalize_language(item) for item in items if str(item).strip()]
    if not codes:
        raise PlastError(f"no language codes in {text!r}; give e.g. 'zh,pt,ar,tr,ru'")
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise PlastError(f"language list {text!r} names {duplicates} twice")
    return codes
