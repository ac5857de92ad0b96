"""The ms-swift command that `plast export-config --for swift` prints names the flag ms-swift
uses today (--tuner_type; --train_type in ms-swift 3.x), as the README and docs do."""

from pathlib import Path

from plast_plugin.commands.export_config import USAGE

REPO = Path(__file__).resolve().parents[2]


def test_swift_hint_and_docs_name_the_same_flag():
    assert "swift sft --tuner_type full" in USAGE["swift"]
    for doc in ("README.md", "docs/other-trainers.md"):
        text = " ".join((REPO / doc).read_text(encoding="utf-8").split())
        assert "--tuner_type full" in text, doc
        assert "swift sft --train_type" not in text, doc
