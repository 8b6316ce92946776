"""Entry point for multi-process training: ``accelerate launch -m simvq_audio.train --config ...``.

Takes the same arguments as ``simvq-audio train``.
"""

from __future__ import annotations

import argparse
import sys

from .commands import train as train_command
from .errors import SimVQError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simvq_audio.train", description=train_command.HELP)
    train_command.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return train_command.run(args)
    except SimVQError as exc:
        print(f"simvq_audio.train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
