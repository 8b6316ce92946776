#!/usr/bin/env python
"""Stage 1 of the LibriTTS recipe: JSONL manifests from the extracted corpus.

    python recipes/libritts/prepare.py --root data/libritts --out data/libritts/manifests

Writes train.jsonl (the training subsets), dev.jsonl (dev-clean) and test.jsonl (test-clean), with speaker,
normalized text and split (the subset name) on every line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from simvq_audio.data.libritts import TRAIN_SUBSETS, prepare_libritts
from simvq_audio.errors import SimVQError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/libritts", help="folder holding LibriTTS/ (from download.py)")
    parser.add_argument("--out", default="data/libritts/manifests", help="folder for train/dev/test.jsonl")
    parser.add_argument("--train-subsets", nargs="+", choices=TRAIN_SUBSETS, default=list(TRAIN_SUBSETS),
                        help="subsets listed in train.jsonl (default: all three, 585 h with dev/test)")
    parser.add_argument("--min-duration", type=float, default=0.5, help="shortest utterance kept, seconds")
    parser.add_argument("--max-duration", type=float, default=30.0, help="longest utterance kept, seconds")
    parser.add_argument("--relative", action="store_true", help="paths relative to the manifests' folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        written = prepare_libritts(args.root, args.out, args.train_subsets, args.min_duration, args.max_duration,
                                   args.relative)
    except SimVQError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 1
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
