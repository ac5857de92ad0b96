"""The one base of every user-facing error.

A ``PlastError`` means bad input or a refused request, never a bug: its message names the input
(file, line/row, field or flag) and the fix. The ``plast`` CLI prints it as one line and exits 1;
any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class PlastError(Exception):
    """Bad input or a refused request; the message names the input and the fix."""
