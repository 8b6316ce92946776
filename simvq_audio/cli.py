"""The ``simvq-audio`` command: parses arguments, calls the library, prints.

Each sub-command lives in ``simvq_audio/commands/<name>.py`` and defines ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import SimVQError

# command name -> module in simvq_audio.commands
COMMANDS = {
    "encode": "encode",
    "decode": "decode",
    "info": "info",
    "eval": "evaluate",
    "export-dataset": "export_dataset",
    "manifest": "manifest",
    "train": "train",
    "export": "export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simvq-audio", description="SimVQ neural audio codec and speech tokenizer.")
    parser.add_argument("--version", action="version", version=f"simvq-audio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"simvq_audio.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SimVQError as exc:
        print(f"simvq-audio {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"simvq-audio {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
