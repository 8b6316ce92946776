#!/usr/bin/env python
"""Stage 0 of the LibriTTS recipe: download and extract openslr resource 60 subsets (resumable, verified).

    python recipes/libritts/download.py --root data/libritts --subsets train-clean-100 dev-clean test-clean

Run it again after an interruption: a partial archive (`archives/<subset>.tar.gz.part`) is resumed and finished
subsets are skipped.
"""

from __future__ import annotations

import argparse
import logging
import sys

from tqdm import tqdm

from simvq_audio.data.libritts import ARCHIVES, DEV_SUBSET, MIRRORS, TEST_SUBSET, TRAIN_SUBSETS, download_libritts
from simvq_audio.errors import SimVQError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/libritts", help="download folder (gets LibriTTS/<subset>/)")
    parser.add_argument("--subsets", nargs="+", choices=sorted(ARCHIVES),
                        default=[*TRAIN_SUBSETS, DEV_SUBSET, TEST_SUBSET], help="subsets to fetch (default: all five)")
    parser.add_argument("--mirror", action="append", default=None,
                        help="base URL to try first (repeatable); the openslr sites are tried after it")
    parser.add_argument("--keep-archives", action="store_true", help="keep the .tar.gz files after extraction")
    parser.add_argument("--no-verify", action="store_true", help="skip the size and checksum checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    bars: dict[str, tqdm] = {}

    def progress(subset: str, done: int, total: int | None) -> None:
        bar = bars.get(subset)
        if bar is None:
            bar = bars[subset] = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=subset)
        bar.update(done - bar.n)

    mirrors = [*(args.mirror or []), *MIRRORS]
    try:
        folders = download_libritts(args.root, args.subsets, mirrors, args.keep_archives, not args.no_verify, progress)
    except SimVQError as exc:
        print(f"download: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for bar in bars.values():
            bar.close()
    for folder in folders:
        print(f"ready: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
