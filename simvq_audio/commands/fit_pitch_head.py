"""``simvq-audio fit-pitch-head TRAIN.jsonl --model M -o DIR``: refit a model's pitch head on pYIN targets.

The encoder, quantizer and decoder are kept, so the tokens do not change; only the head that reads the
F0 and voicing off the codes (and so the decoder's harmonics) does. See ``training/pitch_fit.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

HELP = "refit a model's pitch head on pYIN's voicing and F0 (tokens unchanged)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", metavar="MANIFEST", help="training manifest, .jsonl (never your evaluation set)")
    parser.add_argument("--model", default="default", help="model folder or built-in name (default: default)")
    parser.add_argument("-o", "--output", required=True, help="new model folder (must not exist yet)")
    parser.add_argument("--valid", metavar="MANIFEST", help="held-out manifest: the head is scored on it "
                        "against pYIN before and after")
    parser.add_argument("--width", type=int, help="the new head's channels (default: the model's head)")
    parser.add_argument("--kernel", type=int, help="the new head's kernel in frames, odd (default: the model's)")
    parser.add_argument("--layers", type=int, help="the new head's convolutions (default: the model's); a head "
                        "of another shape starts from random weights, else from the model's head")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps (default: 3000)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step (default: 32)")
    parser.add_argument("--window", type=int, default=100, help="frames per window (default: 100)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the learning rate of Adam, cosine-decayed (default: 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the windows' draw and of a new head (default: 0)")
    parser.add_argument("--max-files", type=int, help="use only the first N files of each manifest")
    parser.add_argument("--cache", metavar="DIR", help="keep pYIN's targets here (reruns skip the slow tracker)")
    parser.add_argument("--workers", type=int, default=1, help="processes computing pYIN (default: 1)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                        help="storage dtype of the new folder (default: the input model's)")


def _paths(manifest: str, max_files: int | None) -> list[Path]:
    from ..data.manifest import read_manifest
    from ..errors import SimVQError

    entries = read_manifest(manifest)
    if not entries:
        raise SimVQError(f"{manifest}: manifest has no files")
    return [e.path for e in entries[:max_files]]


def _reshaped(model, source, args: argparse.Namespace):
    """``model`` with a new, randomly initialised head (seeded) when ``--width/--kernel/--layers`` change its
    shape; its other parts come from ``source`` (``training.warm_start``)."""
    import torch

    from ..errors import SimVQError
    from ..models.codec import SimVQCodec
    from ..training.warm_start import warm_start

    c = model.config
    shape = {"pitch_head_width": args.width or c.pitch_head_width,
             "pitch_head_kernel": args.kernel or c.pitch_head_kernel,
             "pitch_head_layers": args.layers or c.pitch_head_layers}
    if all(getattr(c, k) == v for k, v in shape.items()):
        return model
    try:
        config = dataclasses.replace(c, **shape)
    except ValueError as exc:
        raise SimVQError(f"--width/--kernel/--layers: {exc}") from None
    torch.manual_seed(args.seed)
    new = SimVQCodec(config).eval()
    warm_start(new, source, ("encoder", "quantizer", "decoder"))
    return new


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import SimVQError
    from ..models.codec import SimVQCodec
    from ..models.pretrained import model_folder, read_model_meta
    from ..training.pitch_fit import PitchFitConfig, collect_items, fit_pitch_head, head_metrics

    try:
        config = PitchFitConfig(steps=args.steps, batch_size=args.batch_size, window=args.window, lr=args.lr,
                                seed=args.seed)
    except ValueError as exc:
        raise SimVQError(f"--{str(exc).split()[0].replace('_', '-')}: {exc}") from None
    if args.workers < 1:
        raise SimVQError(f"--workers must be >= 1, got {args.workers}")
    source = model_folder(args.model)
    output = Path(args.output)
    if output.exists() and (output.resolve() == source.resolve() or any(output.iterdir())):
        raise SimVQError(f"{output}: output folder exists and is not empty (it is never overwritten)")
    meta = read_model_meta(source)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SimVQCodec.from_pretrained(source)
    if model.pitch_head is None:
        raise SimVQError(f"{source}: the model has no pitch head to refit")
    train_paths = _paths(args.manifest, args.max_files)
    valid_paths = _paths(args.valid, args.max_files) if args.valid else []

    started = time.time()

    def progress(what: str, i: int, n: int) -> None:
        if i == n or i % max(n // 10, 1) == 0:
            print(f"  {what}: {i}/{n} files ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    print(f"{args.manifest}: {len(train_paths)} files; pYIN targets and latents", file=sys.stderr)
    train = collect_items(model, train_paths, args.cache, args.workers, progress)
    valid = collect_items(model, valid_paths, args.cache, args.workers, progress) if valid_paths else []
    before = head_metrics(model.pitch_head, valid) if valid else None  # the model's own head
    model = _reshaped(model, source, args)

    def log(step: int, row: dict) -> None:
        print(f"  step {step}: loss {row['loss']:.4f} (voicing {row['loss/pitch_voicing']:.4f}, "
              f"octaves {row['loss/pitch_octaves']:.4f})", file=sys.stderr, flush=True)

    rows = fit_pitch_head(model.pitch_head, train, config, log, log_every=max(config.steps // 10, 1))
    after = head_metrics(model.pitch_head, valid) if valid else None
    dtype = args.dtype or meta.get("dtype", "float32")
    for p in model.parameters():
        p.requires_grad_(False)
    model_id = model.save_pretrained(output, dtype=getattr(torch, dtype))
    report = {"source_model": meta.get("model_id"), "model_id": model_id, "manifest": str(args.manifest),
              "valid": args.valid, "files": len(train_paths), "frames": sum(it.latent.shape[-1] for it in train),
              "config": dataclasses.asdict(config), "log": rows,
              "valid_before": before, "valid_after": after, "seconds": round(time.time() - started, 1)}
    (output / "pitch_head_fit.json").write_text(json.dumps(report, indent=2) + "\n")
    if before is not None:
        for name in before:
            print(f"  {name}: {before[name]:.4f} -> {after[name]:.4f}")
    print(f"{output}: model {model_id} (pitch head refitted from {meta.get('model_id')}; tokens unchanged)")
    return 0
