"""The `scanbatch` command. Each subcommand lives in its own module under `scanbatch.cli` and
exposes `register(subparsers)`; its handler takes `(args, settings)` and returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys

from scanbatch.errors import ScanbatchError
from scanbatch.settings import load_settings

COMMANDS = ("run", "keys", "serve", "catalog", "synth", "eval", "export")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scanbatch",
        description="Read photos of vinyl records and match them against the library catalog.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"scanbatch.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except ScanbatchError as exc:
        print(f"scanbatch: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scanbatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
