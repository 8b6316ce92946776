"""``simvq-audio export CHECKPOINT -o DIR``: a release model from a training checkpoint."""

from __future__ import annotations

import argparse

HELP = "export the EMA generator of a training checkpoint as a release model folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint folder (step-*), or a run / checkpoints folder (latest is used)")
    parser.add_argument("-o", "--output", required=True, help="output model folder (config.json + model.safetensors)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="storage dtype of the weights (loading always gives float32)")
    parser.add_argument("--discriminator", metavar="FILE",
                        help="also write the checkpoint's discriminators (float16) to FILE, for "
                             "training.init_discriminator_from")


def run(args: argparse.Namespace) -> int:
    from ..training.export import export_checkpoint

    model_id = export_checkpoint(args.checkpoint, args.output, dtype=args.dtype)
    print(f"{args.output}: model {model_id} ({args.dtype})")
    if args.discriminator:
        from ..training.discriminator_state import export_discriminator

        path = export_discriminator(args.checkpoint, args.discriminator)
        print(f"{path}: discriminators (float16, {path.stat().st_size / 1e6:.1f} MB)")
    return 0
