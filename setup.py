"""Only here to install the LLaVA import hook (``plast-llava-hook.pth``) next to the package,
for regular and editable (PEP 660) installs alike. All metadata lives in setup.cfg."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "plast-llava-hook.pth"
# One line, executed by `site` at every interpreter start: cheap (no torch/transformers import),
# idempotent, and off when PLAST_DISABLE_HOOK=1. See plast_plugin/llava/hook.py.
PTH_LINE = (
    "import os; os.environ.get('PLAST_DISABLE_HOOK', '').strip().lower() in ('1', 'true', 'yes', 'on') "
    "or __import__('plast_plugin.llava.hook', fromlist=['_install_from_pth'])._install_from_pth()\n"
)


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        targets = [Path(self.build_lib)]
        if getattr(self, "editable_mode", False):
            # Editable wheels take their files from the install dir, not from build_lib.
            targets.append(Path(self.get_finalized_command("install").install_lib))
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            (target / PTH_NAME).write_text(PTH_LINE, encoding="utf-8")


setup(cmdclass={"build_py": build_py_with_pth})
