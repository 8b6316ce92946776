"""Refit a trained codec's pitch head on pYIN's voicing and F0, leaving the tokens as they are.

The pitch head is trained with the codec against frame-level YIN (``modules/yin.py``), which is cheap
enough to run on every batch but misses much of the voiced speech: on our training speech, YIN at its
0.15 threshold calls voiced only about 56% of the frames that pYIN (the evaluation's tracker,
``pitch.py``) calls voiced. The head learns that recall, and where it says "unvoiced" in voiced speech
the decoder renders noise, or harmonics at an F0 it was never trained on. pYIN (an HMM over YIN's
candidates) is far too slow for the training loop, but the head is small and reads only the latents that
the codes decode to (``out_proj(quantizer.decode(codes))``), so it can be refitted afterwards on targets
computed once: the encoder, the quantizer and the decoder do not change, and neither do the tokens.

``fit_pitch_head`` does that: pYIN targets per file at the codec's frames (cached on disk; computed in
worker processes), the frozen model's latents of the same files, then Adam on random windows with the
head's loss (``losses/pitch.py``: voicing cross-entropy on every frame, L1 in octaves on pYIN's voiced
frames). ``head_metrics`` scores a head against pYIN on held-out files. ``simvq-audio fit-pitch-head`` is
the command.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_path
from ..pitch import PITCH_FMAX, PITCH_FMIN, track_pitch

TARGET_VERSION = 1  # bump when the targets' definition changes: old cache entries are then ignored


@dataclass(frozen=True)
class PitchFitConfig:
    """How the head is refitted. ``window`` frames per example (plus one frame of context each side),
    ``batch_size`` windows per step, Adam at ``lr`` with a cosine decay to 5% over ``steps``."""

    steps: int = 3000
    batch_size: int = 32
    window: int = 100
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class PitchItem:
    """One file: the codec's latents ``[D, T]`` and pYIN's targets at its frames (F0 Hz, 0 where unvoiced)."""

    path: Path
    latent: torch.Tensor
    f0: torch.Tensor
    voiced: torch.Tensor


def pyin_targets(samples: np.ndarray, sample_rate: int, hop_length: int) -> tuple[np.ndarray, np.ndarray]:
    """pYIN's ``(f0 [T] Hz, 0 where unvoiced; voiced [T] bool)`` at the codec's frames of a mono signal.

    Frame ``t`` is centred on sample ``t * hop + hop // 2`` and ``T = ceil(N / hop)``, as the codes'.
    The tracker is the evaluation's (``pitch.track_pitch``: same range and analysis frame).
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n_frames = -(-len(x) // hop_length)
    half = hop_length // 2
    f0 = np.full(n_frames, np.nan)
    if len(x) > half:
        track = track_pitch(x[half:], sample_rate, hop_length=hop_length)  # frame t centred on half + t * hop
        m = min(n_frames, len(track))
        f0[:m] = track[:m]
    voiced = np.isfinite(f0)
    return np.where(voiced, f0, 0.0).astype(np.float32), voiced


class TargetCache:
    """pYIN targets on disk, one ``.npz`` per (file's content, rate, hop, tracker settings).

    Entries are keyed by a digest of the file's bytes, so a copied, re-downloaded or touched file
    (new path or mtime, same audio) still hits and a rewritten one misses. The digest of each
    (path, size, mtime) is remembered in ``digests/``, so an unchanged file is not read again.
    """

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = None if directory is None else Path(directory)

    def _digest(self, path: Path) -> str:
        st = path.stat()
        memo = self.directory / "digests" / (
            hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20] + ".txt")
        try:
            digest = memo.read_text().strip()
            if len(digest) == 40:
                return digest
        except OSError:
            pass
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(memo) as tmp:
                tmp.write_text(digest + "\n")
        except OSError:
            pass  # a read-only cache still serves its entries
        return digest

    def _file(self, path: Path, sample_rate: int, hop_length: int) -> Path | None:
        if self.directory is None:
            return None
        key = f"{self._digest(path)}|{sample_rate}|{hop_length}|{PITCH_FMIN}|{PITCH_FMAX}|{TARGET_VERSION}"
        return self.directory / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"

    def get(self, path: Path, sample_rate: int, hop_length: int) -> tuple[np.ndarray, np.ndarray] | None:
        file = self._file(path, sample_rate, hop_length)
        if file is None or not file.is_file():
            return None
        try:
            with np.load(file) as data:
                return data["f0"], data["voiced"]
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is recomputed

    def put(self, path: Path, sample_rate: int, hop_length: int, f0: np.ndarray, voiced: np.ndarray) -> None:
        file = self._file(path, sample_rate, hop_length)
        if file is None:
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.savez(f, f0=f0, voiced=voiced)


