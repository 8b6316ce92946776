"""`simvq-audio eval REFERENCE`: model and real-codec baselines, side by side on the same files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import common

HELP = ("evaluate a model (PESQ, STOI, mel distance, SI-SDR, pitch, bitrate, code usage) "
        "against Opus/Codec 2/EnCodec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", type=Path, metavar="REFERENCE",
                        help="folder of audio files (searched recursively) or a .jsonl manifest")
    common.add_model_arguments(parser)
    parser.add_argument("--no-model", action="store_true", help="evaluate the baselines only")
    parser.add_argument("--baseline", action="append", default=None, metavar="SPEC",
                        help="add a baseline: opus:6k, codec2:1200, codec2:3200, encodec:1.5 (repeatable)")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval-results"),
                        help="output folder (default: eval-results/)")
    parser.add_argument("--max-files", type=int, default=None, metavar="N", help="evaluate N files only, spread evenly over the sorted list")
    parser.add_argument("--plots", type=int, default=3, metavar="N",
                        help="mel-spectrogram figures for the first N files (default 3; 0: no figures)")
    parser.add_argument("--sample-rate", type=int, default=None, metavar="HZ",
                        help="comparison rate with --no-model (default 16000); with a model its rate is used")
    parser.add_argument("--no-pitch", action="store_true",
                        help="skip the pitch metrics (voicing F1, pitch error in cents, GPE): pYIN is the slow part")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import SimVQError
    from ..evaluation import EvalConfig, evaluate, format_table, parse_baseline

    specs = tuple(args.baseline or ())
    for spec in specs:
        parse_baseline(spec)  # a typo fails before the model loads
    if args.sample_rate is not None and not args.no_model:
        raise SimVQError("--sample-rate only applies with --no-model (metrics use the model's rate)")
    config = EvalConfig(model=None if args.no_model else args.model, baselines=specs, max_files=args.max_files,
                        device=args.device, plots=args.plots, sample_rate=args.sample_rate,
                        pitch=not args.no_pitch)
    tokenizer = None if args.no_model else common.load_tokenizer(args)
    progress = not args.quiet and sys.stderr.isatty()
    report = evaluate(args.reference, args.output, config, progress=progress, tokenizer=tokenizer)
    s = report.summary
    model = f", model {s['model']['name']} ({s['model_id']})" if s["model"] else ""
    print(f"{s['n_files']} files at {s['sample_rate']} Hz{model}")
    for item in s["skipped"]:
        print(f"skipped: {item['error']}")
    print(format_table(s))
    figures = f" and {len(report.plot_paths)} figures in {report.plot_paths[0].parent}" if report.plot_paths else ""
    print(f"wrote {report.csv_path}, {report.summary_path}{figures}")
    return 0
