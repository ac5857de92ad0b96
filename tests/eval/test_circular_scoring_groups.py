"""MMBench circular scoring counts complete groups only: a group missing its original row or some
of its rotated copies (a lost row, a row-wise --limit) is counted, warned about and left out,
and a metric over nothing is not reported as 0.0."""

import json
import math
import subprocess
import sys

import pytest

from eval_testutil import REPO, install_scripted_model, parrot_dir, subprocess_env  # noqa: F401 (fixture)
from parrot_fixtures import MMBENCH_ROWS, md5_pins, scripted_answers
from plast_plugin.eval.lmms_tasks import with_groups
from plast_plugin.eval.scoring import summarize


def _rec(index, ok, size=None):
    return {"index": index, "correct": ok, "category": "c", "l2_category": "", "group_size": size}


def test_group_without_its_original_row_is_not_scored():
    records = [_rec(0, True), _rec(1000000, True),      # complete, right
               _rec(1, False), _rec(1000001, True),     # complete, wrong
               _rec(1000002, True), _rec(2000002, True)]  # original missing
    s = summarize(records, circular=True)
    assert s["circular_acc"] == pytest.approx(1 / 2) and s["acc"] == pytest.approx(1 / 2)
    assert s["circular_acc"] <= s["acc"]
    assert (s["n_questions"], s["n_incomplete_groups"], s["n_unscored_rows"]) == (2, 1, 2)
    assert any("1 circular group(s) incomplete" in w and "question 2" in w for w in s["warnings"])


def test_group_cut_short_of_its_file_size_is_not_scored():
    records = [_rec(0, True, 4), _rec(1000000, True, 4),  # 2 of its 4 rows: all right, but unproven
               _rec(1, True, 2), _rec(1000001, True, 2)]
    s = summarize(records, circular=True)
    assert s["circular_acc"] == 1.0 and s["n_questions"] == 1 and s["n_incomplete_groups"] == 1


def test_no_original_row_means_not_measured_not_zero():
    s = summarize([_rec(1000000, True), _rec(2000000, False)], circular=True)
    assert s["acc"] is None and s["circular_acc"] is None and s["n_original"] == 0
    assert any("not measured" in w for w in s["warnings"])


def test_limit_keeps_whole_circular_groups():
    docs = [{"index": r[0], "row": k} for k, r in enumerate(MMBENCH_ROWS)]
    kept = with_groups(docs, circular=True, limit=2)
    assert [d["index"] for d in kept] == [0, 1000000, 2000000, 3000000, 1, 1000001, 2000001]
    assert [d["group_size"] for d in kept] == [4, 4, 4, 4, 3, 3, 3]
    assert [d["row"] for d in with_groups(docs, circular=False, limit=3)] == [0, 1, 2]


def _eval(tmp, parrot_dir, *extra, lmms_eval_limit=None):
    site = install_scripted_model(tmp / "site")
    answers = tmp / "answers.json"
    answers.write_text(json.dumps(scripted_answers(), ensure_ascii=False))
    out = tmp / "out"
    cmd = [sys.executable, "-m", "plast_plugin.cli", "eval", "--model", "plast_scripted",
           "--model-args", f"answers={answers}", "--benchmarks", "mmbench_ml", "--languages", "tr",
           "--parrot-dir", str(parrot_dir), "--output", str(out), "--parrot-md5", md5_pins(parrot_dir), *extra]
    if lmms_eval_limit is not None:
        cmd += ["--lmms-eval-args", f"--limit {lmms_eval_limit}"]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp, PYTHONPATH=site), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(next(out.rglob("mmbench_ml_tr_scores.json")).read_text())
    results = json.loads(next(out.rglob("*_results.json")).read_text())["results"]["mmbench_ml_tr"]
    return proc, scores, results


def test_plast_eval_limit_scores_whole_groups(tmp_path, parrot_dir):
    proc, scores, _ = _eval(tmp_path, parrot_dir, "--limit", "2")
    # questions 0 (all four rows right) and 1 (its first copy wrong), each with every row
    assert (scores["n"], scores["n_questions"], scores["n_incomplete_groups"]) == (7, 2, 0)
    assert scores["acc"] == 1.0 and scores["circular_acc"] == pytest.approx(1 / 2)


def test_row_limit_cutting_a_group_is_warned_and_not_counted_right(tmp_path, parrot_dir):
    # lmms-eval's own --limit 2 keeps rows 0 and 1000000 of a four-row group: formerly circular_acc 1.0
    proc, scores, results = _eval(tmp_path, parrot_dir, lmms_eval_limit=2)
    assert scores["n_incomplete_groups"] == 1 and scores["circular_acc"] is None and scores["acc"] is None
    assert math.isnan(results["circular_acc,none"]) and math.isnan(results["acc,none"])
    assert "circular_acc not measured" in proc.stdout and "acc not measured" in proc.stdout
    assert "warning: mmbench_ml_tr: 1 circular group(s) incomplete" in proc.stdout


def test_compare_pairs_complete_groups_only(tmp_path):
    from plast_plugin.eval.compare import compare_runs, read_run

    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"acc": {**_rec(i, True, 2), "benchmark": "mmbench_ml", "language": "en"}}
                for i in (0, 1000000, 1, 1000001, 1000002)]  # question 2 lacks its original row
        (folder / "x_samples_mmbench_ml_en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = compare_runs(read_run(tmp_path / "a"), read_run(tmp_path / "b"), resamples=100)
    n = {r["metric"]: r["n"] for r in result["rows"]}
    assert n == {"acc": 2, "circular_acc": 2}  # formerly circular_acc over 3 groups
