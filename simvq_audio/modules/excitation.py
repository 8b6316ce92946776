"""Harmonic excitation (the "source" of a source-filter decoder, as in NSF / NSF-HiFiGAN).

A decoder that must invent periodicity from a latent learns harmonics slowly, and with a
mel loss alone not at all; given sines at the pitch and its multiples, it only has to
shape them. ``harmonic_excitation`` turns a frame-rate F0 track into ``K`` sample-rate
channels ``v(n) * sin(k * phi(n))``, ``phi`` the running phase of the F0, each zero
where ``k * F0`` is above Nyquist. It is deterministic: the same F0 track always gives
the same signal, so decoding stays reproducible (no noise channel; the decoder makes its
own noise for unvoiced sounds).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .conv import length_mask

EXCITATION_AMPLITUDE = 1.0  # unit sines: the decoder learns to use them 10x faster than with NSF's 0.1


def hold_last_frame(x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """``x [B, ..., T]`` with each item's frames past ``frame_lengths [B]`` replaced by its last valid one.

    Linear interpolation to the sample rate then sees, at the end of an item in a padded batch,
    the same edge as it does for the item alone.
    """
    t = x.shape[-1]
    last = (frame_lengths.to(x.device).long() - 1).clamp(min=0).view(-1, *([1] * (x.dim() - 1)))
    idx = torch.minimum(torch.arange(t, device=x.device).view(*([1] * (x.dim() - 1)), t), last)
    return x.gather(-1, idx.expand(x.shape))


def _upsampled(f0: torch.Tensor, voiced: torch.Tensor, hop_length: int,
               frame_lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-rate F0 and voicing ``[B, T]`` -> sample-rate F0 (zero where unvoiced) and voicing ``[B, T * hop]``."""
    if f0.dim() != 2 or f0.shape != voiced.shape:
        raise ValueError(f"f0 and voiced must both be [B, T], got {tuple(f0.shape)} and {tuple(voiced.shape)}")
    f0 = f0.float() * (voiced > 0).float()
    amp = voiced.float().clamp(0, 1)
    if frame_lengths is not None:
        f0, amp = hold_last_frame(f0, frame_lengths), hold_last_frame(amp, frame_lengths)
    up = F.interpolate(torch.stack([f0, amp], 1), scale_factor=hop_length, mode="linear", align_corners=False)
    return up[:, 0], up[:, 1]


