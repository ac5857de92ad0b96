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
from parrot_fixtures import (EXACT_EXPECTED, LANGS, MMBENCH_EXPECTED, MMBENCH_ROWS, MMMB_EXPECTED, md5_pins,
                             scripted_answers, write_tsv, tsv_rows)
from plast_plugin.eval.parrot_data import file_md5
from plast_plugin.eval.prompts import ANSWER_INSTRUCTIONS, VLMEVALKIT_INSTRUCTION_CJK

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
           "--include_path", str(REPO / "eval_tasks"), "--output_path", str(out), "--batch_size", "1",
           "--log_samples"]
    # the fixtures are not the published files: pin their md5s explicitly (the "user pin" path)
    env = subprocess_env(tmp, PLAST_PARROT_DIR=parrot_dir, PYTHONPATH=site, PLAST_PARROT_MD5=md5_pins(parrot_dir))
    proc = subprocess.run(cmd, cwd=tmp, env=env,
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


def test_exact_matcher_scores_as_computed_by_hand(scripted_run):
    out, _, proc = scripted_run
    results = _results(out)["results"]
    for lang in LANGS:
        assert results[f"mmmb_{lang}"]["acc_exact,none"] == pytest.approx(EXACT_EXPECTED["mmmb"][lang]), lang
        acc, circular = EXACT_EXPECTED["mmbench_ml"][lang]
        assert results[f"mmbench_ml_{lang}"]["acc_exact,none"] == pytest.approx(acc), lang
        assert results[f"mmbench_ml_{lang}"]["circular_acc_exact,none"] == pytest.approx(circular), lang


def _samples(out, task):
    path = next(out.rglob(f"*_samples_{task}.jsonl"))
    return {s["acc"]["index"]: s["acc"] for s in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def test_both_predictions_in_the_sample_log(scripted_run):
    out, _, _ = scripted_run
    pt = _samples(out, "mmmb_pt")
    # "A resposta é B": our extractor reads B; VLMEvalKit's tokens hold A and B -> no answer
    assert pt[3]["response"] == "A resposta é B"
    assert (pt[3]["prediction"], pt[3]["prediction_exact"], pt[3]["correct"], pt[3]["correct_exact"]) == \
        ("B", None, True, False)
    zh = _samples(out, "mmbench_ml_zh")
    assert zh[1000000]["response"] == "Ｂ" and zh[1000000]["prediction"] == "B" and zh[1000000]["prediction_exact"] is None
    assert all(r["protocol"] == "vlmevalkit" for r in zh.values())


def test_data_md5_and_counts_recorded(scripted_run, parrot_dir):
    out, _, _ = scripted_run
    scores = json.loads(next(out.rglob("mmbench_ml_zh_scores.json")).read_text())
    data = scores["data"]
    assert data["md5"] == file_md5(parrot_dir / "mmbench" / "mmbench_dev_cn.tsv")
    # expected_md5 stays the published file's; the user's pin is recorded beside it
    assert data["md5_check"] == "user pin" and data["pinned_md5"] == data["md5"]
    assert data["expected_md5"] == "2ed5135326fed02c8e51ea50dda8222f" and data["published_file"] is False
    assert any(w.startswith("not the published file") for w in data["warnings"])
    assert (data["rows"], data["questions"], data["expected_questions"], data["rotated_copies"]) == (9, 3, 1164, 6)
    assert any("has 3 questions" in w and "1164" in w for w in data["warnings"])
    assert scores["protocol"] == "vlmevalkit" and "circular_acc_kind" not in scores
    assert scores["exact_match"]["acc"] == pytest.approx(0.0)
    mmmb = json.loads(next(out.rglob("mmmb_en_scores.json")).read_text())["data"]
    assert (mmmb["rows"], mmmb["expected_questions"]) == (5, 1710)


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
        # protocol vlmevalkit (default): English instruction, Chinese one only for a CJK prompt
        expected = VLMEVALKIT_INSTRUCTION_CJK if lang == "zh" else ANSWER_INSTRUCTIONS["en"]
        assert first["prompt"].endswith("\nD. yellow\n" + expected), first["prompt"]
        assert first["n_images"] == 1 and first["colour"] == [255, 0, 0]
        # row 1 reuses row 0's picture, row 4 reuses row 3's
        assert by_key[(f"mmmb_{lang}", 1)]["colour"] == [255, 0, 0]
        assert by_key[(f"mmmb_{lang}", 4)]["colour"] == [0, 255, 0]
        # option B "NA" is NaN to pandas' default reader (VLMEvalKit's): not shown
        row2 = by_key[(f"mmmb_{lang}", 2)]["prompt"]
        assert "\nA. Paris\nC. Rome\nD. Berlin\n" in row2 and "B. " not in row2
        # MMBench rotations reuse the original's picture; option C "None" is NaN too: not shown
        assert by_key[(f"mmbench_ml_{lang}", 3000000)]["colour"] == [200, 10, 10]
        q2 = by_key[(f"mmbench_ml_{lang}", 2)]["prompt"]
        assert "\nA. true\nB. false\n" + expected in q2 and "C. " not in q2 and "D. " not in q2


def _plast_eval(tmp, parrot_dir, *extra, pins=True, languages="cn,tr", answers=None):
    site = install_scripted_model(tmp / "site")
    if answers is None:
        answers = tmp / "answers.json"
        answers.write_text(json.dumps(scripted_answers(), ensure_ascii=False))
    out = tmp / "out"
    log = tmp / "asked.jsonl"
    pin = ["--parrot-md5", md5_pins(parrot_dir)] if pins and (parrot_dir / "mmbench").exists() else []
    cmd = [sys.executable, "-m", "plast_plugin.cli", "eval", "--model", "plast_scripted",
           "--model-args", f"answers={answers},log={log}", "--benchmarks", "mmbench_ml", "--languages", languages,
           "--parrot-dir", str(parrot_dir), "--output", str(out), *pin, *extra]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(tmp, PYTHONPATH=site), capture_output=True,
                          text=True, timeout=300)
    asked = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    return proc, out, asked


def test_plast_eval_runs_lmms_eval_and_reports(tmp_path, parrot_dir):
    proc, out, _ = _plast_eval(tmp_path, parrot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mmbench_ml_zh" in proc.stdout and "circular_acc 0.3333" in proc.stdout
    assert "protocol vlmevalkit" in proc.stdout and "acc_exact 0.6667" in proc.stdout  # tr, by hand
    assert _results(out)["results"]["mmbench_ml_tr"]["acc,none"] == pytest.approx(MMBENCH_EXPECTED["acc"])


def test_plast_eval_parrot_protocol_uses_per_language_instructions(tmp_path, parrot_dir):
    proc, out, asked = _plast_eval(tmp_path, parrot_dir, "--protocol", "parrot")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for a in asked:
        lang = a["task"].rsplit("_", 1)[1]
        assert a["prompt"].endswith("\n" + ANSWER_INSTRUCTIONS[lang]), a["prompt"]
    assert {a["task"] for a in asked} == {"mmbench_ml_zh", "mmbench_ml_tr"}
    scores = json.loads(next(out.rglob("mmbench_ml_tr_scores.json")).read_text())
    assert scores["protocol"] == "parrot"


def test_plast_eval_refuses_data_with_another_md5(tmp_path, parrot_dir):
    proc, out, asked = _plast_eval(tmp_path, parrot_dir, pins=False, languages="zh")
    assert proc.returncode == 1 and not asked and not out.exists()  # refused before lmms-eval starts
    md5 = file_md5(parrot_dir / "mmbench" / "mmbench_dev_cn.tsv")
    assert proc.stderr.startswith(f"plast eval: error: {parrot_dir / 'mmbench' / 'mmbench_dev_cn.tsv'}: md5 {md5} "
                                  "differs from the published (VLMEvalKit) md5 2ed5135326fed02c8e51ea50dda8222f "
                                  "of mmbench_ml_zh"), proc.stderr[-2000:]
    assert f"PLAST_PARROT_MD5=mmbench_ml_zh={md5}" in proc.stderr  # the explicit override is named


def test_lmms_eval_task_refuses_data_with_another_md5(tmp_path, parrot_dir):
    """The same check inside the task, for users who run lmms-eval directly."""
    site = install_scripted_model(tmp_path / "site")
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(scripted_answers(), ensure_ascii=False))
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "plast_scripted", "--model_args", f"answers={answers}",
           "--tasks", "mmmb_ru", "--include_path", str(REPO / "eval_tasks"), "--output_path", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(tmp_path, PLAST_PARROT_DIR=parrot_dir, PYTHONPATH=site),
                          capture_output=True, text=True, timeout=300)
    assert not list((tmp_path / "o").rglob("*_results.json"))
    assert "differs from the published (VLMEvalKit) md5 ce1cc8a0533425ab0d86b326ebfc2984 of mmmb_ru" in proc.stderr


