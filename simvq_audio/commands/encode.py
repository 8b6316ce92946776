"""``simvq-audio encode INPUT... -o OUTPUT``: audio files or folders -> ``.svqt`` token files."""

from __future__ import annotations

import argparse
from collections import Counter
from functools import partial
from pathlib import Path

from . import common

HELP = "encode audio files or folders to .svqt token files"

TOKEN_SUFFIX = ".svqt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="audio files, or folders searched recursively (wav, flac, ogg, mp3, opus, aiff)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output folder (input folder trees are mirrored under it); with a single input "
                             "file, a path ending in .svqt writes exactly that file")
    common.add_model_arguments(parser)
    common.add_backend_arguments(parser)
    common.add_run_arguments(parser)


def conversion_notes(infos, sample_rate: int, channels: int) -> list[str]:
    """One line per kind of conversion, e.g. "resampling 22050 Hz -> 16000 Hz and downmixing 2 channels to
    mono for 3 files"; ``infos`` are ``AudioInfo``s."""
    kinds = Counter((i.sample_rate, i.channels) for i in infos if (i.sample_rate, i.channels) != (sample_rate, channels))
    notes = []
    for (rate, n_channels), count in sorted(kinds.items()):
        parts = []
        if rate != sample_rate:
            parts.append(f"resampling {rate} Hz -> {sample_rate} Hz")
        if n_channels != channels:
            target = "mono" if channels == 1 else f"{channels} channels"
            verb = "downmixing" if n_channels > channels else "copying"
            parts.append(f"{verb} {n_channels} channels to {target}")
        notes.append(f"{' and '.join(parts)} for {count} file{'s' if count != 1 else ''}")
    return notes


def run(args: argparse.Namespace) -> int:
    from ..audio.io import find_audio_files

    found = common.collect_inputs(args.inputs, find_audio_files, "audio")
    jobs = common.plan_jobs(found, args.output, TOKEN_SUFFIX, (TOKEN_SUFFIX,))
    todo, skipped = common.split_existing(jobs, args.overwrite, common.is_single_file_output(found, args.output))
    common.check_writable(todo)
    summary = common.Summary("encoded", skipped=len(skipped), tokens=0)
    with common.summary_on_interrupt(summary, args.quiet):
        if todo:
            _encode(args, todo, summary)
    if not args.quiet:
        print(summary.line())
    return summary.exit_code


def _encode(args: argparse.Namespace, todo: list[common.Job], summary: common.Summary) -> None:
    from ..audio.io import read_audio_info
    from ..errors import AudioError

    tokenizer = common.load_tokenizer(args)
    summary.model_loaded()
    infos = {}
    for job in todo:
        try:
            infos[job.source] = read_audio_info(job.source)
        except AudioError:
            pass  # reported when the file is encoded
    if not args.quiet:
        for note in conversion_notes(infos.values(), tokenizer.sample_rate, tokenizer.channels):
            print(note, flush=True)
    output_of = {job.source: job.output for job in todo}
    with common.progress_bar(sum(i.duration for i in infos.values()), args.quiet, desc="encoding") as bar:
        for source, result in tokenizer.encode_files(output_of, on_progress=bar.update):
            output = output_of[source]
            outcome = result if isinstance(result, Exception) else partial(tokenizer.save_tokens, output, result)
            if not common.write_output("encode", output, outcome, summary):
                continue
            summary.done += 1
            summary.seconds += result.header.duration
            summary.tokens += int(result.codes.size)
