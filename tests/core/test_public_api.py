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
