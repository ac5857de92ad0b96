"""The `plast` command. Each subcommand lives in `plast_plugin/commands/<name>.py` and exposes
`add_parser(subparsers)`, which registers a parser whose `func(args) -> int` runs it."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings

from plast_plugin import __version__
from plast_plugin.errors import PlastError

COMMANDS = ("select", "build_data", "export", "eval", "compare", "export_config", "ablate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plast",
        description="PLAST: find the language-specific decoder layers of a LLaVA-style model and train only them.",
    )
    parser.add_argument("--version", action="version", version=f"plast-plugin {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"plast_plugin.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        # A plain `kill` then unwinds like Ctrl-C: staged output folders and temporary files are
        # removed by their cleanup blocks instead of being left half-written.
        previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    debug = bool(os.environ.get("PLAST_DEBUG"))
    previous_format = warnings.formatwarning
    if not debug:
        warnings.formatwarning = lambda message, *_, **__: f"plast: warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except (PlastError, OSError) as err:
        # Bad input (PlastError) or a user path that cannot be read or written (OSError): one
        # line naming the input and the fix. Any other exception is a bug and keeps its
        # traceback; PLAST_DEBUG=1 shows the trace of these too.
        if debug:
            raise
        print(f"plast {args.command}: error: {_describe(err)}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = previous_format
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and getattr(err, "filename", None):
        reason = err.strerror or type(err).__name__
        target = f"{err.filename} -> {err.filename2}" if getattr(err, "filename2", None) else str(err.filename)
        return f"{target}: {reason}; check the path and its permissions"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
