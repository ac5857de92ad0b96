"""The real lmms-eval CLI, offline, on small Parrot-layout TSVs, with a scripted model.

The scores must equal the hand-computed values in ``parrot_fixtures``. lmms-eval exits 0 even
when an evaluation fails, so the tests read the results files.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval_testutil import REPO, install_scripted_model, parrot_dir, subprocess_env  # noqa: F401 (fixture)
from parrot_fixtures import LANGS, MMBENCH_EXPECTED, MMMB_EXPECTED, scripted_answers
from plast_plugin.eval.prompts import ANSWER_INSTRUCTIONS

pytest.importorskip("lmms_eval")


def _results(out: Path) -> dict:
    files = sorted(out.rglob("*_results.json"))
    assert files, f"lmms-eval wrote no results under {out}"
    return json.loads(files[-1].read_text())


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, parrot_dir):
    tmp = tmp_path_factory.mktemp("scripted")
    site = tmp / "site"
    install_scripted_model(site)
    answers = tmp / "answers.json"
    answers.write_text(json.dumps(scripted_answers(), ensure_ascii=False))
    log = tmp / "asked.jsonl"
    out = tmp / "out"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "plast_scripted",
           "--model_args", f"answers={answers},log={log}", "--tasks", "mmmb,mmbench_ml",
           "--include_path", str(REPO / "eval_tasks"), "--output_path", str(out), "--batch_size", "1"]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp, PLAST_PARROT_DIR=parrot_dir, PYTHONPATH=site),
                          capture_output=True, text=True, timeout=300)
    (tmp / "lmms_eval.log").write_text(proc.stdout + proc.stderr)
    asked = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    return out, asked, proc


def test_every_task_scores_as_computed_by_hand(scripted_run):
    out, _, proc = scripted_run
    results = _results(out)["results"]
    for lang in LANGS:
        assert results[f"mmmb_{lang}"]["acc,none"] == pytest.approx(MMMB_EXPECTED["acc"]), proc.stderr[-3000:]
        mmb = results[f"mmbench_ml_{lang}"]
        assert mmb["acc,none"] == pytest.approx(MMBENCH_EXPECTED["acc"])
        assert mmb["circular_acc,none"] == pytest.approx(MMBENCH_EXPECTED["circular_acc"])


def test_groups_average_the_languages(scripted_run):
    out, _, _ = scripted_run
    data = _results(out)
    groups = data.get("groups") or data["results"]
    assert groups["mmmb"]["acc,none"] == pytest.approx(MMMB_EXPECTED["acc"])
    assert groups["mmbench_ml"]["circular_acc,none"] == pytest.approx(MMBENCH_EXPECTED["circular_acc"])


def test_per_category_breakdown_files(scripted_run):
    out, _, _ = scripted_run
    for lang in LANGS:
        mmmb = json.loads(next(out.rglob(f"mmmb_{lang}_scores.json")).read_text())
        assert {k: v["acc"] for k, v in mmmb["by_category"].items()} == pytest.approx(MMMB_EXPECTED["by_category"])
        mmb = json.loads(next(out.rglob(f"mmbench_ml_{lang}_scores.json")).read_text())
        for metric in ("acc", "circular_acc"):
            got = {k: v["acc"] for k, v in mmb["by_category"][metric].items()}
            assert got == pytest.approx(MMBENCH_EXPECTED["by_category"][metric])
        assert mmb["n"] == 9 and mmb["n_questions"] == 3


def test_prompts_images_and_back_references(scripted_run):
    _, asked, proc = scripted_run
    assert len(asked) == 6 * (5 + 9), proc.stderr[-3000:]
    by_key = {(a["task"], a["index"]): a for a in asked}
    for lang in LANGS:
        first = by_key[(f"mmmb_{lang}", 0)]
        assert first["prompt"].endswith(ANSWER_INSTRUCTIONS[lang])
        assert first["n_images"] == 1 and first["colour"] == [255, 0, 0]
        # row 1 reuses row 0's picture, row 4 reuses row 3's
        assert by_key[(f"mmmb_{lang}", 1)]["colour"] == [255, 0, 0]
        assert by_key[(f"mmmb_{lang}", 4)]["colour"] == [0, 255, 0]
        # option B "NA" is read as absent (pandas), so row 2 lists A, C, D only
        row2 = by_key[(f"mmmb_{lang}", 2)]["prompt"]
        assert "\nA. Paris\nC. Rome\nD. Berlin\n" in row2 and "B. " not in row2
        # MMBench rotations reuse the original's picture; option C "None" is dropped
        assert by_key[(f"mmbench_ml_{lang}", 3000000)]["colour"] == [200, 10, 10]
        q2 = by_key[(f"mmbench_ml_{lang}", 2)]["prompt"]
        assert "\nA. true\nB. false\n" in q2 and "C. " not in q2


def _plast_eval(tmp, parrot_dir, *extra):
    site = tmp / "site"
    if not site.exists():
        install_scripted_model(site)
    answers = tmp / "answers.json"
    answers.write_text(json.dumps(scripted_answers(), ensure_ascii=False))
    out = tmp / "out"
    cmd = [sys.executable, "-m", "plast_plugin.cli", "eval", "--model", "plast_scripted",
           "--model-args", f"answers={answers}", "--benchmarks", "mmbench_ml", "--languages", "cn,tr",
           "--parrot-dir", str(parrot_dir), "--output", str(out), *extra]
    return subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp, PYTHONPATH=site), capture_output=True,
                          text=True, timeout=300), out


def test_plast_eval_runs_lmms_eval_and_reports(tmp_path, parrot_dir):
    proc, out = _plast_eval(tmp_path, parrot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mmbench_ml_zh" in proc.stdout and "circular_acc 0.3333" in proc.stdout
    assert _results(out)["results"]["mmbench_ml_tr"]["acc,none"] == pytest.approx(MMBENCH_EXPECTED["acc"])


def test_plast_eval_fails_when_lmms_eval_fails(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc, _ = _plast_eval(tmp_path, empty)
    assert proc.returncode == 1
    assert "lmms-eval wrote no results" in proc.stderr
    log = proc.stdout + proc.stderr  # the data error, naming the missing file, reached the log
    assert "PLAST_PARROT_DIR=" in log and "holds neither" in log and "mmbench_dev_" in log


def test_task_names_are_found_and_collide_with_no_builtin():
    from lmms_eval.tasks import TaskManager

    from plast_plugin.eval import GROUP_NAMES, TASK_NAMES, tasks_dir

    builtin = set(TaskManager("ERROR", include_defaults=True).all_tasks)
    ours = set(TASK_NAMES) | set(GROUP_NAMES)
    assert not ours & builtin
    found = set(TaskManager("ERROR", include_path=str(tasks_dir()), include_defaults=False).all_tasks)
    assert ours <= found
