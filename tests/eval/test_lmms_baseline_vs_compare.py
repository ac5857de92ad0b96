"""lmms-eval 0.7.3's own paired comparison (``--baseline <samples.jsonl>``: a paired t-test per
task) and ``plast compare`` read the same sample logs of the plugin's tasks and agree on what both
compute: the baseline's and the model's accuracy and their difference. (What only ``plast compare``
has, circular groups, McNemar, per-language means, is tested in test_compare.py.)
"""

import json
import subprocess
import sys

import pytest

from eval_testutil import REPO, install_scripted_model, parrot_dir, subprocess_env  # noqa: F401 (fixture)
from parrot_fixtures import md5_pins, scripted_answers

pytest.importorskip("lmms_eval")


def _run(tmp, parrot_dir, name, answers, *extra):
    install_scripted_model(tmp / "site")
    path = tmp / f"answers_{name}.json"
    path.write_text(json.dumps(answers, ensure_ascii=False))
    out = tmp / name
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "plast_scripted", "--model_args", f"answers={path}",
           "--tasks", "mmmb_en", "--include_path", str(REPO / "eval_tasks"), "--output_path", str(out),
           "--batch_size", "1", "--log_samples", *extra]
    env = subprocess_env(tmp, PLAST_PARROT_DIR=parrot_dir, PYTHONPATH=tmp / "site", PLAST_PARROT_MD5=md5_pins(parrot_dir))
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    results = sorted(out.rglob("*_results.json"))
    assert results, (proc.stdout + proc.stderr)[-4000:]
    return out, json.loads(results[-1].read_text())["results"]["mmmb_en"], proc


def test_lmms_eval_baseline_and_plast_compare_agree(tmp_path, parrot_dir):
    from plast_plugin.eval.compare import compare_runs, read_run

    base_answers = scripted_answers()  # rows 0, 1, 3 right (3/5)
    model_answers = {"mmmb_en": {"0": "A", "1": "C", "2": "D", "3": "A", "4": "A"}}  # rows 0, 1, 2, 4 right
    run_a, _, _ = _run(tmp_path, parrot_dir, "baseline", base_answers)
    samples_a = next(run_a.rglob("*_samples_mmmb_en.jsonl"))
    run_b, results_b, proc = _run(tmp_path, parrot_dir, "model", model_answers, "--baseline", str(samples_a))
    assert "paired_baseline_score" in results_b, proc.stderr[-3000:]

    row = next(r for r in compare_runs(read_run(run_a), read_run(run_b))["rows"] if r["task"] == "mmmb_en")
    assert (row["acc_a"], row["acc_b"]) == (pytest.approx(3 / 5), pytest.approx(4 / 5))
    assert results_b["paired_baseline_score"] == pytest.approx(100 * row["acc_a"])
    assert results_b["acc,none"] == pytest.approx(row["acc_b"])
    # lmms-eval's t interval is centred on the mean paired difference, plast compare's delta
    centre = (results_b["paired_ci_lower"] + results_b["paired_ci_upper"]) / 2
    assert centre == pytest.approx(100 * row["delta"])