def _running_phase(f0_up: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Sample-rate F0 ``[B, N]`` -> its phase after each sample, unwrapped, float64."""
    return torch.cumsum(f0_up.double() * (2 * math.pi / sample_rate), -1)


def voicing_amplitude(prob: torch.Tensor, soft: bool) -> torch.Tensor:
    """The sines' amplitude per frame from a pitch head's voicing probability: the probability itself
    (``soft``, ``CodecConfig.soft_voicing``) or 1 where it is above 0.5 and 0 elsewhere."""
    return prob if soft else (prob > 0.5).float()


def _pitch_phase(f0: torch.Tensor, voiced: torch.Tensor, hop_length: int, sample_rate: int,
                 frame_lengths: torch.Tensor | None,
                 phase_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame-rate F0 and voicing ``[B, T]`` -> sample-rate F0, voicing and the F0's running phase ``[B, T * hop]``
    (plus ``phase_offset [B]`` radians, when given: where a window of a longer signal starts)."""
    f0_up, amp_up = _upsampled(f0, voiced, hop_length, frame_lengths)
    # Phase in float64 and wrapped: an hour at 300 Hz is ~7e6 radians, beyond float32's resolution.
    # The wrapped phase is in [0, 2 pi): k times it stays within float32's resolution (3e-5 rad at k = 48).
    phase = _running_phase(f0_up, sample_rate)
    if phase_offset is not None:
        phase = phase + phase_offset.to(phase.device, torch.float64).reshape(-1, 1)
    return f0_up, amp_up, torch.remainder(phase, 2 * math.pi).float()


def accumulated_phase(f0: torch.Tensor, voiced: torch.Tensor, hop_length: int, sample_rate: int,
                      positions: list[int]) -> torch.Tensor:
    """The F0's phase accumulated before each sample in ``positions`` (0 at sample 0), unwrapped, float64
    ``[B, len(positions)]``: with ``phase_offset = Phi - accumulated_phase(..., [a])``, a window's harmonics
    at sample ``a`` continue a longer signal's whose running phase there is ``Phi``."""
    f0_up, _ = _upsampled(f0, voiced, hop_length, None)
    total = F.pad(_running_phase(f0_up, sample_rate), (1, 0))  # total[:, j]: the sum over samples before j
    return total[:, list(positions)]


def _past_items(out: torch.Tensor, frame_lengths: torch.Tensor | None, hop_length: int) -> torch.Tensor:
    if frame_lengths is None:
        return out
    samples = length_mask(frame_lengths * hop_length, out.shape[-1], out.device)
    return out * samples[:, None, :].float()


def harmonic_excitation(f0: torch.Tensor, voiced: torch.Tensor, hop_length: int, sample_rate: int,
                        n_harmonics: int, frame_lengths: torch.Tensor | None = None,
                        phase_offset: torch.Tensor | None = None) -> torch.Tensor:
    """Frame-rate F0 ``[B, T]`` (Hz) and voicing ``[B, T]`` (0..1) -> excitation ``[B, K, T * hop]``.

    Frame ``t`` is centred on sample ``t * hop + hop / 2``; F0 and voicing are linearly
    interpolated between frame centres. ``frame_lengths [B]`` (valid frames per item of a
    padded batch) zero the excitation past each item, so items match their single decode. ``phase_offset [B]``
    (radians) starts each item's running phase there instead of at 0 (``accumulated_phase``).
    """
    f0_up, amp_up, phase = _pitch_phase(f0, voiced, hop_length, sample_rate, frame_lengths, phase_offset)
    k = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=torch.float32)[None, :, None]
    sines = torch.sin(phase[:, None, :] * k)
    below_nyquist = (f0_up[:, None, :] * k < sample_rate / 2).float()
    out = sines * below_nyquist * amp_up[:, None, :] * EXCITATION_AMPLITUDE
    return _past_items(out, frame_lengths, hop_length)


def harmonic_sum(f0: torch.Tensor, voiced: torch.Tensor, hop_length: int, sample_rate: int,
                 n_harmonics: int, frame_lengths: torch.Tensor | None = None,
                 phase_offset: torch.Tensor | None = None) -> torch.Tensor:
    """The sum over ``k`` of ``harmonic_excitation``'s channels, ``[B, 1, T * hop]``, in closed form.

    A band-limited pulse train: ``sum_{k=1..K} sin(k psi) = sin(K psi / 2) sin((K + 1) psi / 2) / sin(psi / 2)``
    with ``K`` per sample the number of harmonics below Nyquist (at most ``n_harmonics``): three sines
    per sample where the channels take ``n_harmonics``. ``psi`` is the phase wrapped to ``[-pi, pi)``,
    so the denominator is small only near ``psi = 0``, where the sum is ``psi K (K + 1) / 2`` to
    first order (used below ``|psi| < 1e-4``).
    """
    f0_up, amp_up, phase = _pitch_phase(f0, voiced, hop_length, sample_rate, frame_lengths, phase_offset)
    # Harmonics k with k * F0 < Nyquist: ceil(nyquist / F0) - 1 of them, at most n_harmonics.
    count = torch.ceil((sample_rate / 2) / f0_up.clamp(min=1.0)) - 1.0
    count = count.clamp(min=0.0, max=float(n_harmonics))
    psi = torch.remainder(phase + math.pi, 2 * math.pi) - math.pi
    half = 0.5 * psi
    den = torch.sin(half)
    small = psi.abs() < 1e-4
    ratio = torch.sin(count * half) * torch.sin((count + 1.0) * half) / torch.where(small, torch.ones_like(den), den)
    total = torch.where(small, psi * count * (count + 1.0) * 0.5, ratio)
    out = (total * amp_up * EXCITATION_AMPLITUDE)[:, None, :]
    return _past_items(out, frame_lengths, hop_length)