def _targets_of(job: tuple[str, int, int, str | None]) -> tuple[np.ndarray, np.ndarray]:
    from ..audio.io import load_audio

    path, sample_rate, hop_length, cache_dir = job
    path = Path(path)
    cache = TargetCache(cache_dir)
    hit = cache.get(path, sample_rate, hop_length)
    if hit is not None:
        return hit
    f0, voiced = pyin_targets(load_audio(path, sample_rate).samples[0], sample_rate, hop_length)
    cache.put(path, sample_rate, hop_length, f0, voiced)
    return f0, voiced


def _targets_or_error(job: tuple[str, int, int, str | None]) -> tuple[np.ndarray, np.ndarray] | str:
    """``_targets_of``, or the reason the file could not be tracked (an unreadable or empty file)."""
    from ..errors import AudioError

    try:
        return _targets_of(job)
    except (AudioError, OSError, RuntimeError, ValueError) as exc:
        reason = str(exc).replace("\n", " ")
        return reason if job[0] in reason else f"{job[0]}: {reason}"


def _worker_init() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def compute_targets(paths: Sequence[str | os.PathLike], sample_rate: int, hop_length: int,
                    cache_dir: str | os.PathLike | None = None, workers: int = 1,
                    progress: Callable[[int, int], None] | None = None,
                    on_error: Callable[[str], None] | None = None) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """pYIN targets of ``paths`` (``pyin_targets``), in order; ``workers`` > 1 runs them in processes.

    A file that cannot be read raises, unless ``on_error`` is given: it is then called with a line naming
    the file and the problem, and the file's entry is ``None``.
    """
    jobs = [(str(p), sample_rate, hop_length, None if cache_dir is None else str(cache_dir)) for p in paths]
    work = _targets_of if on_error is None else _targets_or_error
    out = []

    def take(i: int, result) -> None:
        if isinstance(result, str):
            on_error(result)
            result = None
        out.append(result)
        if progress:
            progress(i + 1, len(jobs))

    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            take(i, work(job))
        return out
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
        for i, result in enumerate(pool.imap(work, jobs, chunksize=1)):
            take(i, result)
    return out


@torch.no_grad()
def latents_of(model, samples: np.ndarray) -> torch.Tensor:
    """The latents ``[D, T]`` that the pitch head reads for a mono signal: its codes, decoded by the quantizer."""
    wav = torch.from_numpy(np.asarray(samples, dtype=np.float32).reshape(1, 1, -1)).to(model.device)
    return model.codes_to_latent(model.encode(wav))[0].float().cpu()


def collect_items(model, paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike | None = None,
                  workers: int = 1, progress: Callable[[str, int, int], None] | None = None) -> list[PitchItem]:
    """Latents and pYIN targets of every file in ``paths`` (audio read at the model's rate, mono)."""
    from ..audio.io import load_audio

    sr, hop = model.sample_rate, model.hop_length
    targets = compute_targets(paths, sr, hop, cache_dir, workers,
                              None if progress is None else lambda i, n: progress("pitch", i, n))
    items = []
    for i, (path, (f0, voiced)) in enumerate(zip(paths, targets, strict=True)):
        latent = latents_of(model, load_audio(path, sr).samples[0])
        if latent.shape[-1] != len(f0):
            raise RuntimeError(f"{path}: {latent.shape[-1]} code frames but {len(f0)} pitch frames")
        items.append(PitchItem(Path(path), latent, torch.from_numpy(np.asarray(f0, np.float32)),
                               torch.from_numpy(np.asarray(voiced, bool))))
        if progress:
            progress("latents", i + 1, len(paths))
    return items


