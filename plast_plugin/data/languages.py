"""Language codes PLAST understands, and their English names.

Codes are ISO 639-1. Benchmarks and catalogs spell some of them differently (Parrot's TSVs use
`cn` for Chinese, gettext uses `zh_Hans`, `pt_BR`), so every code that enters the package goes
through `normalize_language` once.
"""

from __future__ import annotations

from plast_plugin.errors import PlastError

LANGUAGES: dict[str, str] = {
    "en": "English", "zh": "Chinese", "pt": "Portuguese", "ar": "Arabic", "tr": "Turkish",
    "ru": "Russian", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "vi": "Vietnamese", "th": "Thai", "hi": "Hindi",
    "bn": "Bengali", "id": "Indonesian", "nl": "Dutch", "pl": "Polish", "uk": "Ukrainian",
    "fa": "Persian", "he": "Hebrew", "sw": "Swahili", "el": "Greek", "cs": "Czech",
    "sv": "Swedish", "fi": "Finnish", "hu": "Hungarian", "ro": "Romanian", "ms": "Malay",
}

# Spellings seen in benchmark file names and locale catalogs.
_ALIASES: dict[str, str] = {
    "cn": "zh", "zh_hans": "zh", "zh-hans": "zh", "zh_cn": "zh", "zh-cn": "zh",
    "zh_hant": "zh", "zh-hant": "zh", "zh_tw": "zh", "zh-tw": "zh",
    "pt_br": "pt", "pt-br": "pt", "pt_pt": "pt", "pt-pt": "pt", "jp": "ja", "kr": "ko",
}


class UnknownLanguageError(PlastError):
    pass


def normalize_language(code: str) -> str:
    """Return the ISO 639-1 code for `code` or raise naming the known codes."""
    key = str(code).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LANGUAGES:
        raise UnknownLanguageError(
            f"unknown language code {code!r}; use one of: {', '.join(sorted(LANGUAGES))} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return key


def language_name(code: str) -> str:
    return LANGUAGES[normalize_language(code)]


def parse_language_list(text: str | list[str]) -> list[str]:
    """'zh,pt, ar' -> ['zh', 'pt', 'ar'], normalised, order kept, duplicates refused."""
    items = text.split(",") if isinstance(text, str) else list(text)
    codes = [normalize_language(item) for item in items if str(item).strip()]
    if not codes:
        raise UnknownLanguageError(f"no language codes in {text!r}; give e.g. 'zh,pt,ar,tr,ru'")
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise UnknownLanguageError(f"language list {text!r} names {duplicates} twice")
    return codes
