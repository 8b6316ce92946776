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
    "export-onnx": "export_onnx",
    "fit-pitch-head": "fit_pitch_head",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simvq-audio", description="SimVQ neural audio codec and speech tokenizer.")
    parser.add_argument("--version", action="version", version=f"simvq-audio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"simvq_audio.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args``, except that unknown arguments are reported with the sub-command's usage
    (argparse reports them with the top-level one), with a hint when a value follows an option that
    takes one value."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        hint = ""
        if any(not e.startswith("-") for e in extras):
            hint = " (an option takes one value; to give several, repeat the option: --opt A --opt B)"
        args._parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
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
