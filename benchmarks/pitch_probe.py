"""Do the built-in model's tokens carry pitch? A small probe from tokens (and latents) to pYIN F0.

Data: a seeded random subset (``--train-minutes``, default 20) of the 16 kHz English speech
files of ``train.jsonl`` and the first ``--dev-minutes`` (default: all 18 min) of ``dev.jsonl``.
Each file goes through the model once (whole file, CPU): its codes ``[T]``, the quantized
vectors ``[8, T]`` (the codebook rows of those codes), the continuous pre-quantization latents
``in_proj(encoder(x))`` ``[8, T]``, the encoder's output ``[128, T]``, and the decoded audio. As a
positive control, the same probe reads the input's log magnitude spectrum below 1 kHz (64 bins of
15.6 Hz, 1024-sample frames on pYIN's grid), where the harmonics are resolved: it shows what the
probe can find when pitch is there.

Targets: pYIN F0 (``simvq_audio.pitch.track_pitch``: 50 .. 600 Hz, 1024-sample frames) with
the model's hop, 200 samples (80 frames/s). Token ``t`` stands for samples
``[200 t, 200 t + 200)`` (``T = ceil(N / 200)``; decoding ``T`` frames gives ``200 T`` samples), so
pYIN runs on ``x[100:]``: with ``center=True`` its frame ``t`` is then centred on sample
``200 t + 100``, the middle of token ``t``'s span, and the first ``min(T, 1 + (N - 100) // 200)``
frames of both are paired. (The strided convolutions' receptive field is centred about 25
samples earlier, at ``200 t + 75``; both are far inside pYIN's 64 ms window.) The alignment
line checks this empirically: a kernel-1 probe on the encoder output, trained and scored with the
targets moved by -4 .. +4 frames; its voicing F1 should peak within a frame of 0.

Probe: input -> 64 channels (``nn.Embedding(8192, 64)`` for codes; a 1x1 convolution of the
standardised features otherwise) -> two ``Conv1d(64, 64, k)`` with GELU -> a 1x1 convolution
to 2 outputs: a voicing logit (binary cross-entropy against pYIN's decision) and log F0
(mean-squared error on pYIN-voiced frames, standardised with the train set's mean and std of
log F0). With ``k = 5`` each output sees four frames on each side (9 frames, 112 ms);
``k = 1`` is a context-free lookup. Adam (lr 3e-3), ``--steps`` steps of ``--batch`` random 5 s crops, CPU.
On dev, the probe calls a frame voiced when its voicing probability exceeds 0.5 and its F0 is
``exp`` of the de-standardised log F0; metrics pool every dev frame: voicing F1, RMS pitch
error in cents and the gross pitch error rate (> 100 cents) over frames voiced in both (as in
``simvq-audio eval``), plus the RMS error over every pYIN-voiced frame whatever the probe's
voicing says, and the same on train (to see overfitting). References: a trivial predictor
(every frame voiced, F0 = the train set's geometric-mean F0, the same for every speaker) and
pYIN on the model's decoded audio (``decode(encode(x))``: what a listener gets).

pYIN tracks and model features are cached under ``/tmp/simvq-pitch-probe`` (keyed by path,
settings and model id), so a rerun only trains the probes.

    python benchmarks/pitch_probe.py --threads 1 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)
from torch import nn

from simvq_audio.audio.io import load_audio
from simvq_audio.data.manifest import read_manifest
from simvq_audio.models.codec import SimVQCodec
from simvq_audio.pitch import PITCH_FMAX, PITCH_FMIN, frame_length_for, pitch_metrics, pitch_rmse_cents, track_pitch

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = Path("/tmp/simvq-pitch-probe")
INPUTS = ("codes", "quantized", "latent", "encoder", "spectrum")  # what a probe reads, see Item
SPECTRUM_HZ = 1000.0  # the positive control's band
CROP_FRAMES = 400  # 5 s at 80 frames/s


@dataclass
class Item:
    """One file: model features and pYIN targets, all ``[..., T]`` on token frames."""

    name: str
    codes: np.ndarray  # [T] int64
    quantized: np.ndarray  # [8, T] codebook vectors of the codes
    latent: np.ndarray  # [8, T] in_proj(encoder(x)), before the quantizer
    encoder: np.ndarray  # [128, T] encoder output
    spectrum: np.ndarray  # [64, T] log |STFT| of the input below 1 kHz (positive control)
    f0: np.ndarray  # [T] Hz, nan unvoiced: pYIN on the input
    f0_decoded: np.ndarray  # [T] Hz, nan unvoiced: pYIN on decode(encode(x))


# -- data -----------------------------------------------------------------------------------
def select_files(manifest: Path, minutes: float | None, seed: int | None) -> list[tuple[Path, float]]:
    """16 kHz English speech entries of ``manifest`` (seeded random order, or manifest order without
    ``seed``), up to ``minutes`` of audio: ``[(path, seconds)]``."""
    entries = read_manifest(manifest)
    meta = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    keep = [e for e, m in zip(entries, meta, strict=True)
            if m.get("language") == "en" and m.get("sample_rate") == 16000 and m.get("kind") == "speech"]
    if seed is not None:
        keep = [keep[i] for i in np.random.default_rng(seed).permutation(len(keep))]
    out, total = [], 0.0
    for e in keep:
        if minutes is not None and total >= minutes * 60:
            break
        out.append((Path(e.path), float(e.duration)))
        total += float(e.duration)
    return out


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


def cached_pitch(wav: np.ndarray, rate: int, hop: int, key: str) -> np.ndarray:
    """pYIN F0 of ``wav[hop // 2:]`` with ``hop`` (frame ``t`` centred on ``hop * t + hop // 2``), cached."""
    path = CACHE / f"f0-{_key(key, rate, hop, PITCH_FMIN, PITCH_FMAX, frame_length_for(rate))}.npy"
    if path.exists():
        return np.load(path)
    f0 = track_pitch(wav[hop // 2:], rate, hop_length=hop)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, f0)
    return f0


def cached_spectrum(path: Path, rate: int, hop: int) -> np.ndarray:
    """``log |STFT|`` below ``SPECTRUM_HZ`` of ``x[hop // 2:]``, on pYIN's frames (``[bins, 1 + (N - hop // 2) // hop]``)."""
    n_fft = frame_length_for(rate)
    cache = CACHE / f"spec-{_key(path.resolve(), rate, hop, n_fft, SPECTRUM_HZ)}.npy"
    if cache.exists():
        return np.load(cache)
    import librosa

    wav = load_audio(path, sample_rate=rate, channels=1).samples[0]
    bins = int(SPECTRUM_HZ * n_fft / rate)
    spec = np.log(np.abs(librosa.stft(wav[hop // 2:], n_fft=n_fft, hop_length=hop, center=True))[:bins] + 1e-5)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cache, spec.astype(np.float32))
    return spec.astype(np.float32)


@torch.inference_mode()
def load_item(model: SimVQCodec, path: Path) -> Item:
    """Features of one file (cached per model id), cut to the frames that both model and pYIN have."""
    cache = CACHE / f"feat-{model.model_id}-{_key(path.resolve())}.npz"
    rate, hop = model.sample_rate, model.hop_length
    if cache.exists():
        f = dict(np.load(cache))
    else:
        wav = load_audio(path, sample_rate=rate, channels=1).samples[0]
        x = torch.from_numpy(wav).float()[None, None]
        h = model.encoder(x)
        z = model.in_proj(h)
        codes = model.quantizer.encode(z)  # [1, 1, T], exactly what model.encode does
        decoded = model.decode(codes, length=len(wav))[0, 0].numpy()
        f = {"codes": codes[0, 0].numpy(), "quantized": model.quantizer.decode(codes)[0].numpy(),
             "latent": z[0].numpy(), "encoder": h[0].numpy().astype(np.float16),
             "f0": cached_pitch(wav, rate, hop, path.resolve()),
             "f0_decoded": track_pitch(decoded[hop // 2:], rate, hop_length=hop)}
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **f)
    spec = cached_spectrum(path, rate, hop)
    t = min(len(f["codes"]), len(f["f0"]), len(f["f0_decoded"]), spec.shape[1])
    return Item(name=path.name, codes=f["codes"][:t].astype(np.int64), quantized=f["quantized"][:, :t],
                latent=f["latent"][:, :t], encoder=f["encoder"][:, :t].astype(np.float32), spectrum=spec[:, :t],
                f0=f["f0"][:t], f0_decoded=f["f0_decoded"][:t])


# -- probe ----------------------------------------------------------------------------------
class Probe(nn.Module):
    """Codes ``[B, T]`` or features ``[B, C, T]`` -> ``[B, 2, T]``: voicing logit, standardised log F0."""

    def __init__(self, source: str, in_channels: int, kernel: int, vocab: int, width: int = 64):
        super().__init__()
        self.source = source
        self.embed = nn.Embedding(vocab, width) if source == "codes" else nn.Conv1d(in_channels, width, 1)
        self.body = nn.Sequential(nn.GELU(), nn.Conv1d(width, width, kernel, padding=kernel // 2), nn.GELU(),
                                  nn.Conv1d(width, width, kernel, padding=kernel // 2), nn.GELU(),
                                  nn.Conv1d(width, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).transpose(1, 2) if self.source == "codes" else self.embed(x)
        return self.body(h)


@dataclass
class Task:
    """Inputs and targets of one probe run: per file ``x`` (``[T]`` or ``[C, T]``), voiced ``[T]`` and
    standardised log F0 ``[T]`` (0 where unvoiced)."""

    xs: list[torch.Tensor]
    voiced: list[torch.Tensor]
    logf0: list[torch.Tensor]


def shifted(f0: np.ndarray, shift: int) -> np.ndarray:
    """``f0[t + shift]`` at frame ``t``, ``nan`` where that falls outside the track."""
    out = np.full_like(f0, np.nan)
    if shift >= 0:
        out[: len(f0) - shift] = f0[shift:]
    else:
        out[-shift:] = f0[:shift]
    return out


def make_task(items: list[Item], source: str, stats: dict, shift: int = 0) -> Task:
    """``shift`` moves the targets by that many frames (``f0[t + shift]`` for input frame ``t``)."""
    xs, voiced, logf0 = [], [], []
    for it in items:
        f0 = shifted(it.f0, shift)
        v = np.isfinite(f0)
        if source == "codes":
            x = torch.from_numpy(it.codes)
        else:
            feat = getattr(it, source)
            x = torch.from_numpy(((feat - stats[source][0]) / stats[source][1]).astype(np.float32))
        xs.append(x)
        voiced.append(torch.from_numpy(v))
        logf0.append(torch.from_numpy(np.where(v, (np.log(np.where(v, f0, 1.0)) - stats["mu"]) / stats["sd"], 0.0))
                     .float())
    return Task(xs, voiced, logf0)


def _batch(task: Task, rng: np.random.Generator, size: int):
    """``size`` random crops of ``CROP_FRAMES`` frames (shorter files whole), zero-padded, with a mask."""
    picks = rng.integers(0, len(task.xs), size)
    xs, vs, fs, ms = [], [], [], []
    for i in picks:
        n = task.voiced[i].shape[0]
        s = int(rng.integers(0, max(1, n - CROP_FRAMES + 1)))
        e = min(n, s + CROP_FRAMES)
        pad = CROP_FRAMES - (e - s)
        xs.append(nn.functional.pad(task.xs[i][..., s:e], (0, pad)))
        vs.append(nn.functional.pad(task.voiced[i][s:e].float(), (0, pad)))
        fs.append(nn.functional.pad(task.logf0[i][s:e], (0, pad)))
        ms.append(nn.functional.pad(torch.ones(e - s), (0, pad)))
    return torch.stack(xs), torch.stack(vs), torch.stack(fs), torch.stack(ms)


def train_probe(task: Task, source: str, kernel: int, vocab: int, steps: int, batch: int, seed: int) -> Probe:
    """Adam on voicing BCE + log-F0 MSE (voiced frames), both averaged over the valid frames."""
    torch.manual_seed(seed)
    channels = 0 if source == "codes" else task.xs[0].shape[0]
    probe = Probe(source, channels, kernel, vocab)
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x, v, f, m = _batch(task, rng, batch)
        out = probe(x)
        bce = nn.functional.binary_cross_entropy_with_logits(out[:, 0], v, weight=m, reduction="sum") / m.sum()
        vm = v * m
        mse = ((out[:, 1] - f) ** 2 * vm).sum() / vm.sum().clamp(min=1)
        opt.zero_grad()
        (bce + mse).backward()
        opt.step()
    return probe.eval()


@torch.inference_mode()
def predict(probe: Probe, task: Task, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pooled over files: (probe F0 in Hz, nan where it says unvoiced; probe F0 on every frame)."""
    voiced_f0, all_f0 = [], []
    for x in task.xs:
        out = probe(x[None])[0].numpy()
        f0 = np.exp(out[1] * stats["sd"] + stats["mu"])
        all_f0.append(f0)
        voiced_f0.append(np.where(out[0] > 0, f0, np.nan))
    return np.concatenate(voiced_f0), np.concatenate(all_f0)


def scores(ref_f0: np.ndarray, est_f0: np.ndarray, est_all: np.ndarray | None) -> dict:
    """Voicing F1, RMS cents and GPE over frames voiced in both, and RMS cents over every ref-voiced frame."""
    s = pitch_metrics(ref_f0, est_f0)
    s["rmse_all_voiced"] = pitch_rmse_cents(ref_f0, est_all) if est_all is not None else s["pitch_rmse_cents"]
    return s


# -- main -----------------------------------------------------------------------------------
def _load(model: SimVQCodec, files: list[tuple[Path, float]], label: str) -> list[Item]:
    items, start = [], time.time()
    for i, (path, _) in enumerate(files):
        items.append(load_item(model, path))
        if (i + 1) % 20 == 0 or i + 1 == len(files):
            print(f"  {label}: {i + 1}/{len(files)} files, {time.time() - start:.0f} s", flush=True)
    return items


def _row(label: str, s: dict, train: dict | None) -> str:
    tr = "" if train is None else f"{train['rmse_all_voiced']:.0f}"
    return (f"| {label} | {s['voicing_f1']:.3f} | {s['pitch_rmse_cents']:.0f} | {s['gross_pitch_error']:.3f} | "
            f"{s['rmse_all_voiced']:.0f} | {tr} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model folder or built-in name (default: default)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.jsonl and dev.jsonl")
    parser.add_argument("--train-minutes", type=float, default=20.0)
    parser.add_argument("--dev-minutes", type=float, default=None, help="default: all of dev.jsonl")
    parser.add_argument("--steps", type=int, default=600, help="Adam steps per probe")
    parser.add_argument("--batch", type=int, default=16, help="5 s crops per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--append", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()

    model = SimVQCodec.from_pretrained(args.model, device="cpu").eval()
    if model.config.quantizer.n_q != 1:
        raise SystemExit("the probe reads one codebook; this model has several")
    train_files = select_files(args.data / "train.jsonl", args.train_minutes, seed=args.seed)
    dev_files = select_files(args.data / "dev.jsonl", args.dev_minutes, seed=None)
    print(f"model {model.config.name} ({model.model_id}); train {len(train_files)} files "
          f"{sum(d for _, d in train_files) / 60:.1f} min, dev {len(dev_files)} files "
          f"{sum(d for _, d in dev_files) / 60:.1f} min", flush=True)
    train, dev = _load(model, train_files, "train"), _load(model, dev_files, "dev")
    t_features = time.time() - t0

    logs = np.log(np.concatenate([it.f0 for it in train]))
    logs = logs[np.isfinite(logs)]
    stats = {"mu": float(logs.mean()), "sd": float(logs.std())}
    for source in INPUTS[1:]:
        feat = np.concatenate([getattr(it, source) for it in train], axis=1)
        stats[source] = (feat.mean(axis=1, keepdims=True), feat.std(axis=1, keepdims=True) + 1e-5)
    ref_dev = np.concatenate([it.f0 for it in dev])
    ref_train = np.concatenate([it.f0 for it in train])
    seen = np.zeros(model.codebook_size, dtype=bool)
    seen[np.concatenate([it.codes for it in train])] = True
    dev_codes = np.concatenate([it.codes for it in dev])

    rows = []
    trivial = np.full_like(ref_dev, np.exp(stats["mu"]))
    rows.append(_row(f"trivial: all voiced, F0 = {np.exp(stats['mu']):.0f} Hz for everyone",
                     scores(ref_dev, trivial, None), None))
    rows.append(_row("pYIN on the decoded audio (`decode(encode(x))`)",
                     scores(ref_dev, np.concatenate([it.f0_decoded for it in dev]), None), None))
    runs = [("codes", 1, "codes (8,192-entry embedding), kernel 1: context-free lookup"),
            ("codes", 5, "codes (8,192-entry embedding), kernel 5"),
            ("quantized", 5, "quantized vectors (8-d codebook rows of the codes), kernel 5"),
            ("latent", 1, "pre-quantization latent `in_proj(encoder(x))` (8-d), kernel 1"),
            ("latent", 5, "pre-quantization latent (8-d), kernel 5"),
            ("encoder", 5, "encoder output (128-d), kernel 5"),
            ("spectrum", 5, "positive control: log spectrum of the input below 1 kHz (64 bins), kernel 5")]
    results = {}
    for source, kernel, label in runs:
        start = time.time()
        probe = train_probe(make_task(train, source, stats), source, kernel, model.codebook_size, args.steps,
                            args.batch, args.seed)
        dev_s = scores(ref_dev, *predict(probe, make_task(dev, source, stats), stats))
        train_s = scores(ref_train, *predict(probe, make_task(train, source, stats), stats))
        results[source, kernel] = dev_s
        rows.append(_row(label, dev_s, train_s))
        print(f"  {label}: {time.time() - start:.0f} s", flush=True)
    align = []
    for shift in (-4, -2, -1, 0, 1, 2, 4):
        probe = train_probe(make_task(train, "encoder", stats, shift), "encoder", 1, 0, args.steps, args.batch,
                            args.seed)
        s = scores(np.concatenate([shifted(it.f0, shift) for it in dev]),
                   *predict(probe, make_task(dev, "encoder", stats, shift), stats))
        align.append(f"{shift:+d}: {s['voicing_f1']:.3f}")

    n_train, n_dev = sum(len(it.codes) for it in train), len(dev_codes)
    head = (f"## Pitch in the tokens (benchmarks/pitch_probe.py), "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}\n"
            f"Machine: {machine('cpu')}.\n"
            f"Model: {model.config.name} (id {model.model_id}, {model.sample_rate} Hz, hop {model.hop_length}, "
            f"{model.frame_rate:g} frames/s, 1x{model.codebook_size} codes).\n"
            f"Data: train {len(train)} files, {n_train / model.frame_rate / 60:.1f} min of 16 kHz English speech "
            f"(seed {args.seed}); dev {len(dev)} files, {n_dev / model.frame_rate / 60:.1f} min. pYIN "
            f"{PITCH_FMIN:g}-{PITCH_FMAX:g} Hz on token frames: {np.isfinite(ref_dev).mean():.1%} of dev frames "
            f"voiced, train log-F0 mean {np.exp(stats['mu']):.0f} Hz (sd {stats['sd'] * 1200 / np.log(2):.0f} "
            f"cents). Dev frames whose code never occurs in the train subset: {(~seen[dev_codes]).mean():.1%}.\n"
            f"Probes: {args.steps} Adam steps of {args.batch} x 5 s crops each. Wall time: features, pYIN and "
            f"spectra {t_features:.0f} s (read from {CACHE} when there), total {time.time() - t0:.0f} s.\n")
    table = ("| dev, pooled over frames | voicing F1 | RMS cents (voiced in both) | GPE > 100 cents | "
             "RMS cents (all pYIN-voiced) | train: RMS cents (all voiced) |\n|---|---:|---:|---:|---:|---:|\n"
             + "\n".join(rows))
    text = (head + "\n" + table + "\n\nAlignment check: dev voicing F1 of a kernel-1 probe on the encoder output "
            "with the targets moved by k frames: " + ", ".join(align) + ".\n")
    print()
    print(text)
    if args.append:
        append_section(args.append, text)
        print(f"appended to {args.append}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
