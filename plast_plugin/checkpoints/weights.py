"""One reader of a checkpoint folder's weights (export, merge and the llava-hf conversion).

The weights are one file or shards named by an index, as safetensors or ``pytorch_model*.bin``.
Safetensors are read lazily: names from the headers, and only the tensors asked for (the delta
export of a few layers reads those layers, not the whole model). A ``.bin`` file has no table of
contents: it is loaded whole, once. An unreadable file is the input's fault: one PlastError
naming it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json_object

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint folder: those its index names, else the single file,
    else unindexed shards (``model*.safetensors``, then ``pytorch_model*.bin``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PlastError(f"{directory} is not a folder; give a checkpoint folder (config.json + weights)")
    for index_name in INDEX_NAMES:
        index = directory / index_name
        if index.exists():
            weight_map = read_json_object(index, "weights index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise PlastError(f"weights index {index} has no 'weight_map' object; the checkpoint is incomplete")
            files = [directory / str(f) for f in sorted(set(weight_map.values()))]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise PlastError(f"weights index {index} names missing file(s) {missing[:3]}; the checkpoint is incomplete")
            return files
    for single in SINGLE_NAMES:
        if (directory / single).is_file():
            return [directory / single]
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        shards = sorted(directory.glob(pattern))
        if shards:
            return shards
    raise PlastError(f"{directory}: no model.safetensors / pytorch_model.bin (or their index, or shards) found")


def count_elements(paths: Iterable[Path], keep=lambda name: True) -> int:
    """The elements of every tensor whose name satisfies ``keep(name)`` in the weight files ``paths``:
    from the headers for safetensors (no tensor data read), from the loaded tensors for a .bin file."""
    total = 0
    for path in paths:
        with _Opened(Path(path)) as opened:
            total += sum(opened.numel(name) for name in opened.names() if keep(name))
    return total


def read_weights_file(path: Path) -> tuple[dict, dict | None]:
    """(every tensor, safetensors metadata or None for .bin) of one file."""
    with _Opened(Path(path)) as opened:
        return opened.read(opened.names()), opened.metadata()


class _Opened:
    """One weights file, opened once: safetensors lazily (header now, tensors on request)."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = None
        self._loaded: dict | None = None  # a .bin file's tensors

    def __enter__(self):
        self._guard(self._open)
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.__exit__(None, None, None)
            self._handle = None
        self._loaded = None

    def _open(self):
        if self.path.suffix == ".safetensors":
            from safetensors import safe_open

            self._handle = safe_open(str(self.path), "pt")
            self._handle.__enter__()
        else:
            import torch

            self._loaded = torch.load(str(self.path), map_location="cpu", weights_only=True)

    def _guard(self, action, *args):
        try:
            return action(*args)
        except OSError:
            raise
        except Exception as err:  # SafetensorError, UnpicklingError, ...: a truncated or foreign file
            raise PlastError(f"cannot read weights file {self.path} ({type(err).__name__}: {err}); it is "
                             f"truncated or not a weights file, write it again") from None

    def names(self) -> list[str]:
        return list(self._handle.keys()) if self._handle is not None else list(self._loaded)

    def metadata(self) -> dict | None:
        return self._guard(self._handle.metadata) if self._handle is not None else None

    def numel(self, name: str) -> int:
        if self._handle is not None:
            return math.prod(self._guard(lambda: self._handle.get_slice(name).get_shape()))
        return self._loaded[name].numel()

    def read(self, names: Iterable[str]) -> dict:
        if self._handle is not None:
            return {name: self._guard(self._handle.get_tensor, name) for name in names}
        return {name: self._loaded[name] for name in names}


class CheckpointWeights:
    """The weights of one checkpoint folder (see the module doc). Use as a context manager, or
    call ``close()``; files are opened on first use and kept open until then."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.files = weight_files(self.directory)
        self._opened: dict[Path, _Opened] = {}

    def __enter__(self) -> "CheckpointWeights":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for opened in self._opened.values():
            opened.__exit__(None, None, None)
        self._opened.clear()

    def release(self, path: Path) -> None:
        """Close one file (a loaded .bin file's tensors are dropped): walk shards one at a time."""
        opened = self._opened.pop(path, None)
        if opened is not None:
            opened.__exit__(None, None, None)

    def _file(self, path: Path) -> _Opened:
        if path not in self._opened:
            self._opened[path] = _Opened(path).__enter__()
        return self._opened[path]

    def names_in(self, path: Path) -> list[str]:
        """Tensor names of one of ``files`` (safetensors: its header only)."""
        return self._file(path).names()

    def names(self) -> list[str]:
        return [name for path in self.files for name in self.names_in(path)]

    def read(self, names: Iterable[str]) -> dict:
        """Only the named tensors (each read from the file holding it); a missing name is an error."""
        wanted = list(dict.fromkeys(names))
        out: dict = {}
        for path in self.files:
            here = set(self.names_in(path))
            out.update(self._file(path).read([n for n in wanted if n in here and n not in out]))
        missing = [n for n in wanted if n not in out]
        if missing:
            raise PlastError(f"{self.directory}: no tensor {missing[:3]} in its weight files")
        return {n: out[n] for n in wanted}

    def read_from(self, path: Path, names: Iterable[str]) -> dict:
        """The named tensors of one of ``files`` (opens no other file)."""
        return self._file(path).read(names)

    def read_where(self, keep) -> dict:
        """Every tensor whose name satisfies ``keep(name)``, reading no other tensor data."""
        return self.read(n for n in self.names() if keep(n))

    def read_all(self) -> dict:
        return self.read(self.names())

    def read_file(self, path: Path) -> tuple[dict, dict | None]:
        """One whole file of ``files`` and its metadata (None for .bin)."""
        opened = self._file(path)
        return opened.read(opened.names()), opened.metadata()
