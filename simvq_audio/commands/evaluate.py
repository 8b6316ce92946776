"""`simvq-audio eval REFERENCE`: model and real-codec baselines, side by side on the same files."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "evaluate a model (PESQ, STOI, mel distance, SI-SDR, bitrate, code usage) against Opus/Codec 2/EnCodec"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", type=Path, metavar="REFERENCE",
                        help="folder of audio files (searched recursively) or a .jsonl manifest")
    parser.add_argument("--model", default="default", help="model folder or built-in name (default: default)")
    parser.add_argument("--no-model", action="store_true", help="evaluate the baselines only")
    parser.add_argument("--baseline", action="append", default=None, metavar="SPEC",
                        help="add a baseline: opus:6k, codec2:1200, codec2:3200, encodec:1.5 (repeatable)")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval-results"),
                        help="output folder (default: eval-results/)")
    parser.add_argument("--max-files", type=int, default=None, metavar="N", help="evaluate the first N files only")
    parser.add_argument("--device", default="auto", help="device for the model: auto (default), cpu, cuda, cuda:1...")
    parser.add_argument("--plots", type=int, default=3, metavar="N",
                        help="mel-spectrogram figures for the first N files (default 3; 0: no figures)")
    parser.add_argument("--sample-rate", type=int, default=None, metavar="HZ",
                        help="comparison rate with --no-model (default 16000); with a model its rate is used")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import SimVQError
    from ..evaluation import EvalConfig, evaluate, format_table

    if args.max_files is not None and args.max_files < 1:
        raise SimVQError(f"--max-files must be at least 1, got {args.max_files}")
    if args.plots < 0:
        raise SimVQError(f"--plots must be 0 or more, got {args.plots}")
    if args.sample_rate is not None and not args.no_model:
        raise SimVQError("--sample-rate only applies with --no-model (metrics use the model's rate)")
    config = EvalConfig(
        model=None if args.no_model else args.model,
        baselines=tuple(args.baseline or ()),
        max_files=args.max_files,
        device=args.device,
        plots=args.plots,
        sample_rate=args.sample_rate,
    )
    report = evaluate(args.reference, args.output, config, progress=not args.quiet)
    s = report.summary
    model = f", model {s['model']['name']} ({s['model_id']})" if s["model"] else ""
    print(f"{s['n_files']} files at {s['sample_rate']} Hz{model}")
    for item in s["skipped"]:
        print(f"skipped: {item['error']}")
    print(format_table(s))
    print(f"wrote {report.csv_path}, {report.summary_path}" + (f" and {len(report.plot_paths)} figures in "
          f"{report.plot_paths[0].parent}" if report.plot_paths else ""))
    return 0
