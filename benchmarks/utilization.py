"""Codebook utilisation of SimVQ and plain VQ fitted to encoder-like latents of real speech.

Latents: log-mel frames of real speech (16 kHz, 80 mels, 25 ms window, hop 160) from
``shared/data/train``, standardised per mel bin, then a fixed random map to ``d = 64``: a
linear projection plus a small random MLP (80 -> 256 -> 64, GELU), standardised again and
scaled to per-dimension std ``d ** -0.5`` (the codebooks' initial scale, so plain VQ starts
well matched). They stand in for an encoder's output; nothing upstream of the quantizer is
learned.

Two settings, each with Adam on random batches of training frames:

* ``alone``: the quantizer on the fixed latents, minimising ``codebook_loss + 0.25 *
  commitment_loss`` (the commitment term has no gradient here). Plain VQ learns its
  codebook; SimVQ learns only ``W`` (``C`` stays frozen). Both codebooks start at the
  latents' scale (std ``d ** -0.5``).
* ``heads``: the same quantizer between a learnable MLP before it and one after it, adding
  the latents' reconstruction MSE, since in a codec the encoder adapts to the codebook too.

We then encode held-out frames from ``shared/data/dev`` and report the fraction of codes
used, the perplexity and the reconstruction MSE of the latents. ``N`` held-out frames can
use at most ``1 - (1 - 1/K) ** N`` of the codebook even when every code is equally likely:
that ceiling is printed beside the utilisation. Defaults (100k train frames, 40k dev
frames, 300 steps of 256 frames, lr 1e-2: the best of 1e-3, 3e-3 and 1e-2 for plain VQ in
a short sweep at K = 1024 and 8192) take about 5 minutes on one CPU thread. ``--data-init``
starts both codebooks from the project's moment-matching initialisation instead of the paper's.

    python benchmarks/utilization.py --threads 1 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import torch
from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)
from torch import nn

from simvq_audio.audio.io import load_audio
from simvq_audio.data.manifest import read_manifest
from simvq_audio.quantization import SimVQ, VectorQuantizer

SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 400, 160, 80
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# -- latents --------------------------------------------------------------------------------
def log_mel_frames(manifest: Path, max_frames: int, seed: int) -> np.ndarray:
    """``[N, 80]`` log-mel frames from the manifest's files in a seeded random order, at most ``max_frames``."""
    entries = read_manifest(manifest)
    order = np.random.default_rng(seed).permutation(len(entries))
    mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
    frames, total = [], 0
    for i in order:
        wav = load_audio(entries[i].path, sample_rate=SAMPLE_RATE, channels=1).samples[0]
        spec = np.abs(librosa.stft(wav, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT)) ** 2
        mel = np.log(np.maximum(mel_basis @ spec, 1e-10)).T.astype(np.float32)  # [T, 80]
        frames.append(mel[: max_frames - total])
        total += len(frames[-1])
        if total >= max_frames:
            break
    return np.concatenate(frames)


class RandomEncoder:
    """A fixed random map from standardised log-mel ``[N, 80]`` to latents ``[N, d]`` (stats from train)."""

    def __init__(self, train_mel: np.ndarray, dim: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.mel_mean, self.mel_std = train_mel.mean(0), train_mel.std(0) + 1e-5
        self.proj = torch.randn(N_MELS, dim, generator=g) / math.sqrt(N_MELS)
        self.w1 = torch.randn(N_MELS, 256, generator=g) / math.sqrt(N_MELS)
        self.w2 = torch.randn(256, dim, generator=g) / math.sqrt(256)
        raw = self._raw(train_mel)
        self.mean, self.std = raw.mean(0), raw.std(0) + 1e-5

    def _raw(self, mel: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy((mel - self.mel_mean) / self.mel_std).float()
        return x @ self.proj + torch.nn.functional.gelu(x @ self.w1) @ self.w2

    def __call__(self, mel: np.ndarray) -> torch.Tensor:
        # Per-dimension std d ** -0.5, the scale of both codebooks' initialisation (E|z|^2 = 1).
        return (self._raw(mel) - self.mean) / self.std * self.mean.numel() ** -0.5


# -- fit and measure --------------------------------------------------------------------------
def make_quantizer(kind: str, k: int, dim: int, seed: int, data_init: bool = False):
    torch.manual_seed(seed)  # W's initialisation
    if kind == "simvq":
        return SimVQ(dim, k, seed=seed, data_init=data_init)
    return VectorQuantizer(dim, k, seed=seed, data_init=data_init)


class Harness(nn.Module):
    """A quantizer between optional learnable heads: ``latents [N, d] -> reconstruction [N, d]``.

    ``heads=False``: the quantizer alone (identity heads). ``heads=True``: a small MLP before it
    (the encoder's last layers, which in a codec also adapt to the codebook) and one after it,
    trained with the reconstruction MSE of the latents; the same heads for both quantizers.
    """

    def __init__(self, quantizer, heads: bool, hidden: int = 128):
        super().__init__()
        d = quantizer.dim
        self.quantizer = quantizer
        self.inp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)) if heads else nn.Identity()
        self.out = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)) if heads else nn.Identity()
        self.heads = heads

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quantizer(self.inp(x).t().unsqueeze(0))  # [1, d, N]
        if not self.heads:  # nothing upstream to train: only the quantizer's own losses
            return q.loss
        return (self.out(q.quantized[0].t()) - x).pow(2).mean() + q.loss

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.quantizer.encode(self.inp(x).t().unsqueeze(0))
        return self.out(self.quantizer.decode(codes)[0].t()), codes


