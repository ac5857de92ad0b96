"""The `plast` command. Each subcommand lives in `plast_plugin/commands/<name>.py` and exposes
`add_parser(subparsers)`, which registers a parser whose `func(args) -> int` runs it."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

COMMANDS = ("select", "build_data", "export", "eval", "export_config")


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
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, RuntimeError, FileNotFoundError) as err:
        # User errors end with one clear line, not a traceback; PLAST_DEBUG=1 shows the trace.
        import os

        if os.environ.get("PLAST_DEBUG"):
            raise
        print(f"plast {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
