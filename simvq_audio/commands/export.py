"""``simvq-audio export CHECKPOINT -o DIR``: a release model from a training checkpoint."""

from __future__ import annotations

import argparse

HELP = "Export the EMA generator of a training checkpoint as a release model folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder (step-*), or a run / checkpoints folder (latest is used)")
    parser.add_argument("-o", "--output", required=True, help="output model folder (config.json + model.safetensors)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="storage dtype of the weights (loading always gives float32)")


def run(args: argparse.Namespace) -> int:
    from ..training.export import export_checkpoint

    model_id = export_checkpoint(args.checkpoint, args.output, dtype=args.dtype)
    print(f"{args.output}: model {model_id} ({args.dtype})")
    return 0
