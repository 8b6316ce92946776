"""Thin shim: ``python cli.py ...`` is the same as the console command ``simvq-audio ...``."""

import sys

from simvq_audio.cli import main

if __name__ == "__main__":
    sys.exit(main())