def test_plast_eval_any_md5_is_recorded_as_unchecked(tmp_path, parrot_dir):
    proc, out, _ = _plast_eval(tmp_path, parrot_dir, "--parrot-md5", "any", pins=False, languages="tr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(next(out.rglob("mmbench_ml_tr_scores.json")).read_text())["data"]
    assert data["md5_check"] == "unchecked" and data["md5"] == file_md5(parrot_dir / "mmbench" / "mmbench_dev_tr.tsv")
    assert "not checked (PLAST_PARROT_MD5=any)" in proc.stdout + proc.stderr


def test_circular_task_without_rotated_copies_warns_and_is_single_pass(tmp_path):
    originals = [r for r in MMBENCH_ROWS if r[0] < 1000000]
    root = tmp_path / "parrot"
    write_tsv(root / "mmbench" / "mmbench_dev_tr.tsv", tsv_rows(originals, "tr"))
    proc, out, _ = _plast_eval(tmp_path, root, "--parrot-md5", "any", pins=False, languages="tr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "circular_acc is SINGLE-PASS here" in proc.stdout + proc.stderr  # lmms-eval's log
    assert "warning: mmbench_ml_tr: circular_acc is single-pass" in proc.stdout  # plast eval's summary
    scores = json.loads(next(out.rglob("mmbench_ml_tr_scores.json")).read_text())
    assert scores["circular_acc_kind"].startswith("single-pass") and scores["data"]["single_pass"] is True
    assert scores["circular_acc"] == scores["acc"] == pytest.approx(2 / 3)


def test_plast_eval_fails_when_lmms_eval_fails(tmp_path, parrot_dir):
    proc, _, _ = _plast_eval(tmp_path, parrot_dir, answers=tmp_path / "no_such_answers.json")
    assert proc.returncode == 1
    assert "lmms-eval wrote no results" in proc.stderr
    assert "no_such_answers.json" in proc.stdout + proc.stderr  # lmms-eval's own error reached the log


def test_plast_eval_names_a_missing_data_file(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc, _, _ = _plast_eval(tmp_path, empty)
    assert proc.returncode == 1
    assert "PLAST_PARROT_DIR=" in proc.stderr and "holds neither" in proc.stderr and "mmbench_dev_" in proc.stderr


def test_task_names_are_found_and_collide_with_no_builtin():
    from lmms_eval.tasks import TaskManager

    from plast_plugin.eval import tasks_dir
    from generate_tasks import group_names, task_names

    builtin = set(TaskManager("ERROR", include_defaults=True).all_tasks)
    ours = set(task_names()) | set(group_names())
    assert not ours & builtin
    found = set(TaskManager("ERROR", include_path=str(tasks_dir()), include_defaults=False).all_tasks)
    assert ours <= found
