"""The import hook: patch ``llava.train.train`` right after it is imported.

Installed by the ``plast-llava-hook.pth`` file that the package puts into site-packages, so it
runs in every interpreter of the environment, including every process the DeepSpeed launcher
starts. It is cheap (one string comparison per import, nothing heavy imported until LLaVA's
training module itself is), idempotent, and ``PLAST_DISABLE_HOOK=1`` turns it off.

LLaVA-NeXT's training module has the same name and the same seam (``TrainingArguments``,
``LLaVATrainer``); it is not on PyPI, so that path is untested here.
"""
from __future__ import annotations

import importlib.abc
import os
import sys

ENV_DISABLE = "PLAST_DISABLE_HOOK"
TARGET_MODULES = ("llava.train.train",)


def hook_disabled() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip().lower() in ("1", "true", "yes", "on")


class _PatchingLoader(importlib.abc.Loader):
    """Delegates to the real loader, then patches the freshly executed module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        from .integration import patch_llava_train_module

        patch_llava_train_module(module)

    def __getattr__(self, name):  # get_source, get_code, is_package, ... for tracebacks
        return getattr(self._loader, name)


class LlavaTrainFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder that only ever answers for ``llava.train.train``."""

    _busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGET_MODULES or self._busy:
            return None
        self._busy = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy = False
        if spec is None or spec.loader is None or isinstance(spec.loader, _PatchingLoader):
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def is_installed() -> bool:
    return any(isinstance(f, LlavaTrainFinder) for f in sys.meta_path)


def install(force: bool = False) -> bool:
    """Install the finder once. Returns True when PLAST will patch LLaVA's training module.

    ``force`` ignores ``PLAST_DISABLE_HOOK`` (used by ``python -m plast_plugin.llava.train``).
    A training module imported before this call is patched at once.
    """
    if hook_disabled() and not force:
        return False
    if not is_installed():
        sys.meta_path.insert(0, LlavaTrainFinder())
    for name in TARGET_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            from .integration import patch_llava_train_module

            patch_llava_train_module(module)
    return True


def _install_from_pth() -> None:
    """Entry point of the ``.pth`` line: never let a hook problem break an interpreter."""
    try:
        install()
    except Exception as err:  # pragma: no cover - defensive
        sys.stderr.write(f"plast-plugin: LLaVA import hook not installed: {err}\n")
