"""The import hook: patch ``llava.train.train`` (``integration.patch_llava_train_module``) right after it is imported.

``plast-llava-hook.pth`` runs ``pth_bootstrap.py`` in every interpreter of the environment; that
stand-in imports this module only when LLaVA's training module is imported. This module imports
only ``os`` and ``sys`` (``importlib.abc`` pulls in importlib.resources and pathlib), is
idempotent, and ``PLAST_DISABLE_HOOK=1`` turns it off. A broken plugin prints one line and leaves
LLaVA unpatched, so LLaVA's own parser refuses ``--plast_*`` flags instead of training everything.
LLaVA-NeXT's training module has the same name and seam; it is not on PyPI, so that path is untested.
"""
from __future__ import annotations

import os
import sys

ENV_DISABLE = "PLAST_DISABLE_HOOK"
TARGET = "llava.train.train"


def _patch(module) -> None:
    """Add PLAST to LLaVA's freshly imported training module; one line, not a traceback, if the plugin is broken."""
    try:
        from plast_plugin.llava.integration import patch_llava_train_module
    except Exception as err:
        sys.stderr.write(f"plast-plugin: PLAST not added to {module.__name__} ({type(err).__name__}: {err}); "
                         f"--plast_* flags will be refused. Reinstall plast-plugin or set {ENV_DISABLE}=1\n")
        return
    patch_llava_train_module(module)


class _PatchingLoader:
    """Delegates to the real loader, then patches the freshly executed module."""

    def __init__(self, loader):
        self._loader = loader

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name):  # create_module; get_source, get_code, ... for tracebacks
        return getattr(self._loader, name)


class LlavaTrainFinder:
    """A meta-path finder that only ever answers for ``llava.train.train``."""

    _busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET or self._busy:
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


def install_finder() -> LlavaTrainFinder:
    """The installed finder (inserted first in sys.meta_path once)."""
    finder = next((f for f in sys.meta_path if isinstance(f, LlavaTrainFinder)), None)
    if finder is None:
        finder = LlavaTrainFinder()
        sys.meta_path.insert(0, finder)
    return finder


def install(force: bool = False) -> bool:
    """Install the finder once (``force``: despite ``PLAST_DISABLE_HOOK``, for ``python -m plast_plugin.llava.train``)
    and patch a training module already imported. True when PLAST will patch LLaVA's training module."""
    if not force and os.environ.get(ENV_DISABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    install_finder()
    if TARGET in sys.modules:
        _patch(sys.modules[TARGET])
    return True
