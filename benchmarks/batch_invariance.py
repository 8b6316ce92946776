"""Do tokens depend on the batch? Flip rate, exact-search cost, and CPU speed of the two ways to batch.

With the built-in model (or ``--model DIR``) on the dev speech of ``--data``:

1. every file encoded alone (``batch_size=1``) against all files encoded together with ``--batch-size``
   windows sharing a padded forward pass (``batch_invariant=False``, what a GPU does): tokens that differ;
2. the same with the CPU default (``batch_invariant=True``: each window has a pass of its own);
3. wall time of (1) and (2), i.e. what batching buys or costs on this CPU;
4. the nearest-code search on all frames: time, and the share of frames whose near-tie is settled in
   float64 (``quantization.search``).

    python benchmarks/batch_invariance.py --threads 1 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

from simvq_audio import Tokenizer
from simvq_audio.audio.io import load_audio
from simvq_audio.quantization import search

REPO = Path(__file__).resolve().parents[1]


def differing(a: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[int, int, int]:
    """(tokens that differ, files with a difference, tokens)."""
    flips = [int((x != y).sum()) for x, y in zip(a, b, strict=True)]
    return sum(flips), sum(f > 0 for f in flips), sum(x.numel() for x in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--every", type=int, default=1, help="take every N-th dev file (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--append", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = [json.loads(line) for line in (args.data / "dev.jsonl").read_text().splitlines() if line.strip()]
    items = [load_audio(args.data / r["path"], 16000, 1).samples for r in rows[:: args.every]]
    seconds = sum(x.shape[-1] for x in items) / 16000
    tok = Tokenizer.from_pretrained(args.model, device="cpu", batch_size=args.batch_size)
    padded = Tokenizer(tok.model, device="cpu", batch_size=args.batch_size, batch_invariant=False)

    stage = tok.model.quantizer.stages[0]
    latents: list[torch.Tensor] = []
    real_encode = stage.encode
    stage.encode = lambda z: latents.append(z.detach().transpose(1, 2).reshape(-1, z.shape[1])) or real_encode(z)
    t0 = time.perf_counter()
    alone = [tok.encode(x) for x in items]
    t_alone = time.perf_counter() - t0
    stage.encode = real_encode

    t0 = time.perf_counter()
    together_padded = padded.encode_batch(items).unpad()
    t_padded = time.perf_counter() - t0
    t0 = time.perf_counter()
    together_windows = tok.encode_batch(items).unpad()
    t_windows = time.perf_counter() - t0

    frames = torch.cat(latents)
    codebook = stage.codebook()
    settled = []
    real_exact = search._exact_codes
    search._exact_codes = lambda x, c, m: settled.append(x.shape[0]) or real_exact(x, c, m)
    t0 = time.perf_counter()
    search.nearest_codes(frames, codebook)
    t_search = time.perf_counter() - t0
    search._exact_codes = real_exact

    flips_padded, files_padded, n_tokens = differing(alone, together_padded)
    flips_windows, files_windows, _ = differing(alone, together_windows)
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"## Tokens and the batch (benchmarks/batch_invariance.py), {now}",
        f"Machine: {platform.processor() or platform.machine()} ({os.cpu_count()} cores, load avg {load:.1f}), "
        f"torch {torch.__version__}, cpu, {args.threads} threads. Model {args.model} ({tok.model_id}); "
        f"{len(items)} dev files, {seconds:.0f} s of speech, batch size {args.batch_size}.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| tokens that differ from each file encoded alone, padded batches (as on a GPU) | "
        f"{flips_padded} of {n_tokens:,} ({files_padded} files) |",
        f"| ... each window in a pass of its own (the CPU default) | {flips_windows} of {n_tokens:,} |",
        f"| encode, each file alone | {seconds / t_alone:.1f}x real time |",
        f"| encode, padded batches | {seconds / t_padded:.1f}x real time |",
        f"| encode, batched files, each window in a pass of its own | {seconds / t_windows:.1f}x real time |",
        f"| nearest-code search over all {frames.shape[0]:,} frames | {t_search:.2f} s "
        f"({100 * t_search / t_alone:.1f} % of the time encoding alone) |",
        f"| frames whose near-tie is settled in float64 | {sum(settled):,} ({sum(settled) / frames.shape[0]:.2%}) |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