def _windows(items: Sequence[PitchItem], picks: list[tuple[int, int]], window: int, context: int = 1):
    """Batch of windows ``(latent [B, D, window + 2 context], f0 [B, window], voiced [B, window],
    mask [B, window], inside [B, 1, window + 2 context])``: ``context`` frames each side (the head's),
    and where the item is (``inside``, the head's mask: zeros past an item's ends, as the head's layers
    pad a whole file), so the head's outputs on the inner ``window`` frames equal those on the whole file."""
    d = items[0].latent.shape[0]
    lat = torch.zeros(len(picks), d, window + 2 * context)
    f0 = torch.zeros(len(picks), window)
    voiced = torch.zeros(len(picks), window, dtype=torch.bool)
    mask = torch.zeros(len(picks), window, dtype=torch.bool)
    inside = torch.zeros(len(picks), 1, window + 2 * context)
    for b, (i, start) in enumerate(picks):
        item = items[i]
        t = item.latent.shape[-1]
        first = start - context  # the frame at the window's index 0
        lo, hi = max(first, 0), min(start + window + context, t)
        lat[b, :, lo - first:hi - first] = item.latent[:, lo:hi]
        inside[b, :, lo - first:hi - first] = 1.0
        stop = min(start + window, t)
        f0[b, :stop - start] = item.f0[start:stop]
        voiced[b, :stop - start] = item.voiced[start:stop]
        mask[b, :stop - start] = True
    return lat, f0, voiced, mask, inside


def _head_logits(head, latent: torch.Tensor, inside: torch.Tensor, context: int = 1) -> torch.Tensor:
    out = head(latent, inside)
    return out[..., context:out.shape[-1] - context]


def fit_pitch_head(head: torch.nn.Module, items: Sequence[PitchItem], config: PitchFitConfig = PitchFitConfig(),
                   log: Callable[[int, dict], None] | None = None, log_every: int = 100) -> list[dict]:
    """Train ``head`` (in place) on ``items``; returns the logged rows (step, loss terms, lr).

    Windows are drawn at random (a fixed seed), each file in proportion to its frames. The loss is the
    codec's pitch loss (``PitchLoss``) with pYIN's targets.
    """
    from ..losses.pitch import PitchLoss

    if not items:
        raise ValueError("no files to fit the pitch head on")
    gen = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    lengths = np.array([it.latent.shape[-1] for it in items], dtype=np.float64)
    p = lengths / lengths.sum()
    loss_fn = PitchLoss(1, 1)
    context = int(getattr(head, "context", 1))
    params = list(head.parameters())
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    head.train()
    rows = []
    for step in range(1, config.steps + 1):
        idx = gen.choice(len(items), size=config.batch_size, p=p)
        picks = [(int(i), int(gen.integers(0, max(int(lengths[i]) - config.window, 0) + 1))) for i in idx]
        lat, f0, voiced, mask, inside = _windows(items, picks, config.window, context)
        pred = _head_logits(head, lat, inside, context)
        loss, logs = loss_fn(pred, None, mask, targets=(f0, voiced))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == config.steps:
            row = {"step": step, "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"],
                   **{k: float(v) for k, v in logs.items()}}
            rows.append(row)
            if log:
                log(step, row)
    head.eval()
    return rows


@torch.no_grad()
def head_metrics(head: torch.nn.Module, items: Sequence[PitchItem]) -> dict[str, float]:
    """The head against pYIN's targets over ``items``: voicing precision, recall and F1 (probability > 0.5),
    and on the frames voiced in both, the gross pitch error (share above 100 cents) and RMS error in cents,
    as ``pitch.pitch_metrics`` scores two tracks. ``voiced_share``: pYIN's voiced share of all frames."""
    from ..modules.pitch_head import PitchHead
    from ..pitch import pitch_metrics

    refs, ests = [], []
    for item in items:
        f0, prob = PitchHead.to_hz(head(item.latent[None]))
        refs.append(item.f0.double().numpy())  # 0 where unvoiced
        ests.append(torch.where(prob[0] > 0.5, f0[0].double(), torch.nan).numpy())
    ref = np.concatenate(refs) if refs else np.zeros(0)
    est = np.concatenate(ests) if ests else np.zeros(0)
    r, e = ref > 0, np.isfinite(est)
    tp, fp, fn = int(np.sum(r & e)), int(np.sum(~r & e)), int(np.sum(r & ~e))
    nan = float("nan")
    return {
        "voicing_precision": tp / (tp + fp) if tp + fp else nan,
        "voicing_recall": tp / (tp + fn) if tp + fn else nan,
        **pitch_metrics(ref, est),
        "voiced_share": (tp + fn) / len(ref) if len(ref) else nan,
    }
