"""Objective quality metrics for evaluating reconstructions.

Every function takes a reference and an estimate as 1-D signals (numpy arrays, lists or
CPU tensors; ``[1, N]`` is squeezed) at ``sample_rate`` Hz, truncates both to the shorter
length, and returns a Python float. A metric that is undefined for the input (silent
reference, too short for PESQ, no speech found) is ``nan``, never an exception, so that
one odd file does not stop an evaluation: aggregate with ``numpy.nanmean``.

| key            | better | range          | definition                                             |
|----------------|--------|----------------|--------------------------------------------------------|
| ``pesq_wb``    | higher | 1.04 .. 4.64   | ITU-T P.862.2 wide-band MOS-LQO at 16 kHz (``pesq``)   |
| ``stoi``       | higher | 0 .. 1         | short-time objective intelligibility (``pystoi``)      |
| ``mel_distance`` | lower | >= 0          | mean log10-mel L1 of :class:`MultiScaleMelLoss`        |
| ``si_sdr``     | higher | dB             | scale-invariant signal-to-distortion ratio             |

``compute_metrics(..., pitch=True)`` adds the pitch metrics of :mod:`simvq_audio.pitch`.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import soxr
import torch

from . import pitch as pitch_tracking

METRIC_NAMES = ("pesq_wb", "stoi", "mel_distance", "si_sdr")
PESQ_RATE = 16000


def _as_1d(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 1:
        arr = arr.squeeze()
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D signal (or [1, N]), got shape {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: signal contains NaN or Inf")
    return arr


def _pair(ref, est) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 1-D arrays truncated to the shorter length (at least one sample)."""
    ref, est = _as_1d(ref, "ref"), _as_1d(est, "est")
    n = min(len(ref), len(est))
    if n == 0:
        raise ValueError("ref and est must both have at least one sample")
    return ref[:n], est[:n]


def si_sdr(ref, est, eps: float = 1e-12) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019), after removing each signal's mean.

    ``target = <est, ref> / ||ref||^2 * ref``; ``si_sdr = 10 log10(||target||^2 / ||est - target||^2)``.
    Identical signals give a very large value (about 100 dB or more, limited by ``eps``);
    ``nan`` if either signal is constant (zero energy: the ratio is 0 / 0).
    """
    ref, est = _pair(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy <= 0.0 or not np.any(est):
        return math.nan
    target = (np.dot(est, ref) / ref_energy) * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


@functools.lru_cache(maxsize=4)
def _mel_loss(sample_rate: int):
    # Building the filter banks (librosa) costs more than applying them; reuse per rate.
    from .losses.spectral import MultiScaleMelLoss

    return MultiScaleMelLoss(sample_rate)


def mel_distance(ref, est, sample_rate: int) -> float:
    """Mean over 7 scales of the L1 distance between log10 mel spectrograms.

    Exactly ``MultiScaleMelLoss(sample_rate)(est, ref)`` with its defaults: n_fft
    32 .. 2048 (hop n_fft / 4, Hann window) with 5 .. 320 Slaney mel bands, magnitude
    spectra, ``log10(clamp(mel, 1e-5))``. Units: log10 magnitude (0 = identical); the
    value depends on the signal's level, as for the training loss.
    """
    ref, est = _pair(ref, est)
    loss = _mel_loss(int(sample_rate))
    with torch.no_grad():
        value = loss(torch.from_numpy(est).float()[None, None], torch.from_numpy(ref).float()[None, None])
    return float(value)


def pesq_wb(ref, est, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.04 .. 4.64) at 16 kHz.

    Both signals are resampled to 16 kHz with soxr (HQ) when ``sample_rate`` differs.
    ``nan`` when PESQ is undefined: either signal silent, shorter than 0.25 s at
    16 kHz, no utterance detected, or any other error from the ``pesq`` package.
    """
    from pesq import PesqError, pesq

    ref, est = _pair(ref, est)
    if sample_rate != PESQ_RATE:
        ref = soxr.resample(ref, sample_rate, PESQ_RATE, quality="HQ")
        est = soxr.resample(est, sample_rate, PESQ_RATE, quality="HQ")
    # pesq divides by the peak, so silence would produce NaNs inside the C code.
    if not (np.any(ref) and np.any(est)):
        return math.nan
    try:
        return float(pesq(PESQ_RATE, ref, est, "wb"))
    except (PesqError, ValueError):
        return math.nan


def stoi(ref, est, sample_rate: int) -> float:
    """Short-time objective intelligibility (Taal et al., 2011), 0 .. 1.

    Computed by ``pystoi`` at ``sample_rate`` (it resamples to 10 kHz itself and drops
    frames 40 dB below the loudest reference frame). ``nan`` when the reference is
    silent or too short to leave enough frames (pystoi would return 0 or 1e-5 and warn).
    """
    from pystoi import stoi as _stoi

    ref, est = _pair(ref, est)
    if not np.any(ref):
        return math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(ref, est, sample_rate, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return math.nan
    return value


def compute_metrics(ref, est, sample_rate: int, pitch: bool = False,
                    ref_f0: np.ndarray | None = None) -> dict[str, float]:
    """All metrics at once: ``{"pesq_wb", "stoi", "mel_distance", "si_sdr"}`` -> float (maybe ``nan``).

    With ``pitch``, also ``simvq_audio.pitch.PITCH_METRIC_NAMES`` (voicing F1, RMS pitch error in
    cents, gross pitch error) from pYIN tracks at 10 ms; ``ref_f0`` is the reference's
    ``pitch.track_pitch(ref, sample_rate)`` when already computed (pYIN is the slow part).
    """
    ref, est = _pair(ref, est)
    scores = {
        "pesq_wb": pesq_wb(ref, est, sample_rate),
        "stoi": stoi(ref, est, sample_rate),
        "mel_distance": mel_distance(ref, est, sample_rate),
        "si_sdr": si_sdr(ref, est),
    }
    if pitch:
        if ref_f0 is None:
            ref_f0 = pitch_tracking.track_pitch(ref, sample_rate)
        scores.update(pitch_tracking.pitch_metrics(ref_f0, pitch_tracking.track_pitch(est, sample_rate)))
    return scores
