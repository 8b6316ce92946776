"""``simvq-audio export-dataset INPUT -o DIR``: a corpus as sharded token files for speech LMs.

Several processes/GPUs: ``accelerate launch --multi_gpu --num_processes N -m simvq_audio.export_dataset INPUT -o DIR``
(or this command under ``accelerate launch``); each process encodes every N-th shard.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import add_model_arguments, load_tokenizer, report_failure

HELP = "export a corpus (manifest or folder) as sharded, memory-mappable token files for speech LMs"

# Shards are the unit of resumption: a killed export loses only the shard in progress, so the default
# is small by duration (10 minutes of audio: about 30 s of CPU work) rather than by utterance count.
DEFAULT_SHARD_SECONDS = 600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT", help="manifest (.jsonl) or folder of audio files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="corpus folder (created; rerun to resume)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shard-seconds", type=float, default=None, metavar="S",
                       help=f"about S seconds of audio per shard (default {DEFAULT_SHARD_SECONDS:g}; a killed run "
                            f"loses only the shard in progress); a rerun keeps the folder's own setting")
    group.add_argument("--shard-size", type=int, default=None, metavar="N", help="N utterances per shard instead")
    group.add_argument("--shard-frames", type=int, default=None, metavar="N",
                       help="about N frames per shard instead (estimated from durations)")
    parser.add_argument("--format", choices=("bin", "parquet"), default="bin",
                        help="bin (default): memory-mapped .bin + .jsonl shards for TokenDataset; parquet: also "
                             "shard-NNNNN.parquet per shard, read by datasets.load_dataset('parquet') or pyarrow "
                             "(needs pyarrow)")
    add_model_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _distributed_state(device: str):
    """An ``accelerate.PartialState`` when started by a multi-process launcher, else None."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    import torch
    from accelerate import PartialState

    from ..errors import SimVQError

    # Without cpu=True accelerate ignores a CPU-only multi-process launch and every process would
    # believe it is alone (and encode every shard).
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    if state.num_processes != world_size:
        raise SimVQError(f"launched as {world_size} processes but accelerate sees {state.num_processes}")
    return state


def _shard_setting(args: argparse.Namespace, frame_rate: float) -> tuple[int | None, int | None]:
    """``(shard_size, shard_frames)`` from the options; without any, the setting recorded in the output
    folder by an earlier run (so that a rerun resumes it), else ``DEFAULT_SHARD_SECONDS``."""
    import json
    import math

    from ..corpus.format import PLAN_NAME
    from ..errors import SimVQError

    if args.shard_size is not None or args.shard_frames is not None:
        return args.shard_size, args.shard_frames
    if args.shard_seconds is None:
        try:
            recorded = json.loads((args.output / PLAN_NAME).read_text(encoding="utf-8"))
            if recorded.get("shard_size") or recorded.get("shard_frames"):
                return recorded.get("shard_size"), recorded.get("shard_frames")
        except (OSError, ValueError, AttributeError):
            pass
    seconds = DEFAULT_SHARD_SECONDS if args.shard_seconds is None else args.shard_seconds
    if not seconds > 0:
        raise SimVQError(f"--shard-seconds must be positive, got {seconds}")
    return None, max(1, math.ceil(seconds * frame_rate))


def run(args: argparse.Namespace) -> int:
    from ..corpus.plan import list_inputs, plan_shards
    from ..corpus.writer import read_failures, write_corpus

    parquet = getattr(args, "format", "bin") == "parquet"
    if parquet:
        from ..corpus.parquet import check_pyarrow

        check_pyarrow()  # before hours of encoding, not after
    state = _distributed_state(str(args.device))
    if state is not None and args.device == "auto":
        args = argparse.Namespace(**{**vars(args), "device": str(state.device)})  # this process's GPU
    is_main = state is None or state.is_main_process
    tokenizer = load_tokenizer(args)
    shard_size, shard_frames = _shard_setting(args, tokenizer.frame_rate)
    entries, root = list_inputs(args.input, with_durations=shard_frames is not None)
    plan = plan_shards(entries, tokenizer.spec, root,
                       shard_size=shard_size, shard_frames=shard_frames)

    def on_failure(entry, message: str) -> None:
        where = "" if entry.source in message or str(entry.path) in message else f"{entry.source}: "
        report_failure("export-dataset", Exception(f"{where}{message} (skipped)"))

    report, meta = write_corpus(tokenizer, plan, args.output, state=state, batch_size=args.batch_size,
                                 on_failure=on_failure, progress=is_main and not args.quiet and sys.stderr.isatty())
    if meta is None:  # not the main process: only answer for our own shards
        return 1 if report.failures else 0
    if parquet:
        from ..corpus.parquet import write_parquet

        write_parquet(args.output, manifest=None if args.input.is_dir() else args.input)
    hours = f"{meta.duration / 3600:.2f} h" if meta.duration >= 360 else f"{meta.duration:.1f} s"
    print(f"{args.output}: {meta.n_utterances} utterances, {meta.n_frames} frames ({hours}) "
          f"in {len(meta.shards)} shards; {len(report.encoded)} shards encoded, {len(report.skipped)} already done "
          f"(this process)")
    if meta.n_failed:
        failures = read_failures(args.output / "failures.jsonl")
        names = ", ".join(f["source"] for f in failures[:3]) + (", ..." if len(failures) > 3 else "")
        print(f"simvq-audio export-dataset: {meta.n_failed} file(s) failed ({names}); listed in "
              f"{args.output / 'failures.jsonl'}", file=sys.stderr)
        return 1
    return 0
