"""``simvq-audio decode TOKENS... -o OUTPUT``: ``.svqt`` token files or folders -> audio files.

Audio comes back at each file's original sample rate, channel count and length. Short files are
decoded in batches; long ones window by window straight to disk (``Tokenizer.decode_files``).
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

from . import common

HELP = "decode .svqt token files or folders back to audio (original rate and length)"

FORMATS = {"wav": ".wav", "flac": ".flac"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="TOKENS",
                        help=".svqt token files, or folders searched recursively for them")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output folder (input folder trees are mirrored under it); with a single token "
                             "file, a path ending in .wav or .flac writes exactly that file")
    parser.add_argument("--format", choices=sorted(FORMATS), default="wav",
                        help="audio format in a folder output (default wav; 16-bit PCM)")
    parser.add_argument("--force", action="store_true",
                        help="decode tokens made by another (compatible) model instead of refusing")
    common.add_model_arguments(parser)
    common.add_backend_arguments(parser)
    common.add_run_arguments(parser)


def find_token_files(root: Path) -> list[Path]:
    """``.svqt`` files under ``root`` (recursive, sorted, hidden files and folders skipped)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder) / f for f in files if f.lower().endswith(".svqt") and not f.startswith(".")]
    return sorted(found)


def _duration(path: Path) -> float:
    from ..errors import SimVQError
    from ..tokens.format import read_header

    try:
        return read_header(path).duration
    except SimVQError:
        return 0.0  # reported when the file is decoded


def run(args: argparse.Namespace) -> int:
    found = common.collect_inputs(args.inputs, find_token_files, ".svqt token")
    jobs = common.plan_jobs(found, args.output, FORMATS[args.format], tuple(FORMATS.values()))
    todo, skipped = common.split_existing(jobs, args.overwrite, common.is_single_file_output(found, args.output))
    common.check_writable(todo)
    summary = common.Summary("decoded", skipped=len(skipped))
    with common.summary_on_interrupt(summary, args.quiet):
        if todo:
            _decode(args, todo, summary)
    if not args.quiet:
        print(summary.line())
    return summary.exit_code


def _decode(args: argparse.Namespace, todo: list[common.Job], summary: common.Summary) -> None:
    tokenizer = common.load_tokenizer(args)
    summary.model_loaded()
    durations = {job.source: _duration(job.source) for job in todo}
    output_of = {job.source: job.output for job in todo}
    with common.progress_bar(sum(durations.values()), args.quiet, desc="decoding") as bar:
        for source, result in tokenizer.decode_files(output_of, force=args.force):
            outcome = result if isinstance(result, Exception) else partial(result.write, output_of[source])
            if not common.write_output("decode", output_of[source], outcome, summary):
                continue
            summary.done += 1
            summary.seconds += durations[source]
            bar.update(durations[source])
