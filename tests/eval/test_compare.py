"""`plast compare`: paired statistics checked against hand-computed values, and two real
lmms-eval runs (scripted model, Parrot-format fixtures) compared end to end."""

import json
import subprocess
import sys
from math import sqrt

import pytest

from eval_testutil import REPO, install_scripted_model, parrot_dir, subprocess_env  # noqa: F401 (fixture)
from parrot_fixtures import md5_pins, scripted_answers
from plast_plugin.eval.compare import compare_runs, read_run, task_outcomes
from plast_plugin.eval.paired_stats import (PairedCounts, bootstrap_delta_ci, mcnemar_exact_p, mean_delta_ci,
                                            paired_counts)
from plast_plugin.errors import PlastError


# --- the statistics, by hand ---------------------------------------------------------------

def test_counts_accuracies_and_delta():
    a = [1, 1, 0, 1, 0, 0, 1]
    b = [0, 1, 1, 1, 1, 0, 1]
    c = paired_counts(a, b)
    assert (c.both, c.only_a, c.only_b, c.neither) == (3, 1, 2, 1)
    assert c.acc_a == pytest.approx(4 / 7) and c.acc_b == pytest.approx(5 / 7)
    assert c.delta == pytest.approx(1 / 7)
    with pytest.raises(ValueError, match="same units"):
        paired_counts([1, 0], [1])


@pytest.mark.parametrize("only_a,only_b,expected", [
    (0, 0, 1.0),                 # no discordant pair: no evidence either way
    (1, 5, 2 * (1 + 6) / 64),    # n=6: 2 * (C(6,0) + C(6,1)) / 2^6 = 0.21875
    (5, 1, 2 * (1 + 6) / 64),    # symmetric
    (0, 6, 2 / 64),              # 0.03125
    (0, 10, 2 / 1024),           # 0.001953125
    (3, 3, 1.0),                 # 2 * P[X <= 3 | n=6] = 2 * 42/64 > 1, capped
    (2, 8, 2 * (1 + 10 + 45) / 1024),  # 0.109375
])
def test_mcnemar_exact_p_by_hand(only_a, only_b, expected):
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(expected, abs=1e-15)


def test_mcnemar_large_counts_do_not_overflow():
    p = mcnemar_exact_p(700, 800)  # 2^1500 does not fit a float; exact integers do
    assert 0.0 < p < 0.02


def test_bootstrap_equals_plain_resampling_and_the_normal_width():
    """The multinomial shortcut against a brute-force bootstrap of the units, and both against
    the normal approximation sd = sqrt((p01 + p10 - delta^2) / n)."""
    import numpy as np

    a = [1] * 900 + [1] * 80 + [0] * 130 + [0] * 600
    b = [1] * 900 + [0] * 80 + [1] * 130 + [0] * 600
    counts = paired_counts(a, b)
    low, high = bootstrap_delta_ci(counts, resamples=20000, seed=1)
    rng = np.random.default_rng(7)
    diff = np.array(b) - np.array(a)
    brute = diff[rng.integers(0, len(diff), size=(4000, len(diff)))].mean(axis=1)
    b_low, b_high = np.percentile(brute, [2.5, 97.5])
    n = counts.n
    sd = sqrt((80 / n + 130 / n - counts.delta ** 2) / n)
    for lo, hi in ((low, high), (b_low, b_high)):
        assert lo == pytest.approx(counts.delta - 1.96 * sd, abs=0.003)
        assert hi == pytest.approx(counts.delta + 1.96 * sd, abs=0.003)
    assert (low, high) == bootstrap_delta_ci(counts, resamples=20000, seed=1)  # seeded
    assert bootstrap_delta_ci(PairedCounts(5, 0, 0, 5)) == (0.0, 0.0)  # no discordant pair


def test_mean_over_languages_is_a_stratified_bootstrap():
    same = PairedCounts(500, 50, 90, 360)
    low, high = mean_delta_ci([same, same, same, same], resamples=20000, seed=3)
    sd_one = sqrt((0.05 + 0.09 - 0.04 ** 2) / 1000)
    sd_mean = sd_one / 2  # four independent languages
    assert low == pytest.approx(0.04 - 1.96 * sd_mean, abs=0.002)
    assert high == pytest.approx(0.04 + 1.96 * sd_mean, abs=0.002)


# --- two real lmms-eval runs ------------------------------------------------------------------

def _run_b_answers():
    """Run B: MMMB en rows 0 wrong (A right), 2 and 4 right (A wrong); MMBench en: original 2
    right, groups 1 and 2 fully right, group 0 broken by its copy 3000000."""
    answers = scripted_answers(("en",))
    answers["mmmb_en"].update({"0": "B", "2": "D", "4": "A"})
    answers["mmbench_ml_en"].update({"2": "A", "1000002": "B", "1000001": "C", "3000000": "A"})
    return answers


