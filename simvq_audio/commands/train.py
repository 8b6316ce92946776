"""``simvq-audio train --config CONFIG.yaml [key=value ...]``: train a codec (resumable)."""

from __future__ import annotations

import argparse

HELP = "Train a codec from a YAML config (key=value overrides; resumes automatically)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config (YAML), e.g. recipes/tiny/config.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides with dotted keys and YAML values, e.g. training.max_steps=2000")
    parser.add_argument("--resume", metavar="auto|none|PATH",
                        help="same as checkpoint.resume=...: auto (latest checkpoint of the run), none, or a checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from ..training.config import config_to_yaml, load_config

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"checkpoint.resume={args.resume}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    from ..training.trainer import Trainer

    trainer = Trainer(cfg)
    try:
        state = trainer.train()
    finally:
        trainer.close()
    trainer.accelerator.print(f"done: step {state.step}, checkpoints in {cfg.checkpoint_dir}")
    return 0
