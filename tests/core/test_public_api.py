"""`from plast_plugin import ...` gives every name the API promises, without making the package
import heavy: the LLaVA hook and the `plast` parser import it before any model work."""

from __future__ import annotations

import subprocess
import sys

import pytest

import plast_plugin


@pytest.mark.parametrize("name", plast_plugin.__all__)
def test_every_public_name_imports(name):
    namespace: dict = {}
    exec(f"from plast_plugin import {name}", namespace)
    assert namespace[name] is getattr(plast_plugin, name)


def test_importing_the_package_loads_no_torch():
    code = "import sys, plast_plugin; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'select'"):
        plast_plugin.select  # noqa: B018


def test_select_in_python_as_the_readme_shows(tiny_llama_dir, questions_jsonl, tmp_path):
    from plast_plugin import (SelectionFile, SelectionOptions, load_for_probe, load_parallel_questions,
                              load_selected_layers, run_selection, write_selection)

    model, tokenizer, image_processor = load_for_probe(str(tiny_llama_dir), "cpu", "fp32")
    questions = load_parallel_questions(questions_jsonl, ["zh"])
    selection = run_selection(model, tokenizer, questions, SelectionOptions(rule="msd-top:2", contiguous_shallow=False),
                              image_processor=image_processor, progress=False)
    path = write_selection(selection, tmp_path / "select", plot=False)
    assert SelectionFile.load(path).selected_layers == selection.selected_layers
    assert load_selected_layers(path, model) == selection.selected_layers and len(selection.selected_layers) == 2
