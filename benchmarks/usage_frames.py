"""Where a trained codebook's usage goes, against the number of frames counted (issue 11).

A window of ``N`` frames can use at most ``1 - (1 - 1/K)^N`` of ``K`` codes even if every code is
equally likely (the uniform ceiling: 95% at 3 K frames). This benchmark separates the two ways a
codebook falls short of it: codes that are never reached (dead: the curve flattens below the ceiling
however many frames are counted) and codes that are reached but rarely (the curve keeps rising with
``N``, behind the ceiling). It takes a trained codec, its pre-lookup latents on every frame of a set of
files (by default the training split, the frames the codebook was fitted on, and dev), shuffles the
frames (seeded; consecutive frames of one file are not independent draws) and counts the codes used by
the first ``N`` frames for ``N`` from ``K / 4`` to all of them, next to the ceiling and next to as many
draws from one Gaussian with the latents' mean and covariance against the same codebook (the latents'
shape taken out). It also reports how the frames spread over the codes: how many codes take no frame,
how many take 1-2 (rare), and the share of the frames on the most used 1% and 10% of the codes.

The trainer's window differs from a fixed model's frames in two ways, each of which this benchmark can
put back: ``--crops S --loudness-db LOW HIGH`` encodes every file as crops of ``S`` seconds, each scaled to a
seeded random RMS level in that range, as the trainer's batches are (``data.loudness_db``); the other
difference, the model changing over the steps of the window, is what remains between this count and the
trainer's.

    python benchmarks/usage_frames.py --model MODEL --threads 2 --append BENCHMARKS.md

``MODEL`` is a model folder or name (``simvq-audio export RUN -o MODEL`` turns a training run into one).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)
from usage_ceiling import DEFAULT_DATA, latents, manifest_files  # noqa: E402


def used_curve(codes: np.ndarray, k: int, points: list[int]) -> list[tuple[int, float, float]]:
    """``(N, share of the K codes used by codes[:N], uniform ceiling for N)`` for each N in ``points``."""
    from simvq_audio.quantization.tracker import uniform_ceiling

    first = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))  # the frame at which each code is first used
    first.sort()
    out = []
    for n in points:
        used = int(np.searchsorted(first, n, side="left"))  # codes first used before frame n
        out.append((n, used / k, uniform_ceiling(n, k)))
    return out


def spread(codes: np.ndarray, k: int) -> dict[str, float]:
    """How the frames spread over the codes: unused, rare (1-2 frames), the top 1% and 10% codes' share."""
    from simvq_audio.evaluation.evaluate import codebook_stats

    counts = np.sort(np.bincount(codes, minlength=k))[::-1]
    total = counts.sum()
    stats = codebook_stats(counts[None])
    return {"unused": stats["dead_codes"], "rare": int(((counts > 0) & (counts <= 2)).sum()),
            "top1": float(counts[: max(1, k // 100)].sum() / total), "top10": float(counts[: max(1, k // 10)].sum() / total),
            "perplexity": stats["perplexity"]}


@torch.no_grad()
def crop_latents(codec, files: list[Path], seconds: float, loudness: tuple[float, float] | None, seed: int,
                 batch: int = 32) -> torch.Tensor:
    """Pre-lookup latents ``[N, d]`` (float64) of consecutive crops of ``seconds`` of every file (the rest of a
    file dropped), each crop scaled to a seeded uniform RMS level in ``loudness`` dB (boost capped at 40 dB)
    when given, as the trainer scales its crops."""
    from simvq_audio.audio.io import load_audio
    from simvq_audio.training.levels import set_levels

    size = round(seconds * codec.sample_rate)
    crops = []
    for f in files:
        wav = torch.from_numpy(load_audio(f, codec.sample_rate).samples).float()
        n = wav.shape[-1] // size
        crops += list(wav[:, : n * size].reshape(wav.shape[0], n, size).transpose(0, 1))
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(crops), batch):
        x = torch.stack(crops[i : i + batch])
        if loudness is not None:
            low, high = loudness
            target = low + (high - low) * torch.rand(x.shape[0], generator=g, dtype=torch.float64)
            x = set_levels(x, torch.full((x.shape[0],), size), target.float())
        z = codec._latents(x, None)  # [B, d, T]
        out.append(z.transpose(1, 2).reshape(-1, z.shape[1]).double())
    return torch.cat(out)


def nearest(points: torch.Tensor, codebook: torch.Tensor) -> np.ndarray:
    from simvq_audio.quantization.search import nearest_codes

    return nearest_codes(points.float(), codebook.float()).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model folder or name (default: the built-in model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--splits", nargs="+", default=["train", "dev"], help="manifests under --data to count")
    parser.add_argument("--files", type=int, default=100000, help="files per split (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crops", type=float, default=0.0, help="encode crops of this many seconds (0: whole files)")
    parser.add_argument("--loudness-db", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="scale each crop to a random RMS level in this range (needs --crops)")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    if args.loudness_db is not None and args.crops <= 0:
        parser.error("--loudness-db needs --crops")
    torch.set_num_threads(args.threads)
    from simvq_audio.models import SimVQCodec

    codec = SimVQCodec.from_pretrained(args.model).eval()
    codebook = codec.quantizer.stages[0].codebook().detach()
    k = codebook.shape[0]
    sections = []
    for split in args.splits:
        files = manifest_files(args.data / f"{split}.jsonl", args.files)
        if args.crops > 0:
            points = crop_latents(codec, files, args.crops, args.loudness_db, args.seed)
        else:
            points = latents(codec, files)
        n = points.shape[0]
        g = torch.Generator().manual_seed(args.seed)
        points = points[torch.randperm(n, generator=g)]
        gauss = points.mean(0) + torch.randn(points.shape, generator=g, dtype=torch.float64) @ \
            torch.linalg.cholesky(torch.cov(points.T)).T
        real, fake = nearest(points, codebook), nearest(gauss, codebook)
        grid = sorted({m for m in (k // 4, k // 2, k, 2 * k, 3 * k, 5 * k, 10 * k, 20 * k, 50 * k) if m < n} | {n})
        curve = list(zip(used_curve(real, k, grid), used_curve(fake, k, grid), strict=True))
        s_real, s_fake = spread(real, k), spread(fake, k)
        print(f"{split}: {n:,} frames = {n / k:.1f} K")
        for (m, u, c), (_, ug, _) in curve:
            print(f"  N = {m:>9,} ({m / k:5.2f} K): latents {100 * u:5.1f}%, gaussian {100 * ug:5.1f}%, ceiling {100 * c:5.1f}%")
        for name, s in (("latents", s_real), ("gaussian", s_fake)):
            print(f"  {name}: unused {s['unused']:,}, used once or twice {s['rare']:,}, top 1% of codes "
                  f"{100 * s['top1']:.1f}% of frames, top 10% {100 * s['top10']:.1f}%, perplexity {s['perplexity']:,.0f}",
                  flush=True)
        sections.append((split, n, curve, s_real, s_fake))
    if args.append:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        how = "whole files at their recorded levels" if args.crops <= 0 else f"crops of {args.crops:g} s" + (
            "" if args.loudness_db is None else f", each at a random RMS level in [{args.loudness_db[0]:g}, {args.loudness_db[1]:g}] dB")
        lines = [f"## Codebook usage against the frames counted (benchmarks/usage_frames.py), {stamp}", "",
                 f"`python benchmarks/usage_frames.py --model {args.model}` on {machine()}; model {codec.model_id}, "
                 f"{how}, "
                 f"K = {k:,}, {codebook.shape[1]}-d lookup. Frames shuffled (seed {args.seed}); 'gaussian' = as many "
                 "draws from one Gaussian with the latents' mean and covariance, against the same codebook."]
        for split, n, curve, s_real, s_fake in sections:
            lines += ["", f"**{split}** ({n:,} frames, {n / k:.1f} K):", "",
                      "| frames counted | latents | gaussian | uniform ceiling |", "|---:|---:|---:|---:|"]
            lines += [f"| {m:,} ({m / k:.2f} K) | {100 * u:.1f}% | {100 * ug:.1f}% | {100 * c:.1f}% |"
                      for (m, u, c), (_, ug, _) in curve]
            lines += ["", "| points | codes unused | used 1-2 times | frames on the top 1% of codes | top 10% | perplexity |",
                      "|---|---:|---:|---:|---:|---:|"]
            lines += [f"| {name} | {s['unused']:,} | {s['rare']:,} | {100 * s['top1']:.1f}% | {100 * s['top10']:.1f}% | "
                      f"{s['perplexity']:,.0f} |" for name, s in (("latents", s_real), ("gaussian", s_fake))]
        append_section(args.append, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
