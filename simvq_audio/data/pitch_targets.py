"""pYIN's voicing and F0 for training crops: the pitch loss's targets when ``loss.pitch_targets`` is ``pyin``.

The codec's pitch loss (``losses/pitch.py``) takes YIN's F0 of the batch by default: cheap enough to run
on every batch, but YIN at its 0.15 threshold calls voiced only about 56% of the frames that pYIN does
on our training speech (docs/training.md, "Refitting the pitch head"), and the pitch head learns that
recall. pYIN is far too slow for the training loop, so ``PitchTargets.prepare`` tracks every training
file once, at the model's rate and frames, into ``training/pitch_fit.TargetCache`` (worker processes;
later runs and ``simvq-audio fit-pitch-head`` reuse the cache), and ``PitchTargets.crop`` cuts a crop's
frames out of a file's track.

A crop that starts ``s`` samples into its file has frames centred on ``s + j * hop + hop / 2``, between
the file's frames ``floor(s / hop + j)`` and the next: where both are voiced the F0 is interpolated in
log frequency, otherwise the nearer frame gives voicing and F0. Frames past the file's end are unvoiced
(the trainer's frame mask leaves them out).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import SimVQError

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SIMVQ_AUDIO_CACHE/pitch`` or ``$XDG_CACHE_HOME/simvq-audio/pitch`` (``~/.cache`` by default)."""
    root = os.environ.get("SIMVQ_AUDIO_CACHE")
    if root:
        return Path(root) / "pitch"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simvq-audio" / "pitch"


def crop_track(f0: np.ndarray, voiced: np.ndarray, start: float, frames: int, hop_length: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The ``frames`` frames of a crop that starts ``start`` samples into a file whose track is
    ``(f0 [T] Hz, voiced [T] bool)``: ``(f0 [frames] float32, 0 where unvoiced; voiced [frames] bool)``."""
    n = len(f0)
    pos = start / hop_length + np.arange(frames, dtype=np.float64)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    hi = lo + 1
    near = np.where(frac < 0.5, lo, hi)

    def at(index: np.ndarray, values: np.ndarray, fill):
        inside = (index >= 0) & (index < n)
        out = np.full(index.shape, fill, dtype=values.dtype)
        out[inside] = values[index[inside]]
        return out

    v_lo, v_hi, v_near = at(lo, voiced, False), at(hi, voiced, False), at(near, voiced, False)
    f_lo, f_hi, f_near = at(lo, f0, 0.0), at(hi, f0, 0.0), at(near, f0, 0.0)
    both = v_lo & v_hi & (frac > 0)
    out_f0 = np.where(v_near, f_near, 0.0)
    if both.any():
        log_f0 = (1 - frac[both]) * np.log2(f_lo[both]) + frac[both] * np.log2(f_hi[both])
        out_f0[both] = np.exp2(log_f0)
    out_voiced = v_near | both
    return out_f0.astype(np.float32), out_voiced


class PitchTargets:
    """pYIN tracks of a dataset's files at the model's frames, read from a ``TargetCache``.

    ``prepare(paths)`` computes the missing ones (the slow part, once per file and setting);
    ``crop(path, start, samples)`` then reads a file's track (kept in memory per process) and cuts
    out the crop's frames.
    """

    def __init__(self, cache_dir: str | os.PathLike | None, sample_rate: int, hop_length: int):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.sample_rate, self.hop_length = int(sample_rate), int(hop_length)
        self._tracks: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    def prepare(self, paths: Sequence[str | os.PathLike], workers: int = 1,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Track every file not yet in the cache; returns how many could not be read (each is logged
        once as a warning; the dataset skips them as it skips any unreadable file)."""
        from ..training.pitch_fit import compute_targets

        failed = []
        compute_targets(paths, self.sample_rate, self.hop_length, self.cache_dir, workers, progress,
                        on_error=lambda line: (failed.append(line), logger.warning("no pitch targets: %s", line)))
        return len(failed)

    def track(self, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        from ..training.pitch_fit import compute_targets

        path = Path(path)
        if path not in self._tracks:  # a cache hit, or (not prepared, or changed since) tracked now and cached
            f0, voiced = compute_targets([path], self.sample_rate, self.hop_length, self.cache_dir)[0]
            self._tracks[path] = (np.asarray(f0, np.float32), np.asarray(voiced, bool))
        return self._tracks[path]

    def crop(self, path: str | os.PathLike, start: float, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Targets of the ``ceil(samples / hop)`` frames of a crop of ``samples`` samples starting at
        sample ``start`` (the model's rate) of ``path``."""
        if samples < 1:
            raise SimVQError(f"{path}: a crop needs at least one sample")
        f0, voiced = self.track(path)
        return crop_track(f0, voiced, start, math.ceil(samples / self.hop_length), self.hop_length)
