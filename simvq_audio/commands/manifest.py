"""`simvq-audio manifest DIR -o manifest.jsonl`: list a folder of audio as a JSONL manifest."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

HELP = "build a JSONL manifest (path, duration, speaker, text) from a folder of audio files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, metavar="DIR", help="folder searched recursively for audio files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="manifest to write (.jsonl)")
    parser.add_argument("--min-duration", type=float, default=0.0, metavar="S", help="leave out shorter files, seconds (default 0)")
    parser.add_argument("--max-duration", type=float, default=math.inf, metavar="S", help="leave out longer files, seconds")
    parser.add_argument("--relative", action="store_true", help="write paths relative to the manifest's folder")
    parser.add_argument(
        "--speaker-from",
        choices=("parent", "filename"),
        default=None,
        help="fill 'speaker' from the parent folder name, or from the file name before its first '_' (LibriTTS)",
    )
    parser.add_argument("--split", default=None, metavar="NAME", help="value of the 'split' field of every line (e.g. train)")
    parser.add_argument("--no-text", action="store_true", help="do not read sibling .normalized.txt/.txt/.lab files")


def run(args: argparse.Namespace) -> int:
    from ..data.manifest import build_manifest, total_hours, write_manifest
    from ..errors import SimVQError

    if args.min_duration < 0 or args.max_duration < args.min_duration:
        raise SimVQError(f"bad duration range: --min-duration {args.min_duration} --max-duration {args.max_duration}")
    skipped: list[Path] = []
    entries = build_manifest(
        args.root,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        speaker_from=args.speaker_from,
        split=args.split,
        with_text=not args.no_text,
        on_skip=lambda path, reason: skipped.append(path),
    )
    if not entries:
        raise SimVQError(f"{args.root}: no audio files within the duration range")
    write_manifest(args.output, entries, relative=args.relative)
    note = f", {len(skipped)} unreadable skipped" if skipped else ""
    print(f"{args.output}: {len(entries)} files, {total_hours(entries):.2f} h{note}")
    return 0
