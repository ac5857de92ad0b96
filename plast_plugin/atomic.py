"""Writes that never leave half a result: a file or folder is built beside its target and renamed
into place only when complete, so a failed or killed run leaves the old output (or nothing). Files
get the mode of a plain ``open(path, "w")``, not ``tempfile``'s 0600: outputs are meant to be shared.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path

from plast_plugin.errors import PlastError

TEMP_PREFIX = ".plast-tmp-"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_output_file(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` for a writer that wants a file name (e.g. savefig);
    it replaces ``path`` when the block succeeds and is removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_stages(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_stage_prefix(path), suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text, all at once: readers see the old file or the new one. Encoding errors (e.g. a
    lone surrogate) happen before the target is touched."""
    data = text.encode("utf-8")
    with atomic_output_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_new_directory(out: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, before any work, an output folder that is a file or already has content."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PlastError(f"{what} {out} is an existing file; give a folder path that does not exist yet")
    if out.is_dir() and any(out.iterdir()):
        raise PlastError(f"{what} {out} exists and is not empty; give a new folder (or remove that one)")
    return out


def _stage_prefix(out: Path, pid: int | None = None) -> str:
    """Stage folders carry host and pid, so a later run can tell a dead run's leftovers."""
    return f"{TEMP_PREFIX}{out.name}.{socket.gethostname()}.{os.getpid() if pid is None else pid}."


def _remove_dead_stages(out: Path) -> None:
    """Delete stage folders and temporary files of ``out`` left by a killed run (SIGKILL skips
    every cleanup): same host, process gone. Another host's or a live process's are never touched."""
    mine = f"{TEMP_PREFIX}{out.name}.{socket.gethostname()}."
    for stage in out.parent.glob(glob.escape(mine) + "*"):
        pid_text = stage.name[len(mine):].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            if stage.is_dir():
                shutil.rmtree(stage, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    stage.unlink()
        except PermissionError:  # alive, another user's
            pass


def _apply_umask(folder: Path) -> None:
    """Give every file written into ``folder`` the mode ``open(path, "w")`` would: writers such as
    safetensors' ``save_file`` (behind ``save_pretrained``) create 0600 files whatever the umask."""
    mode = 0o666 & ~_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)
        elif path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o777 & ~_umask())


@contextlib.contextmanager
def staged_directory(out: str | os.PathLike, what: str = "--out"):
    """Yield an empty folder beside ``out``; on success it becomes ``out`` (which must not exist or be
    empty), on failure it is deleted; what a SIGKILLed run left is removed by the next run."""
    out = check_new_directory(out, what)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_stages(out)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=_stage_prefix(out)))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        _apply_umask(stage)
        check_new_directory(out, what)  # another process may have filled it meanwhile
        if out.is_dir():
            out.rmdir()
        os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
