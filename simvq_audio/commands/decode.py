"""``simvq-audio decode TOKENS... -o OUTPUT``: ``.svqt`` token files or folders -> audio files.

Audio comes back at each file's original sample rate, channel count and length. Short files are
decoded in batches; long ones window by window straight to disk.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
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
    common.add_run_arguments(parser)


def find_token_files(root: Path) -> list[Path]:
    """``.svqt`` files under ``root`` (recursive, sorted, hidden files and folders skipped)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder) / f for f in files if f.lower().endswith(".svqt") and not f.startswith(".")]
    return sorted(found)


def _decoded(tokenizer, jobs: list[common.Job], force: bool) -> Iterator[tuple[common.Job, object]]:
    """``(job, write)`` where ``write()`` decodes (if not done yet) and writes the output, or ``(job, error)``.

    Short token files are decoded in batches before their ``write`` is handed out; long ones are
    decoded window by window inside ``write``, straight to disk.
    """
    from ..audio.io import write_audio
    from ..errors import SimVQError

    batch: list = []

    def flush():
        decoded = tokenizer.decode_tokens([tf for _, tf in batch], force=force)
        for (job, _), (audio, rate) in zip(batch, decoded, strict=True):
            yield job, lambda job=job, audio=audio, rate=rate: write_audio(job.output, audio, rate)
        batch.clear()

    for job in jobs:
        try:
            tf = tokenizer.load_tokens(job.source)
            tokenizer.check_tokens(tf.header, force=force, name=str(job.source))
        except SimVQError as exc:
            yield job, exc
            continue
        if tokenizer.should_stream(tf.header):
            yield job, lambda job=job, tf=tf: tokenizer.decode_to_file(tf, job.output, force=force,
                                                                        name=str(job.source))
            continue
        batch.append((job, tf))
        if len(batch) >= tokenizer.batch_size:
            yield from flush()
    if batch:
        yield from flush()


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
    with common.progress_bar(sum(durations.values()), args.quiet, desc="decoding") as bar:
        for job, write in _decoded(tokenizer, todo, args.force):
            if not common.write_output("decode", job.output, write, summary):
                continue
            summary.done += 1
            summary.seconds += durations[job.source]
            bar.update(durations[job.source])
