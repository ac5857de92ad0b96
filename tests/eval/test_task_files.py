"""The lmms-eval task files in eval_tasks/ are generated from the language table, and the committed
ones are exactly what the generator writes."""

import json
import shutil

from eval_testutil import REPO
from generate_tasks import REGENERATE_COMMAND, differences, main, render_task_files
from plast_plugin.data.languages import PARROT_LANGUAGES, language_row

TASKS = REPO / "eval_tasks"


def test_committed_task_files_are_the_generated_ones():
    problems = differences(TASKS)
    assert not problems, (
        "eval_tasks/ is not what the language table (plast_plugin/data/languages.py) generates: "
        + "; ".join(problems) + f". Regenerate the files with `{REGENERATE_COMMAND}` and commit them.")


def test_every_table_language_has_a_task_reading_its_parrot_file():
    for bench, prefix in (("mmmb", "mmmb/mmmb_"), ("mmbench_ml", "mmbench/mmbench_dev_")):
        for lang in PARROT_LANGUAGES:
            source = json.loads((TASKS / bench / "sources" / f"{bench}_{lang}.jsonl").read_text(encoding="utf-8"))
            assert source == {"benchmark": bench, "language": lang, "repo": "AIDC-AI/Parrot-dataset",
                              "file": f"{prefix}{language_row(lang).parrot_file_code}.tsv"}
            assert f"task: {bench}_{lang}\n" in (TASKS / bench / f"{bench}_{lang}.yaml").read_text(encoding="utf-8")
        group = (TASKS / bench / f"{bench}.yaml").read_text(encoding="utf-8")
        assert group.count(f"  - {bench}_") == len(PARROT_LANGUAGES)
    assert json.loads((TASKS / "mmmb" / "sources" / "mmmb_zh.jsonl").read_text())["file"] == "mmmb/mmmb_cn.tsv"


def test_check_names_edited_missing_and_stale_files_and_writing_repairs_them(tmp_path, capsys):
    tasks = tmp_path / "tasks"
    shutil.copytree(TASKS, tasks)
    (tasks / "mmmb" / "mmmb_zh.yaml").write_text("task: mmmb_zh\n", encoding="utf-8")
    (tasks / "mmbench_ml" / "sources" / "mmbench_ml_ar.jsonl").unlink()
    (tasks / "mmmb" / "mmmb_xx.yaml").write_text("task: mmmb_xx\n", encoding="utf-8")

    assert main(["--check", "--out", str(tasks)]) == 1
    err = capsys.readouterr().err
    assert "mmmb/mmmb_zh.yaml differs" in err
    assert "mmbench_ml/sources/mmbench_ml_ar.jsonl is missing" in err
    assert "mmmb/mmmb_xx.yaml is not generated" in err
    assert f"regenerate them with: {REGENERATE_COMMAND} --out {tasks}" in err

    # Writing restores the generated files; the stale task is named, never deleted by the generator.
    assert main(["--out", str(tasks)]) == 1
    out, err = capsys.readouterr()
    assert "mmmb_zh.yaml" in out and "mmbench_ml_ar.jsonl" in out
    assert "mmmb_xx.yaml: not generated" in err and (tasks / "mmmb" / "mmmb_xx.yaml").exists()
    (tasks / "mmmb" / "mmmb_xx.yaml").unlink()
    assert main(["--check", "--out", str(tasks)]) == 0
    for rel in render_task_files():
        assert (tasks / rel).read_bytes() == (TASKS / rel).read_bytes(), rel


def test_generating_into_an_empty_folder_gives_the_committed_files(tmp_path):
    assert main(["--out", str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(render_task_files())
    assert not differences(tmp_path)
