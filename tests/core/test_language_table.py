"""The language table is the one owner of per-language facts; the rest of the package reads it."""

from plast_plugin.data.languages import LANGUAGE_TABLE, LANGUAGES, PARROT_LANGUAGES, language_row, normalize_language


def test_each_language_has_one_row_and_a_parrot_row_is_complete():
    codes = [lang.code for lang in LANGUAGE_TABLE]
    assert len(codes) == len(set(codes)) and LANGUAGES == {lang.code: lang.name for lang in LANGUAGE_TABLE}
    assert PARROT_LANGUAGES == ("en", "zh", "pt", "ar", "tr", "ru")
    for lang in LANGUAGE_TABLE:
        parrot = lang.code in PARROT_LANGUAGES
        # a benchmark language needs its file code, its instruction and its extraction facts
        assert (lang.parrot_file_code is not None) == parrot, lang
        assert (lang.parrot_instruction is not None) == parrot, lang
        assert (lang.option_letter_words is not None) == parrot, lang
        assert not lang.option_letter_aliases or parrot, lang
    assert language_row("cn").parrot_file_code == "cn" and language_row("zh_Hans").name == "Chinese"
    assert normalize_language("pt-BR") == "pt"


def test_readers_take_their_facts_from_the_table():
    from plast_plugin.commands.eval import task_list
    from plast_plugin.eval.extract import LETTER_ALIASES
    from plast_plugin.eval.parrot_data import parrot_filename
    from plast_plugin.eval.prompts import ANSWER_INSTRUCTIONS, answer_instruction

    for code in PARROT_LANGUAGES:
        row = language_row(code)
        assert parrot_filename("mmmb", code) == f"mmmb/mmmb_{row.parrot_file_code}.tsv"
        assert answer_instruction(code) == ANSWER_INSTRUCTIONS[code] == row.parrot_instruction
        assert all(LETTER_ALIASES[char] == letter for char, letter in row.option_letter_aliases.items())
    assert task_list("mmmb", ",".join(PARROT_LANGUAGES)) == ["mmmb"]  # all of them: the group
    assert task_list("mmmb", "cn,ar") == ["mmmb_zh", "mmmb_ar"]
