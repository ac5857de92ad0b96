"""`plast ablate --plast-eval`: every run of the tiny LLaVA is also scored by the eval env's real
`plast eval` (plast export --to-hf, then the real lmms_eval CLI) on a tiny translation-choice set
(scripts/demo_mc_set.py, Parrot's layout), and the report gives per-task accuracy over seeds, PLAST
minus each alternative paired by seed and question, and an accuracy verdict read the right way round
(higher is better).

Needs both environments: the eval env's plast is found like tests/eval finds the training env
(``$PLAST_ENVS_DIR``, default the checkout's ``.envs``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_ablate import _selection, ablate

REPO = Path(__file__).resolve().parents[2]
EVAL_PLAST = Path(os.environ.get("PLAST_ENVS_DIR", REPO / ".envs")) / "eval" / "bin" / "plast"
pytestmark = pytest.mark.skipif(not EVAL_PLAST.exists(),
                                reason=f"the eval env's plast ({EVAL_PLAST}) is absent: build .envs/eval or set "
                                "PLAST_ENVS_DIR to the folder holding eval/")
TASKS = {"mmbench_ml_zh", "mmbench_ml_ru"}


def _mc_set(assets, out: Path) -> str:
    """The 4 parallel probe questions as a translation-choice set (4 options, 4 rotations) in en, zh, ru,
    built by the demo's script; returns the md5 pins plast eval needs to serve it under the mmbench_ml
    task names."""
    # The set is the probe questions on purpose (the runs only need something to score), so the
    # script's required --exclude gets an empty file.
    nothing = out.parent / "nothing_excluded.jsonl"
    nothing.write_text("", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo_mc_set.py"), "--heldout", str(assets["probe"]),
                           "--exclude", str(nothing), "--languages", "en,zh,ru", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return (out / "parrot_md5.txt").read_text(encoding="utf-8").strip()


def _options(mc: Path, pins: str) -> list[str]:
    eval_args = (f"--benchmarks mmbench_ml --languages zh,ru --parrot-dir {mc} --parrot-md5 {pins} --device cpu "
                 f"--model-args dtype=float32 --lmms-eval-args '--gen_kwargs max_new_tokens=2 --verbosity WARNING'")
    return ["--seeds", "2", "--alternatives", "random", "--random-draws", "1",
            "--plast-eval", str(EVAL_PLAST), "--eval-args", eval_args]


@pytest.fixture(scope="module")
def scored(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate_eval")
    pins = _mc_set(assets, root / "mc")
    selection = _selection(assets, root / "plast_layers.json", [1, 2])
    out = root / "run"
    options = _options(root / "mc", pins)
    proc = ablate(assets, selection, out, *options)
    return {"proc": proc, "out": out, "selection": selection, "options": options}


def test_every_run_is_scored_by_plast_eval_and_summarized_per_task(scored):
    from plast_plugin.ablation import stats

    proc, out = scored["proc"], scored["out"]
    assert proc.returncode == 0, proc.stdout[-6000:]
    results = {}
    for name in ("plast-seed0", "plast-seed1", "random1-seed0", "random1-seed1"):
        folder = out / "runs" / name
        result = json.loads((folder / "result.json").read_text())
        assert set(result["eval"]) == TASKS
        for task in TASKS:
            # 4 held-out questions, each asked in 4 rotations: 4 original rows, 4 circular groups
            assert {m: e["units"] for m, e in result["eval"][task].items()} == {"acc": 4, "circular_acc": 4}
            assert sorted(result["eval"][task]["acc"]["correct"]) == ["0", "1", "2", "3"]
        # the real lmms_eval CLI wrote the sample logs this result was read from
        assert {p.name.split("_samples_")[1][:-6] for p in (folder / "eval").rglob("*_samples_*.jsonl")} == TASKS
        assert "lmms_eval" in (folder / "eval.log").read_text()
        assert not (folder / "train").exists() and not (folder / "eval-hf").exists()  # deleted once scored
        results[name] = result
    summary = json.loads((out / "ablation.json").read_text())
    accuracy = summary["accuracy"]
    assert accuracy["higher_is_better"] is True and set(accuracy["tasks"]) == TASKS
    for task in TASKS:
        for metric in ("acc", "circular_acc"):
            entry = accuracy["tasks"][task][metric]
            assert set(entry["alternatives"]) == {"plast", "random1"} and set(entry["differences"]) == {"random1"}
            assert entry["alternatives"]["plast"]["seeds"] == 2 and entry["alternatives"]["plast"]["units"] == 4
            diffs = [results[f"plast-seed{s}"]["eval"][task][metric]["accuracy"]
                     - results[f"random1-seed{s}"]["eval"][task][metric]["accuracy"] for s in (0, 1)]
            interval = stats.mean_interval(diffs)
            diff = entry["differences"]["random1"]
            assert (diff["mean"], diff["low"], diff["high"]) == (
                pytest.approx(interval.mean), pytest.approx(interval.low), pytest.approx(interval.high))
            assert diff["verdict"] == stats.verdict(interval, higher_is_better=True)
    table = (out / "ablation.txt").read_text()
    assert "lmms-eval accuracy through plast eval" in table and "mmbench_ml_zh circular_acc 4" in table
    assert "positive: PLAST more accurate" in proc.stdout
    recorded = json.loads(scored["selection"].read_text())["ablation"]["accuracy"]["verdicts"]
    assert {t: set(m) for t, m in recorded.items()} == {t: {"acc", "circular_acc"} for t in TASKS}


def test_a_run_killed_during_its_evaluation_is_redone(assets, scored):
    """As if killed while plast eval ran: trained, converted, half evaluated, no result.json. The re-run
    trains and evaluates that run again and leaves the finished ones alone."""
    out = scored["out"]
    assert scored["proc"].returncode == 0, scored["proc"].stdout[-3000:]
    killed = out / "runs" / "plast-seed1"
    (killed / "result.json").unlink()
    (killed / "eval-hf").mkdir()  # the conversion a killed run leaves behind
    for log in (killed / "eval").rglob("*_samples_mmbench_ml_ru.jsonl"):
        log.unlink()  # lmms-eval had written only one task's log
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    proc = ablate(assets, scored["selection"], out, *scored["options"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "3 of 4 runs already finished" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the finished runs untouched
    result = json.loads((killed / "result.json").read_text())
    assert set(result["eval"]) == TASKS and len(list((killed / "eval").rglob("*_samples_*.jsonl"))) == 2
    assert not (killed / "eval-hf").exists()


def test_accuracy_verdicts_read_higher_as_better(assets, scored):
    """Re-run on the finished folder (no training, no evaluation) after setting the runs' correctness by
    hand: PLAST right on every zh question and the random draw on none reads "PLAST better"; the
    reverse on ru reads "PLAST worse" (the loss's reading of those intervals would be the opposite)."""
    from plast_plugin.ablation import stats

    out = scored["out"]
    assert scored["proc"].returncode == 0, scored["proc"].stdout[-3000:]
    for path in (out / "runs").glob("*/result.json"):
        result = json.loads(path.read_text())
        plast = result["alternative"] == "plast"
        for task, right in (("mmbench_ml_zh", plast), ("mmbench_ml_ru", not plast)):
            for entry in result["eval"][task].values():
                entry["correct"] = {unit: int(right) for unit in entry["correct"]}
        path.write_text(json.dumps(result))
    proc = ablate(assets, scored["selection"], out, *scored["options"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "4 of 4 runs already finished" in proc.stdout
    tasks = json.loads((out / "ablation.json").read_text())["accuracy"]["tasks"]
    for metric in ("acc", "circular_acc"):
        assert tasks["mmbench_ml_zh"][metric]["differences"]["random1"]["mean"] == 1.0
        assert tasks["mmbench_ml_zh"][metric]["differences"]["random1"]["verdict"] == stats.BETTER
        assert tasks["mmbench_ml_ru"][metric]["differences"]["random1"]["mean"] == -1.0
        assert tasks["mmbench_ml_ru"][metric]["differences"]["random1"]["verdict"] == stats.WORSE
    assert "mmbench_ml_zh acc better" in proc.stdout and "mmbench_ml_ru acc worse" in proc.stdout


@pytest.mark.parametrize("options, message", [
    (["--eval-args", "--benchmarks mmmb"], "--eval-args is given without --plast-eval"),
    (["--plast-eval", "/no/such/plast"], "/no/such/plast is not an executable"),
    (["--plast-eval", str(EVAL_PLAST), "--eval-args", "--output x"], "--eval-args: --output is set by plast ablate"),
    (["--plast-eval", str(EVAL_PLAST), "--eval-args", "--benchmarks nosuch"], "unknown benchmark(s) ['nosuch']"),
])
def test_bad_eval_options_are_refused_before_training(assets, tmp_path, options, message):
    selection = _selection(assets, tmp_path / "s.json", [1, 2])
    proc = ablate(assets, selection, tmp_path / "run", *options)
    assert proc.returncode == 1
    assert message in proc.stdout and "Traceback" not in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "run").exists()

