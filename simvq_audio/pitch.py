"""Pitch (F0) tracks with pYIN and the pitch metrics of the evaluation.

An F0 track is a 1-D float array ``[T]`` in Hz, ``nan`` where the frame is unvoiced. It comes
from ``librosa.pyin`` (Mauch & Dixon, 2014) with ``center=True``: frame ``t`` is centred on
sample ``t * hop_length`` and a signal of ``N`` samples has ``1 + N // hop_length`` frames.

Search range ``PITCH_FMIN`` .. ``PITCH_FMAX`` = 50 .. 600 Hz: 50 Hz is below the lowest
male speaking voices (vocal fry aside), 600 Hz above high female and child speech; a wider
range only gives pYIN more room for octave errors and costs time. The analysis frame is the
power of two of at least 64 ms (1024 samples at 16 kHz, 2048 at 24 kHz), which holds
three periods of 50 Hz.

| key                  | better | range     | definition                                                |
|----------------------|--------|-----------|-----------------------------------------------------------|
| ``voicing_f1``       | higher | 0 .. 1    | F1 of the estimate's voiced frames against the reference's |
| ``pitch_rmse_cents`` | lower  | >= 0      | RMS of ``1200 log2(f0_est / f0_ref)`` over frames voiced in both |
| ``gross_pitch_error``| lower  | 0 .. 1    | share of frames voiced in both with an error above 100 cents |

Undefined values are ``nan``: the F1 when neither track has a voiced frame, the other two
when no frame is voiced in both.
"""

from __future__ import annotations

import math

import numpy as np

PITCH_FMIN = 50.0  # Hz
PITCH_FMAX = 600.0  # Hz
FRAMES_PER_SECOND = 100  # the evaluation's 10 ms hop
GROSS_ERROR_CENTS = 100.0  # one semitone
PITCH_METRIC_NAMES = ("voicing_f1", "pitch_rmse_cents", "gross_pitch_error")
_MIN_FRAME_SECONDS = 0.064


def frame_length_for(sample_rate: int) -> int:
    """pYIN analysis frame in samples: the smallest power of two of at least 64 ms (1024 at 16 kHz)."""
    return 1 << math.ceil(math.log2(_MIN_FRAME_SECONDS * sample_rate))


def track_pitch(wav, sample_rate: int, hop_length: int | None = None, fmin: float = PITCH_FMIN,
                fmax: float = PITCH_FMAX, frame_length: int | None = None) -> np.ndarray:
    """F0 in Hz per frame, ``[1 + N // hop_length]``, ``nan`` where unvoiced.

    Args:
        wav: mono signal ``[N]`` (or ``[1, N]``) at ``sample_rate`` Hz.
        hop_length: samples between frames; default ``sample_rate // 100`` (10 ms).
        fmin, fmax: pYIN search range in Hz (``fmax`` below ``sample_rate / 2``).
        frame_length: analysis frame in samples; default ``frame_length_for(sample_rate)``.

    Frame ``t`` is centred on sample ``t * hop_length`` (the signal is zero-padded by half a
    frame at both ends). A silent signal gives all ``nan``.
    """
    import librosa

    x = np.asarray(wav, dtype=np.float32)
    if x.ndim > 1:
        x = x.squeeze()
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"expected a non-empty 1-D signal (or [1, N]), got shape {np.shape(wav)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("signal contains NaN or Inf")
    hop = int(hop_length or sample_rate // FRAMES_PER_SECOND)
    if not 0 < fmin < fmax < sample_rate / 2:
        raise ValueError(f"need 0 < fmin < fmax < sample_rate / 2, got {fmin}, {fmax} at {sample_rate} Hz")
    n_frames = 1 + len(x) // hop
    if not np.any(x):
        return np.full(n_frames, np.nan)  # pYIN's YIN is 0 / 0 on silence
    f0, voiced, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=sample_rate, hop_length=hop,
                                 frame_length=int(frame_length or frame_length_for(sample_rate)), center=True)
    f0 = np.where(voiced, f0, np.nan).astype(np.float64)
    return f0[:n_frames]


def _pair(ref_f0, est_f0) -> tuple[np.ndarray, np.ndarray]:
    """Both tracks as float64 ``[T]``, truncated to the shorter one."""
    ref, est = np.asarray(ref_f0, dtype=np.float64).ravel(), np.asarray(est_f0, dtype=np.float64).ravel()
    n = min(len(ref), len(est))
    return ref[:n], est[:n]


def _voiced(f0: np.ndarray) -> np.ndarray:
    return np.isfinite(f0) & (f0 > 0)


def voicing_f1(ref_f0, est_f0) -> float:
    """F1 of the estimate's voiced/unvoiced decisions, the reference's voiced frames being positive.

    ``2 TP / (2 TP + FP + FN)``, 0 .. 1; ``nan`` when neither track has a voiced frame.
    """
    ref, est = _pair(ref_f0, est_f0)
    r, e = _voiced(ref), _voiced(est)
    tp, fp, fn = int(np.sum(r & e)), int(np.sum(~r & e)), int(np.sum(r & ~e))
    return math.nan if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def pitch_error_cents(ref_f0, est_f0) -> np.ndarray:
    """``1200 log2(f0_est / f0_ref)`` in cents on the frames voiced in both tracks (``[n]``, maybe empty)."""
    ref, est = _pair(ref_f0, est_f0)
    both = _voiced(ref) & _voiced(est)
    return 1200.0 * np.log2(est[both] / ref[both])


def pitch_rmse_cents(ref_f0, est_f0) -> float:
    """RMS pitch error in cents (100 = one semitone) over frames voiced in both; ``nan`` if there are none."""
    err = pitch_error_cents(ref_f0, est_f0)
    return math.nan if len(err) == 0 else float(np.sqrt(np.mean(err ** 2)))


def gross_pitch_error(ref_f0, est_f0, threshold_cents: float = GROSS_ERROR_CENTS) -> float:
    """Share (0 .. 1) of the frames voiced in both whose error exceeds ``threshold_cents``; ``nan`` if none.

    The default threshold is one semitone (100 cents), stricter than the 20 % (~316 cents)
    of the classic GPE: a codec that moves the pitch by a semitone is already wrong.
    """
    err = pitch_error_cents(ref_f0, est_f0)
    return math.nan if len(err) == 0 else float(np.mean(np.abs(err) > threshold_cents))


def pitch_metrics(ref_f0, est_f0) -> dict[str, float]:
    """``{"voicing_f1", "pitch_rmse_cents", "gross_pitch_error"}`` of two F0 tracks (Hz, ``nan`` unvoiced)."""
    return {
        "voicing_f1": voicing_f1(ref_f0, est_f0),
        "pitch_rmse_cents": pitch_rmse_cents(ref_f0, est_f0),
        "gross_pitch_error": gross_pitch_error(ref_f0, est_f0),
    }
