"""The VLMEvalKit-style exact matcher: its published rules, case by case (no model, no lmms-eval)."""

import pytest

from plast_plugin.eval.exact_match import exact_choice
from plast_plugin.eval.extract import extract_choice

OPTIONS = {"A": "a dog", "B": "a cat", "C": "Vitamin C", "D": "a horse"}

# (answer, exact matcher's letter, our extractor's letter for language `lang`, lang)
CASES = [
    ("B", "B", "B", "en"),
    ("(B)", "B", "B", "en"),                      # brackets are split away
    ("The answer is (C).", "C", "C", "en"),
    ("B. a cat", "B", "B", "en"),
    ("a horse", "D", "D", "en"),                  # no letter token: unique option text
    ("It is a cat.", "B", "B", "en"),
    ("B or C", None, None, "en"),                 # two letter tokens, and no option text in it
    ("A resposta é B", None, "B", "pt"),          # tokens A and B: two letters, no option text
    ("A resposta é A", "A", "A", "pt"),
    ("答案是B", None, "B", "zh"),                  # "答案是B" is one token
    ("Ｂ", None, "B", "zh"),                       # full-width letter is not the token B
    ("ب", None, "B", "ar"),                        # Arabic letter
    ("Ответ: В", None, "B", "ru"),                 # Cyrillic look-alike
    ("Doğru cevap C'dir.", None, "C", "tr"),       # "C'dir" is one token
    ("b", None, "B", "en"),                        # lower case is not a letter token
    ("E", None, None, "en"),                       # not an option
    ("", None, None, "en"),
]


@pytest.mark.parametrize("answer,exact,ours,lang", CASES, ids=[c[0] or "empty" for c in CASES])
def test_exact_rules_and_the_gap_to_our_extractor(answer, exact, ours, lang):
    assert exact_choice(answer, OPTIONS) == exact
    assert extract_choice(answer, OPTIONS, lang) == ours


def test_text_rule_needs_a_unique_option_text():
    options = {"A": "red", "B": "dark red", "C": "blue"}
    assert exact_choice("dark red", options) is None  # "red" and "dark red" both occur
    assert exact_choice("It is BLUE", options) == "C"  # lower-cased substring
    assert exact_choice("A and B, then the blue one", options) == "C"  # two letters, then one text


def test_absent_options_are_no_answers_and_none_is_a_text():
    options = {"A": "yes", "B": "maybe", "C": "None", "D": None}
    assert exact_choice("D", options) is None
    assert exact_choice("none", options) == "C"
    # plain substrings, as VLMEvalKit: "no" is inside "none", so both texts match -> no answer
    assert exact_choice("none", {"A": "no", "B": "None"}) is None
    assert exact_choice("C", options) == "C"
