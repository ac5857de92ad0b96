"""Reading the JSON files a user hands to PLAST: every failure is one PlastError naming the file."""
from __future__ import annotations

import json
import os
from pathlib import Path

from plast_plugin.errors import PlastError


def read_json(path: str | os.PathLike, what: str = "file", fix: str = "") -> object:
    """The parsed JSON of ``path``; missing, unreadable, non-UTF-8 or invalid JSON -> PlastError."""
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PlastError(f"{what} {path} does not exist{hint}") from None
    except IsADirectoryError:
        raise PlastError(f"{what} {path} is a folder, not a JSON file{hint}") from None
    except UnicodeDecodeError as err:
        raise PlastError(f"{what} {path} is not UTF-8 text (byte {err.start}){hint}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PlastError(f"{what} {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}){hint}") from None


def read_json_object(path: str | os.PathLike, what: str = "file", fix: str = "") -> dict:
    value = read_json(path, what, fix)
    if not isinstance(value, dict):
        hint = f"; {fix}" if fix else ""
        raise PlastError(f"{what} {path} holds a JSON {type(value).__name__}, not an object{hint}")
    return value


def iter_json_lines(path: str | os.PathLike):
    """(``"file:line"``, parsed value) for each non-blank line of a JSON-lines file; a line that is
    not UTF-8 or not JSON raises a PlastError naming the file and line (the caller checks the value)."""
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PlastError(f"{where}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise PlastError(f"{where}: not valid JSON ({err.msg})") from None
