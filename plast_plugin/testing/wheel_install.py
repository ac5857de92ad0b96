"""Build the plugin's wheel from a copy of the checkout and install it, regularly (not editable),
into a fresh virtual environment with no source checkout on its path: what a user gets from
`pip install plast_plugin-*.whl`. The fresh venv borrows its dependencies (torch, transformers,
lmms-eval, llava) from an existing environment's site-packages through a plain path line, which
Python adds to sys.path without running that environment's .pth files, so neither its editable
plast-plugin nor its import hook leak in.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["build_wheel", "venv_with_wheel", "purelib"]

_SKIP = {".git", ".envs", ".cache", "runs", "build", "dist", "__pycache__"}


def _copy_sources(repo: Path, dest: Path) -> None:
    """The files git knows (tracked, or new and not ignored), so build junk never gets in."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        for rel in filter(None, listed.stdout.split("\0")):
            src = repo / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:  # not a git checkout (e.g. an unpacked sdist)
        shutil.copytree(repo, dest, dirs_exist_ok=True, ignore=lambda _d, names: [n for n in names if n in _SKIP])


def build_wheel(repo, out_dir, python: str = sys.executable) -> Path:
    repo, out = Path(repo), Path(out_dir)
    src = out / "src"
    _copy_sources(repo, src)
    wheels = out / "wheels"
    subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(wheels), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("plast_plugin-*.whl")
    return wheel


def venv_with_wheel(wheel, venv_dir, python: str = sys.executable) -> Path:
    """A fresh venv holding the wheel; its other packages come from ``python``'s site-packages."""
    venv = Path(venv_dir)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    venv_python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "--python", str(venv_python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    (purelib(str(venv_python)) / "zz_borrowed_dependencies.pth").write_text(f"{purelib(python)}\n", encoding="utf-8")
    return venv_python


def purelib(python: str = sys.executable) -> Path:
    """The site-packages folder of an interpreter."""
    return Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
