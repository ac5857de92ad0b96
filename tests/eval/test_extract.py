"""Answer extraction in the six Parrot languages (no model, no lmms-eval)."""

import pytest

from plast_plugin.eval.extract import extract_choice

OPTIONS = {"A": "a dog", "B": "a cat", "C": "Vitamin C", "D": "a horse"}

# (language, answer, expected letter or None)
CASES = [
    # English
    ("en", "B", "B"),
    ("en", "B.", "B"),
    ("en", "(B)", "B"),
    ("en", "The answer is (C).", "C"),
    ("en", "Answer: D", "D"),
    ("en", "A", "A"),
    ("en", "A is correct", "A"),
    ("en", "a horse", "D"),
    ("en", "It is a cat.", "B"),
    ("en", "Vitamin C", "C"),
    ("en", "B. a cat", "B"),
    ("en", "A cat is sitting on the sofa", "B"),
    ("en", "(b)", "B"),
    ("en", "b", "B"),
    ("en", "B or C", None),
    ("en", "Option A and B", None),
    ("en", "I don't know", None),
    ("en", "", None),
    ("en", "E", None),  # not an option of this question
    # Chinese: no spaces, full-width letters and brackets
    ("zh", "答案是B", "B"),
    ("zh", "Ｃ", "C"),
    ("zh", "（Ｄ）", "D"),
    ("zh", "选项：Ａ", "A"),
    ("zh", "B选项", "B"),
    ("zh", "B和C", None),
    ("zh", "我不知道", None),
    # Portuguese: the article "A" opens sentences
    ("pt", "A resposta é B", "B"),
    ("pt", "A resposta correta é A.", "A"),
    ("pt", "A resposta é a letra D.", "D"),
    ("pt", "Resposta: (C)", "C"),
    ("pt", "A ou B", None),
    ("pt", "Não sei", None),
    # Arabic letters and Latin letters in Arabic sentences
    ("ar", "أ", "A"),
    ("ar", "ب", "B"),
    ("ar", "الإجابة هي ج", "C"),
    ("ar", "الإجابة: (د)", "D"),
    ("ar", "الإجابة هي B", "B"),
    ("ar", "أ أو ب", None),
    ("ar", "لا أعرف", None),
    # Turkish
    ("tr", "Cevap: B", "B"),
    ("tr", "Doğru cevap C'dir.", "C"),
    ("tr", "D şıkkı", "D"),
    ("tr", "A veya B", None),
    ("tr", "Bilmiyorum", None),
    ("tr", "A seçeneği doğru cevaptır", "A"),  # no article "A" in Turkish
    # Russian: Cyrillic look-alikes (А В С) and transliterations (Б Д)
    ("ru", "А", "A"),
    ("ru", "Ответ: В", "B"),
    ("ru", "Ответ: Б", "B"),
    ("ru", "Правильный ответ — С.", "C"),
    ("ru", "Д", "D"),
    ("ru", "Ответ: B", "B"),
    ("ru", "А или Б", None),
    ("ru", "Не знаю", None),
]


@pytest.mark.parametrize("lang,answer,expected", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_extract(lang, answer, expected):
    assert extract_choice(answer, OPTIONS, lang) == expected


def test_fewer_than_four_options():
    options = {"A": "yes", "B": "no", "C": None, "D": ""}
    assert extract_choice("C", options) is None
    assert extract_choice("no", options) == "B"
    assert extract_choice("ب", options) == "B"


def test_fifth_option_in_arabic_and_cyrillic():
    options = {k: str(i) for i, k in enumerate("ABCDE", start=1)}
    assert extract_choice("هـ", options) == "E"
    assert extract_choice("Е", options) == "E"  # Cyrillic Ie
    assert extract_choice("12", options) is None  # digits glued together are not "1"


def test_longer_option_text_wins_over_its_substring():
    options = {"A": "cat", "B": "black cat", "C": "dog", "D": "bird"}
    assert extract_choice("It is a black cat", options) == "B"
    assert extract_choice("It is a cat", options) == "A"


def test_language_decides_whether_a_capital_a_can_be_a_word():
    answer = "A seçeneği doğru cevaptır"
    assert extract_choice(answer, OPTIONS, "tr") == "A"
    assert extract_choice(answer, OPTIONS) is None  # language unknown: could be an article
    assert extract_choice("A resposta correta aparece na imagem", OPTIONS, "pt") is None


def test_turkish_dotted_capital_keeps_positions():
    options = {"A": "İstanbul C", "B": "Ankara", "C": "İzmir", "D": "Bursa"}
    assert extract_choice("B. Ankara", options, "tr") == "B"
    assert extract_choice("Cevap: İSTANBUL C", options, "tr") == "A"
    assert extract_choice("İstanbul C", options, "tr") == "A"
