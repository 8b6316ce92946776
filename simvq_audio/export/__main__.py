"""``python -m simvq_audio.export INPUT -o DIR`` or ``accelerate launch -m simvq_audio.export INPUT -o DIR``.

The same as ``simvq-audio export-dataset``; exists so that ``accelerate launch -m`` can start it.
"""

import argparse
import sys

from ..commands import export_dataset
from ..errors import SimVQError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simvq_audio.export", description=export_dataset.HELP)
    export_dataset.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(export_dataset.run(args) or 0)
    except SimVQError as exc:
        print(f"simvq-audio export-dataset: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
