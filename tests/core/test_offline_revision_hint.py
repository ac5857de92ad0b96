"""A model missing from the offline cache at a pinned revision: the suggested download command
fetches that revision (without --revision it would fetch main, and the run would fail again)."""

from plast_plugin.models.model_source import ModelNotFoundError, read_config

import pytest


def test_offline_download_hint_carries_the_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelNotFoundError) as err:
        read_config("nobody/no-such-model", revision="v1.2")
    assert "`huggingface-cli download nobody/no-such-model --revision v1.2`" in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        read_config("nobody/no-such-model")
    assert "`huggingface-cli download nobody/no-such-model`" in str(err.value)
