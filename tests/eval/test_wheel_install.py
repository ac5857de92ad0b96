"""A regular install is complete: the wheel, installed into a fresh venv with no source checkout on
the path, ships the lmms-eval tasks, and lmms-eval lists them from `tasks_dir()`."""
import subprocess

import pytest

from eval_testutil import REPO, subprocess_env

pytest.importorskip("lmms_eval", reason="the eval env has lmms-eval")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    from plast_plugin.testing.wheel_install import build_wheel, venv_with_wheel

    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(REPO, root)
    return {"python": venv_with_wheel(wheel, root / "venv"), "root": root, "wheel": wheel}


def _run(installed, *args):
    env = subprocess_env(installed["root"])
    env.pop("PYTHONPATH", None)  # no source checkout on the path: only what the wheel installed
    return subprocess.run([str(installed["python"]), *args], cwd=installed["root"], capture_output=True, text=True,
                          env=env, timeout=600)


def test_tasks_ship_inside_the_installed_package(installed):
    proc = _run(installed, "-c", "import plast_plugin, plast_plugin.eval as e; print(plast_plugin.__file__); "
                                 "print(e.tasks_dir())")
    assert proc.returncode == 0, proc.stderr
    package_file, tasks = proc.stdout.split()
    venv = str(installed["python"].parents[1])
    assert package_file.startswith(venv) and tasks.startswith(venv), proc.stdout  # not the checkout
    assert str(REPO) not in proc.stdout


def test_lmms_eval_lists_the_tasks_from_a_regular_install(installed):
    tasks = _run(installed, "-c", "import plast_plugin.eval as e; print(e.tasks_dir())").stdout.strip()
    proc = _run(installed, "-m", "lmms_eval", "--tasks", "list", "--include_path", tasks)
    listed = proc.stdout + proc.stderr
    assert "mmmb_zh" in listed and "mmbench_ml_ar" in listed, listed[-3000:]


def test_the_wheel_installs_the_cli_and_the_hook(installed):
    bin_dir = installed["python"].parent
    assert (bin_dir / "plast").exists()
    proc = subprocess.run([str(bin_dir / "plast"), "--version"], capture_output=True, text=True, cwd=installed["root"])
    assert proc.returncode == 0 and proc.stdout.startswith("plast-plugin "), proc.stderr
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "plast-llava-hook.pth" in names
    assert "plast_plugin/eval/tasks/mmmb/mmmb_zh.yaml" in names


def test_ablate_through_the_hf_path_without_a_checkout_names_the_launcher_to_give(installed):
    """A wheel has no scripts/: `plast ablate --trainer hf` without --launcher says so before anything runs."""
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
    from plast_plugin.testing.tiny_models import make_tiny_vlm

    root = installed["root"]
    make_tiny_vlm("qwen2_5_vl", root / "model")
    SelectionFile(selected_layers=[1], rule="manual",
                  model=ModelIdentity("Qwen2_5_VLForConditionalGeneration", 3, 128, 64, "model")).save(
        root / "plast_layers.json")
    (root / "heldout.jsonl").write_text('{"id": "1", "lang": "en", "question": "Why?"}\n'
                                        '{"id": "1", "lang": "zh", "question": "为什么？"}\n', encoding="utf-8")
    proc = _run(installed, "-m", "plast_plugin.cli", "ablate", "--trainer", "hf", "--selection", "plast_layers.json",
                "--heldout", "heldout.jsonl", "--out", "run", "--", "--model", "model")
    assert proc.returncode != 0 and "give --launcher 'python path/to/train_hf_example.py'" in proc.stderr, proc.stderr
    assert not (root / "run").exists()
