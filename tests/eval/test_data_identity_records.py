"""What was evaluated stays on record: a pinned md5 keeps the published one beside it and says
the file is not the published one; `plast compare` compares prompt protocols task by task."""

import json

from parrot_fixtures import write_tsv
from plast_plugin.eval import parrot_data
from plast_plugin.eval.compare import compare_runs, read_run
from plast_plugin.eval.parrot_data import check_identity, file_md5, load_parrot_task
from test_parrot_data import _png_b64, _row


def test_pinned_md5_records_the_published_one_and_warns(tmp_path, monkeypatch):
    path = write_tsv(tmp_path / "mmmb_en.tsv", [_row(0, _png_b64())])
    md5 = file_md5(path)
    identity = check_identity(path, "mmmb", "en", environ={"PLAST_PARROT_MD5": f"mmmb_en={md5}"})
    record = identity.as_dict()
    assert record["md5"] == record["pinned_md5"] == md5 and record["md5_check"] == "user pin"
    assert record["expected_md5"] == parrot_data.PUBLISHED_MD5["mmmb_en"] and record["published_file"] is False
    monkeypatch.setenv("PLAST_PARROT_DIR", str(tmp_path))
    monkeypatch.setenv("PLAST_PARROT_MD5", f"mmmb_en={md5}")
    task = load_parrot_task("mmmb", "en")
    assert any(w.startswith(f"not the published file: md5 {md5}") for w in task.warnings)
    # a pin that names the published md5 itself is the published file: nothing to warn about
    monkeypatch.setitem(parrot_data.PUBLISHED_MD5, "mmmb_en", md5)
    task = load_parrot_task("mmmb", "en")
    assert task.identity.published and not any("not the published file" in w for w in task.warnings)


def _samples(folder, task, protocol):
    folder.mkdir(parents=True, exist_ok=True)
    bench, lang = task.rsplit("_", 1)
    rows = [{"acc": {"index": i, "correct": i % 2 == 0, "benchmark": bench, "language": lang, "protocol": protocol}}
            for i in range(4)]
    (folder / f"20260101_samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_compare_warns_when_a_task_used_another_protocol(tmp_path):
    # both runs used both protocols, but not for the same tasks
    _samples(tmp_path / "a", "mmmb_en", "vlmevalkit")
    _samples(tmp_path / "a", "mmmb_zh", "parrot")
    _samples(tmp_path / "b", "mmmb_en", "parrot")
    _samples(tmp_path / "b", "mmmb_zh", "vlmevalkit")
    result = compare_runs(read_run(tmp_path / "a"), read_run(tmp_path / "b"), resamples=100)
    mixed = [w for w in result["warnings"] if "different prompt protocols" in w]
    assert mixed and "mmmb_en (A: vlmevalkit, B: parrot)" in mixed[0] and "mmmb_zh (A: parrot, B: vlmevalkit)" in mixed[0]
    _samples(tmp_path / "c", "mmmb_en", "vlmevalkit")
    _samples(tmp_path / "c", "mmmb_zh", "parrot")
    same = compare_runs(read_run(tmp_path / "a"), read_run(tmp_path / "c"), resamples=100)
    assert not [w for w in same["warnings"] if "protocol" in w]
