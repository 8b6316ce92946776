"""``simvq-audio train --config CONFIG.yaml [key=value ...]``: train a codec (resumable)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "train a codec from a YAML config (key=value overrides; resumes automatically)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="training config (YAML), e.g. recipes/tiny/config.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides with dotted keys and YAML values, e.g. training.max_steps=2000")
    parser.add_argument("--resume", metavar="PATH",
                        help="a checkpoint, or auto (the latest checkpoint of the run) or none (start afresh); "
                             "same as checkpoint.resume=PATH")
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
    _check_data(cfg)
    from ..training.lock import run_lock

    # One run per run folder. Under `accelerate launch` only the global main process (RANK 0) holds the
    # lock: the other ranks of the same run share its folders.
    folders = [Path(cfg.logging.dir)]
    if not Path(cfg.checkpoint_dir).resolve().is_relative_to(folders[0].resolve()):
        folders.append(Path(cfg.checkpoint_dir))  # checkpoint.dir elsewhere: another run could share it
    if int(os.environ.get("RANK", "0")) != 0:
        folders = []
    with run_lock(folders) as stale:
        for holder in stale:
            print(f"note: took over the run folder lock of pid {holder.get('pid')} (no longer running)", flush=True)
        return _train(cfg)


def _check_data(cfg) -> None:
    """Missing manifests are reported before anything is built, with the key that points elsewhere
    (recipes read the project's data from ``../shared/data`` beside the clone)."""
    from ..errors import SimVQError

    wanted = [("data.train_manifest", cfg.data.train_manifest)]
    if cfg.validation.every and not cfg.validation.files and not cfg.validation.manifest:
        wanted.append(("data.valid_manifest", cfg.data.valid_manifest))
    elif cfg.validation.every and cfg.validation.manifest:
        wanted.append(("validation.manifest", cfg.validation.manifest))
    for key, path in wanted:
        if path and not Path(path).is_file():
            what = "training" if key == "data.train_manifest" else "validation"
            off = "" if what == "training" else " (or validation.every=0)"
            raise SimVQError(f"{path}: {what} manifest not found; point {key}=PATH at your own{off} "
                             f"(see docs/training.md, 'Your own data')")


def _train(cfg) -> int:
    from ..training.trainer import Trainer

    trainer = Trainer(cfg)
    try:
        state = trainer.train()
    finally:
        trainer.close()
    trainer.accelerator.print(f"done: step {state.step}, checkpoints in {cfg.checkpoint_dir}")
    return 0
