"""``accelerate launch -m simvq_audio.export_dataset INPUT -o DIR`` (or ``torchrun ... -m``, or ``python -m``).

The same as ``simvq-audio export-dataset``: an entry point, like ``simvq_audio.train``, so that
``accelerate launch -m`` can start the command in every process.
"""

from __future__ import annotations

import sys

from .cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["export-dataset", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
