"""Where a SimVQ codebook's usage goes: the shape of the latents, or the codebook (issue 11).

SimVQ's effective codebook ``W(C)`` is an affine image of Gaussian draws, so it is itself Gaussian. This
benchmark takes a trained codec's latents just before the lookup (the built-in model's 8-d latents, YIN
pitch features included) and counts the codes used by

* ``latents``: the real latents of ``shared/data/dev``;
* ``gaussian``: as many draws from one Gaussian with the latents' mean and covariance,

each against two codebooks: the model's own ``W(C)`` (``trained``) and a fresh seeded Gaussian codebook
moment-matched to the *training* latents (``matched``, the data-dependent initialisation: what an
affine Gaussian codebook can do without any training), at the model's K and at K = 65,536. The
uniform ceiling is the share ``N`` uniform draws would use. Reading: ``gaussian`` against ``matched``
is the most any affine-Gaussian codebook can give latents of that covariance in that dimension;
the gap from ``gaussian`` to ``latents`` is what the latents' non-Gaussian shape (clusters, voiced and
unvoiced frames apart) costs.

    python benchmarks/usage_ceiling.py --threads 2 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def manifest_files(path: Path, limit: int) -> list[Path]:
    from simvq_audio.data.manifest import read_manifest

    return [Path(e.path) for e in read_manifest(path)][:limit]


@torch.no_grad()
def latents(codec, files: list[Path]) -> torch.Tensor:
    """Pre-lookup latents ``[N, d]`` (float64) of every frame of ``files``."""
    from simvq_audio.audio.io import load_audio

    out = []
    for f in files:
        wav = torch.from_numpy(load_audio(f, codec.sample_rate).samples).float()[None]
        out.append(codec._latents(wav, None)[0].T.double())
    return torch.cat(out)


def usage(points: torch.Tensor, codebook: torch.Tensor) -> tuple[float, float, float]:
    """Share of codes used, its uniform ceiling and perplexity, by the project's exact nearest-code search."""
    from simvq_audio.evaluation.evaluate import codebook_stats
    from simvq_audio.quantization.search import nearest_codes

    codes = nearest_codes(points.float(), codebook.float())
    stats = codebook_stats(np.bincount(codes.numpy(), minlength=codebook.shape[0])[None])
    return stats["codebook_utilisation"], stats["uniform_ceiling"], stats["perplexity"]


def variance_spectrum(points: torch.Tensor) -> tuple[list[float], float]:
    """Share of the variance of ``points [N, d]`` along each principal direction (largest first) and the
    effective number of dimensions (participation ratio ``(sum l)^2 / sum l^2``: ``d`` when isotropic)."""
    eig = torch.linalg.eigvalsh(torch.cov(points.double().T)).flip(0).clamp(min=0)
    return (eig / eig.sum()).tolist(), float(eig.sum() ** 2 / eig.square().sum())


def matched_codebook(k: int, d: int, train: torch.Tensor, seed: int) -> torch.Tensor:
    """SimVQ's effective codebook ``W(C)`` of ``k`` codes right after its data-dependent initialisation on
    ``train [N, d]`` (moment matching, before any training step)."""
    from simvq_audio.quantization.simvq import SimVQ

    quantizer = SimVQ(d, k, seed=seed, data_init=True)
    quantizer._data_init(train.float())
    return quantizer.eval().codebook()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train-files", type=int, default=200, help="training files whose latents' moments fit 'matched'")
    parser.add_argument("--dev-files", type=int, default=1000, help="dev files counted (default: all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 65536])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from simvq_audio.models import SimVQCodec

    codec = SimVQCodec.from_pretrained(args.model).eval()
    train = latents(codec, manifest_files(args.data / "train.jsonl", args.train_files))
    dev = latents(codec, manifest_files(args.data / "dev.jsonl", args.dev_files))
    dev_mean, dev_cov = dev.mean(0), torch.cov(dev.T)
    g = torch.Generator().manual_seed(args.seed + 1)
    gauss = dev_mean + torch.randn(dev.shape, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(dev_cov).T
    n, d = dev.shape
    codebooks = {f"trained (K = {codec.codebook_size:,})": codec.quantizer.stages[0].codebook()}
    for k in args.sizes:
        codebooks[f"matched (K = {k:,})"] = matched_codebook(k, d, train, args.seed)
    rows = []
    for name, book in codebooks.items():
        for what, points in (("latents", dev), ("gaussian", gauss)):
            used, ceiling, ppl = usage(points, book)
            rows.append((name, what, used, ceiling, ppl))
            print(f"{name:>24} {what:>9}: {100 * used:5.1f}% used (ceiling {100 * ceiling:5.1f}%), perplexity {ppl:,.0f}",
                  flush=True)
    # How far from one Gaussian the latents are: the share of dev frames outside the 99% ellipsoid.
    white = torch.linalg.solve_triangular(torch.linalg.cholesky(dev_cov), (dev - dev_mean).T, upper=False).T
    r2 = white.square().sum(-1)
    from scipy.stats import chi2

    outside = float((r2 > chi2.ppf(0.99, d)).double().mean())
    kurt = float((r2.square().mean() / (d * (d + 2))))
    share, effective = variance_spectrum(dev)
    spectrum = ", ".join(f"{100 * x:.1f}%" for x in share)
    print(f"dev latents' variance by principal direction: {spectrum}; effective dimensions {effective:.2f} of {d}")
    print(f"dev latents: {n:,} frames, d = {d}; outside the 99% ellipsoid: {100 * outside:.1f}% "
          f"(1.0% for a Gaussian); Mardia kurtosis ratio {kurt:.2f} (1.00 for a Gaussian)")
    if args.append:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        lines = [f"## Where SimVQ's usage goes: latents against Gaussian draws ({stamp})", "",
                 f"`python benchmarks/usage_ceiling.py` on {machine()}; model `{args.model}` "
                 f"({codec.model_id}), {n:,} dev frames ({d}-d pre-lookup latents); 'matched' codebooks are seeded "
                 f"Gaussians moment-matched to {train.shape[0]:,} training frames; 'gaussian' = as many draws from "
                 "one Gaussian with the dev latents' mean and covariance.", "",
                 "| codebook | points | codes used | uniform ceiling | perplexity |", "|---|---|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {100 * u:.1f}% | {100 * c:.1f}% | {p:,.0f} |" for a, b, u, c, p in rows]
        lines += ["", f"Dev latents outside the 99% ellipsoid of their own Gaussian: {100 * outside:.1f}% "
                  f"(1.0% for a Gaussian); Mardia kurtosis ratio {kurt:.2f} (1.00 for a Gaussian). Their variance by "
                  f"principal direction: {spectrum}; effective dimensions (participation ratio) {effective:.2f} of {d}."]
        append_section(args.append, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