def fit(harness: Harness, train: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> float:
    """Adam on random batches of ``train [N, d]``; returns the final batch loss."""
    opt = torch.optim.Adam([p for p in harness.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    harness.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = harness.loss(train[torch.randint(0, train.shape[0], (batch,), generator=g)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def measure(harness: Harness, held_out: torch.Tensor) -> dict:
    harness.eval()
    recon, codes = harness.reconstruct(held_out)
    err = (recon - held_out).pow(2)
    counts = torch.bincount(codes.reshape(-1), minlength=harness.quantizer.codebook_size).double()
    probs = counts[counts > 0] / counts.sum()
    k, n = harness.quantizer.codebook_size, held_out.shape[0]
    return {
        "utilization": float((counts > 0).double().mean()),
        "ceiling": 1.0 - (1.0 - 1.0 / k) ** n,
        "perplexity": math.exp(float(-(probs * probs.log()).sum())),
        "mse": float(err.mean()),
        "rel_mse": float(err.sum() / (held_out - held_out.mean(0)).pow(2).sum()),
    }


# -- report ---------------------------------------------------------------------------------


def table(results: list[dict]) -> str:
    lines = ["| setting | quantizer | K | used codes (dev) | uniform ceiling | perplexity | perplexity / K "
             "| MSE (dev) | relative MSE |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['kind']} | {r['K']} | {100 * r['utilization']:.1f}% | "
                     f"{100 * r['ceiling']:.1f}% | {r['perplexity']:.0f} | {r['perplexity'] / r['K']:.3f} | "
                     f"{r['mse']:.5f} | {r['rel_mse']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.jsonl and dev.jsonl")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192, 65536], help="codebook sizes K")
    parser.add_argument("--kinds", nargs="+", default=["simvq", "vq"], choices=["simvq", "vq"])
    parser.add_argument("--modes", nargs="+", default=["alone", "heads"], choices=["alone", "heads"],
                        help="alone: the quantizer on fixed latents; heads: between learnable MLP heads")
    parser.add_argument("--dim", type=int, default=64, help="latent size d")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per quantizer")
    parser.add_argument("--batch", type=int, default=256, help="frames per step")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--train-frames", type=int, default=100_000, help="training frames (10 ms each)")
    parser.add_argument("--dev-frames", type=int, default=40_000, help="held-out frames (10 ms each)")
    parser.add_argument("--data-init", action="store_true",
                        help="moment-matching codebook init on the first batch (QuantizerConfig's default) instead "
                        "of the paper's (Gaussian C, nn.Linear's default W)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); 1 is steadier "
                        "on a shared machine")
    parser.add_argument("--append", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.time()
    train_mel = log_mel_frames(args.data / "train.jsonl", args.train_frames, args.seed)
    dev_mel = log_mel_frames(args.data / "dev.jsonl", args.dev_frames, args.seed)
    encoder = RandomEncoder(train_mel, args.dim, args.seed)
    train, dev = encoder(train_mel), encoder(dev_mel)
    print(f"latents: {len(train)} train frames, {len(dev)} dev frames, d={args.dim} "
          f"({time.time() - started:.0f} s)", flush=True)
    results = []
    for mode in args.modes:
        for k in args.sizes:
            for kind in args.kinds:
                t0 = time.time()
                harness = Harness(make_quantizer(kind, k, args.dim, args.seed, args.data_init), heads=mode == "heads")
                final_loss = fit(harness, train, args.steps, args.batch, args.lr, args.seed)
                row = {"mode": mode, "kind": kind, "K": k, "train_loss": final_loss, **measure(harness, dev)}
                results.append(row)
                print(f"{mode:5s} {kind:5s} K={k:6d}: used {100 * row['utilization']:.1f}% (ceiling "
                      f"{100 * row['ceiling']:.1f}%), perplexity {row['perplexity']:.0f}, dev MSE {row['mse']:.5f} "
                      f"({time.time() - t0:.0f} s)", flush=True)
    init = "data-dependent" if args.data_init else "paper"
    init_text = ("Codebooks start from moment matching on the first batch (`data_init`, QuantizerConfig's "
                 "default): the same starting code vectors for both." if args.data_init else
                 "Codebooks start as in the paper: Gaussian C with std d^-0.5, nn.Linear's default W for SimVQ.")
    header = (
        f"## Codebook utilisation: SimVQ vs plain VQ on speech latents ({init} initialisation)\n\n"
        f"{datetime.date.today().isoformat()}; {machine()}. Latents: log-mel (16 kHz, 80 mels, hop 160) of "
        f"{len(train)} frames of shared/data/train through a fixed random linear + MLP map to d={args.dim}, "
        f"standardised to per-dim std d^-0.5 (the codebooks' initial scale). {args.steps} Adam steps (lr {args.lr}) "
        f"of {args.batch} random frames. *alone*: the quantizer on the fixed latents, minimising codebook + 0.25 * "
        f"commitment loss (VQ learns its codebook, SimVQ only W). {init_text} *heads*: the same quantizer between a learnable "
        f"MLP before it and one after it (d -> 128 -> d, GELU), adding the latents' reconstruction MSE, as an "
        f"encoder would adapt. Measured on {len(dev)} frames of shared/data/dev: used codes; the uniform ceiling "
        f"1 - (1 - 1/K)^N is what N frames can use at best; MSE of the reconstructed latents and relative MSE "
        f"(error / variance). Wall time: {time.time() - started:.0f} s. "
        f"`python benchmarks/utilization.py{' --threads ' + str(args.threads) if args.threads else ''}"
        f"{' --data-init' if args.data_init else ''}`\n"
    )
    body = table(results)
    print("\n" + header + "\n" + body)
    if args.append:
        append_section(args.append, header + "\n" + body)
        print(f"appended to {args.append}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
