"""Build steps setup.cfg cannot express (all metadata lives there):

1. the LLaVA import hook ``plast-llava-hook.pth`` next to the package, for regular and editable
   (PEP 660) installs alike;
2. the lmms-eval task folder: the top-level ``eval_tasks/`` stays the one source, and regular
   builds (wheel, ``pip install .``) copy it into the package as ``plast_plugin/eval/tasks/``, where
   ``plast_plugin.eval.tasks_dir()`` finds it. Editable installs read ``eval_tasks/`` in place.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PTH_NAME = "plast-llava-hook.pth"
# `site` executes a .pth line that starts with "import" at every interpreter start, and prints a
# traceback for any exception it raises. The line runs plast_plugin/llava/pth_bootstrap.py, whose
# text is embedded here at build time, in a fresh namespace: a few lines of standard library, no
# import of the plugin until LLaVA's training module is imported (see that file and
# plast_plugin/llava/hook.py). A moved or deleted plugin therefore costs nothing at start.
BOOTSTRAP = HERE / "plast_plugin" / "llava" / "pth_bootstrap.py"
PTH_LINE = ("import sys; exec(" + repr(BOOTSTRAP.read_text(encoding="utf-8"))
            + ", {'__name__': 'plast_llava_hook_pth'})  # PLAST_DISABLE_HOOK=1 turns it off\n")
TASKS_SOURCE = HERE / "eval_tasks"
TASKS_IN_PACKAGE = Path("plast_plugin") / "eval" / "tasks"


class build_py_with_hook_and_tasks(build_py):
    def run(self):
        super().run()
        editable = getattr(self, "editable_mode", False)
        targets = [Path(self.build_lib)]
        if editable:
            # Editable wheels take their files from the install dir, not from build_lib.
            targets.append(Path(self.get_finalized_command("install").install_lib))
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            (target / PTH_NAME).write_text(PTH_LINE, encoding="utf-8")
        if not editable and TASKS_SOURCE.is_dir():
            dest = Path(self.build_lib) / TASKS_IN_PACKAGE
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(TASKS_SOURCE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_hook_and_tasks})
