"""A model missing from the offline cache at a pinned revision: the suggested download command
fetches that revision (without --revision it would fetch main, and the run would fail again)."""

from plast_plugin.models.model_source import read_config

import pytest
from plast_plugin.errors import PlastError


def test_offline_download_hint_carries_the_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(PlastError) as err:
        read_config("nobody/no-such-model", revision="v1.2")
    assert "`huggingface-cli download nobody/no-such-model --revision v1.2`" in str(err.value)
    with pytest.raises(PlastError) as err:
        read_config("nobody/no-such-model")
    assert "`huggingface-cli download nobody/no-such-model`" in str(err.value)