def _lmms_run(tmp, parrot_dir, name, answers, tasks="mmmb_en,mmbench_ml_en", extra=()):
    site = install_scripted_model(tmp / "site")
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(answers, ensure_ascii=False))
    out = tmp / name
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "plast_scripted", "--model_args", f"answers={path}",
           "--tasks", tasks, "--include_path", str(REPO / "eval_tasks"), "--output_path", str(out),
           "--batch_size", "1", "--log_samples", *extra]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp, PLAST_PARROT_DIR=parrot_dir, PYTHONPATH=site,
                                                      PLAST_PARROT_MD5=md5_pins(parrot_dir)),
                          capture_output=True, text=True, timeout=300)
    assert list(out.rglob("*_samples_*.jsonl")), proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, parrot_dir):
    tmp = tmp_path_factory.mktemp("compare")
    run_a = _lmms_run(tmp, parrot_dir, "run_a", scripted_answers(("en",)))
    run_b = _lmms_run(tmp, parrot_dir, "run_b", _run_b_answers())
    return tmp, run_a, run_b


def _row(result, task, metric):
    return next(r for r in result["rows"] if r["task"] == task and r["metric"] == metric)


def test_compare_two_lmms_eval_runs_by_hand(two_runs):
    _, run_a, run_b = two_runs
    result = compare_runs(read_run(run_a), read_run(run_b), resamples=2000, seed=0)
    mmmb = _row(result, "mmmb_en", "acc")
    # A right on rows 0 1 3, B on 1 2 3 4: both 2, only A 1, only B 2
    assert (mmmb["both_right"], mmmb["only_a_right"], mmmb["only_b_right"], mmmb["neither_right"]) == (2, 1, 2, 0)
    assert (mmmb["acc_a"], mmmb["acc_b"], mmmb["delta"]) == pytest.approx((0.6, 0.8, 0.2))
    assert mmmb["mcnemar_p"] == pytest.approx(1.0)  # 2 * (C(3,0) + C(3,1)) / 8 capped at 1
    acc = _row(result, "mmbench_ml_en", "acc")  # originals 0 1 2: A right on 0 1, B on 0 1 2
    assert (acc["n"], acc["acc_a"], acc["acc_b"], acc["only_b_right"]) == (3, pytest.approx(2 / 3), 1.0, 1)
    circ = _row(result, "mmbench_ml_en", "circular_acc")  # groups: A [1 0 0], B [0 1 1]
    assert (circ["n"], circ["only_a_right"], circ["only_b_right"]) == (3, 1, 2)
    assert (circ["acc_a"], circ["acc_b"], circ["delta"]) == pytest.approx((1 / 3, 2 / 3, 1 / 3))
    for row in (mmmb, acc, circ):
        assert row["ci95"][0] <= row["delta"] <= row["ci95"][1]
    assert result["means"] == []  # one language per benchmark: no mean row
    # the fixtures are not Parrot's files: the comparison says so, so it cannot pass for a benchmark result
    assert [r["published_data"] for r in (mmmb, acc, circ)] == [False] * 3
    assert any(w.startswith("NOT the published benchmark files") and "mmbench_ml_en, mmmb_en" in w
               for w in result["warnings"])


def test_task_outcomes_are_the_units_compare_pairs(two_runs):
    """What `plast ablate --plast-eval` reads per run: each unit's pass/fail, per task and metric."""
    _, _, run_b = two_runs
    outcomes = task_outcomes(read_run(run_b))
    assert outcomes["mmmb_en"] == {"acc": {0: False, 1: True, 2: True, 3: True, 4: True}}
    # MMBench: acc over the original rows, circular_acc over the groups (group 0 broken by copy 3000000)
    assert outcomes["mmbench_ml_en"] == {"acc": {0: True, 1: True, 2: True},
                                         "circular_acc": {0: False, 1: True, 2: True}}


def test_plast_compare_cli_writes_table_json_and_plot(two_runs):
    tmp, run_a, run_b = two_runs
    out = tmp / "cmp"
    cmd = [sys.executable, "-m", "plast_plugin.cli", "compare", str(run_a), str(run_b), "--out", str(out),
           "--resamples", "500"]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("mmmb_en"))
    assert "60.00" in line and "80.00" in line and "+20.00" in line
    assert "warning: NOT the published benchmark files" in proc.stdout
    data = json.loads((out / "compare.json").read_text())
    assert _row(data, "mmbench_ml_en", "circular_acc")["delta"] == pytest.approx(1 / 3)
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp), capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "already exist" in again.stderr  # never overwrites a result


def test_compare_refuses_unpaired_runs(two_runs, parrot_dir):
    tmp, run_a, _ = two_runs
    limited = _lmms_run(tmp, parrot_dir, "run_limited", scripted_answers(("en",)), tasks="mmmb_en",
                        extra=("--limit", "3"))
    with pytest.raises(PlastError, match=r"mmmb_en: the runs scored different rows \(5 in A, 3 in B"):
        compare_runs(read_run(run_a), read_run(limited))
    with pytest.raises(PlastError, match="no lmms-eval sample logs"):
        read_run(tmp / "site")
