"""Vocos-style decoder: ConvNeXt blocks at the frame rate, then an inverse STFT.

Latents ``[B, D, T]`` stay at the frame rate through the whole network (no upsampling
convolutions, which is why it is cheap); a linear head predicts, per frame, the log
magnitude and the phase of an ``n_fft``-point spectrum, and an inverse STFT with the
codec's hop turns them into ``T * hop`` samples. The inverse STFT uses "same" padding
(as Vocos): frames are centred on ``hop / 2 + t * hop``, so ``T`` frames give exactly
``T * hop`` samples and the codec's ``ceil(N / hop)`` framing is kept.

A source-filter variant (``ISTFTHead(source=True)``, the codec's ``excitation_harmonics`` with this
decoder) adds a per-bin gain times the STFT of a pulse train at the pitch, and ``phase="noise"``
makes the rest of the spectrum shaped noise: harmonic plus noise, as a vocoder built for pitch.

Padded batches: every layer is per-frame except the depthwise convolutions and the
overlap-add. Frames past an item's length are zeroed before each convolution and in the
spectrum, and the overlap-add's window envelope is computed per item, so an item decodes
exactly as it would alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .conv import frame_mask

DECODER_KINDS = ("seanet", "vocos")
PHASES = ("learned", "noise")
SOURCE_INITIAL_LOG_GAIN = -4.6  # gain ~0.01: the unit harmonics at about the level of speech's


@dataclass(frozen=True)
class DecoderConfig:
    """Which decoder a codec uses.

    ``kind``: ``"seanet"`` (the mirror of the encoder, configured by ``CodecConfig.seanet``)
    or ``"vocos"`` (configured by the fields below). ``dim``: ConvNeXt channels;
    ``intermediate_dim``: hidden width of each block's MLP; ``n_layers``: blocks;
    ``kernel_size``: depthwise convolution width in frames; ``n_fft``: inverse-STFT size in
    samples (a multiple of 2; ``n_fft - hop`` must be even); ``max_log_magnitude``: the
    head's log magnitude is clipped here (as Vocos, exp(100) overflows in float32 otherwise);
    ``phase``: ``"learned"`` (the head predicts each bin's phase, as Vocos) or ``"noise"`` (a fixed
    pseudo-random phase per bin and frame, ``noise_phase``: the head's free spectrum is then shaped
    noise, and only a source-filter head's source can be periodic); ``envelope_bands``: 0 (the head
    predicts one log magnitude per bin) or N >= 2 (it predicts N, at equally spaced frequencies from 0 to
    Nyquist, and each bin's log magnitude is their linear interpolation: a spectral envelope too coarse
    to draw harmonics, so with ``phase="noise"`` and a source the free spectrum cannot carry a pitch).
    """

    kind: str = "seanet"
    dim: int = 384
    intermediate_dim: int = 1152
    n_layers: int = 8
    kernel_size: int = 7
    n_fft: int = 800
    max_log_magnitude: float = 10.0
    phase: str = "learned"
    envelope_bands: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DECODER_KINDS:
            raise ValueError(f"decoder kind must be one of {DECODER_KINDS}, got {self.kind!r}")
        if self.phase not in PHASES:
            raise ValueError(f"decoder phase must be one of {PHASES}, got {self.phase!r}")
        if min(self.dim, self.intermediate_dim, self.n_layers, self.n_fft) < 1:
            raise ValueError("decoder dim, intermediate_dim, n_layers and n_fft must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"decoder kernel_size must be odd, got {self.kernel_size}")
        if self.n_fft % 2:
            raise ValueError(f"decoder n_fft must be even, got {self.n_fft}")
        if self.envelope_bands == 1 or not 0 <= self.envelope_bands <= self.n_fft // 2 + 1:
            raise ValueError(f"decoder envelope_bands must be 0 or 2 to n_fft // 2 + 1 ({self.n_fft // 2 + 1}), "
                             f"got {self.envelope_bands}")


_HASH_MODULUS = 1048573  # a prime below 2^20: squares stay far inside int64


def noise_phase(bins: int, frames: torch.Tensor | int, device: torch.device | None = None,
                start: torch.Tensor | None = None) -> torch.Tensor:
    """A fixed pseudo-random phase in ``[0, 2 pi)`` for each bin ``k`` and frame ``t``: ``[bins, frames]`` float32,
    or ``[B, bins, frames]`` for frames ``start[b] + t`` with ``start [B]`` (int64: a window's first frame in a
    longer item, so the window's noise is the item's).

    An integer hash of ``(k, t)`` (products and remainders in int64), so torch and ONNX Runtime give the
    same bits on any machine, a frame's phase depends only on its index in the item, and neighbouring
    frames and bins are uncorrelated: a spectrum with this phase and a slowly varying magnitude is
    noise, never a tone and never a buzz at the frame rate.
    """
    m = _HASH_MODULUS
    k = torch.arange(bins, device=device)[:, None]
    t = torch.arange(frames, device=device)[None, :]
    if start is not None:
        k, t = k[None], t[None] + start.to(t.device, torch.long).reshape(-1, 1, 1)
    u = (k * 7919 + t * 104729 + 12345) % m
    v = (u * u + k) % m
    w = (v * 48271 + t) % m
    return w.float() * (2 * math.pi / m)


def envelope_basis(bins: int, bands: int) -> torch.Tensor:
    """``[bins, bands]`` linear interpolation from ``bands`` nodes equally spaced over the bins (the first
    at bin 0, the last at the last bin) to every bin: each row has at most two non-zero weights summing to 1."""
    position = torch.arange(bins, dtype=torch.float64) * (bands - 1) / (bins - 1)  # in node units
    nodes = torch.arange(bands, dtype=torch.float64)
    return (1 - (position[:, None] - nodes[None, :]).abs()).clamp(min=0).float()


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm, pointwise MLP, layer scale, residual. ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.dwconv(_masked(x, mask)).transpose(1, 2)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ISTFTHead(nn.Module):
    """Per-frame features ``[B, C, T]`` -> audio ``[B, 1, T * hop]`` through an inverse STFT.

    The linear layer predicts ``n_fft // 2 + 1`` log magnitudes and as many phases; the
    spectrum is ``exp(log_mag) * (cos p + i sin p)``.

    ``source=True`` (a source-filter head): the layer also predicts a log gain per bin, and the
    spectrum adds ``exp(log_gain)`` times the STFT of a harmonic source signal (a pulse train at
    the pitch, ``modules/excitation.harmonic_sum``; the STFT that ``istft`` inverts, so a constant
    gain scales the source). The source carries the phase of every harmonic, so the pitch of the
    voiced part is the source's exactly and the layer only shapes its spectral envelope; the free
    magnitude and phase keep the noise and whatever the source lacks.

    ``phase="noise"``: the layer predicts no phases; the free spectrum takes ``noise_phase`` (shaped
    noise). Trained with a mel loss alone, a learned phase that varies slowly from frame to frame
    overlaps into a buzz at the frame rate (80 Hz for the built-in model), heard and tracked as a
    second, wrong pitch; with a source-filter head the noise phase leaves the periodicity to the source.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, max_log_magnitude: float, source: bool = False,
                 phase: str = "learned", envelope_bands: int = 0):
        super().__init__()
        if n_fft < hop_length or (n_fft - hop_length) % 2:
            raise ValueError(f"n_fft ({n_fft}) must be >= hop ({hop_length}) with n_fft - hop even")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.n_fft, self.hop_length, self.max_log_magnitude = n_fft, hop_length, max_log_magnitude
        self.source, self.learned_phase = source, phase == "learned"
        bins = n_fft // 2 + 1
        self.magnitudes = envelope_bands or bins  # log magnitudes the layer predicts
        self.gain_offset = self.magnitudes + (bins if self.learned_phase else 0)  # the source's log gains start here
        self.out = nn.Linear(dim, self.gain_offset + (bins if source else 0))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("envelope", envelope_basis(bins, envelope_bands) if envelope_bands else None,
                             persistent=False)

    def polar(self, x: torch.Tensor, start_frame: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Features ``[B, C, T]`` -> the clipped log magnitude, the phase and (``source=True``, else ``None``)
        the clipped log gain of the source, each ``[B, n_fft // 2 + 1, T]`` float32. ``start_frame [B]``: where
        each item starts in a longer one (the noise phase's frame index; default 0)."""
        h = self.out(x.transpose(1, 2)).transpose(1, 2).float()  # [B, (1 to 3) * bins, T]
        bins, m = self.n_fft // 2 + 1, self.magnitudes
        log_mag = h[:, :m]
        if self.envelope is not None:  # band nodes -> every bin
            log_mag = torch.matmul(self.envelope, log_mag)
        if self.learned_phase:
            phase = h[:, m:m + bins]
        elif start_frame is None:  # the same for every item: [1, bins, T]
            phase = noise_phase(bins, h.shape[-1], h.device)[None]
        else:
            phase = noise_phase(bins, h.shape[-1], h.device, start_frame)
        log_gain = h[:, self.gain_offset:].clamp(max=self.max_log_magnitude) if self.source else None
        return log_mag.clamp(max=self.max_log_magnitude), phase, log_gain

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                source: torch.Tensor | None = None, start_frame: torch.Tensor | None = None) -> torch.Tensor:
        if (source is None) == self.source:
            raise ValueError("this head needs a source signal [B, 1, T * hop]" if self.source
                             else "this head takes no source signal")
        log_mag, phase, log_gain = self.polar(x, start_frame)
        mag = torch.exp(log_mag)
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        if self.source:
            spec = spec + torch.exp(log_gain) * self.stft(source[:, 0], x.shape[-1])
        return self.istft(spec, mask).unsqueeze(1)

    def stft(self, signal: torch.Tensor, frames: int) -> torch.Tensor:
        """``[B, frames * hop]`` -> ``[B, n_fft // 2 + 1, frames]`` complex, frames centred as ``istft``'s
        (zero outside the signal), the inverse of ``istft``: at gain 1 the head passes the source through."""
        n, hop = self.n_fft, self.hop_length
        if signal.shape[-1] != frames * hop:
            raise ValueError(f"the source must have {frames} x {hop} samples, got {signal.shape[-1]}")
        pad = (n - hop) // 2
        cut = F.pad(signal.float(), (pad, pad)).unfold(-1, n, hop)  # [B, frames, n_fft]
        return torch.fft.rfft(cut * self.window, dim=-1).transpose(1, 2)

    def istft(self, spec: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, n_fft // 2 + 1, T]`` complex -> ``[B, T * hop]`` by windowed overlap-add ("same" padding)."""
        b, _, t = spec.shape
        n, hop = self.n_fft, self.hop_length
        frames = torch.fft.irfft(spec, n=n, dim=1) * self.window[None, :, None]  # [B, n_fft, T]
        weights = self.window.square()[None, :, None].expand(b, n, t)
        if mask is not None:
            frames, weights = frames * mask, weights * mask
        total = (t - 1) * hop + n
        fold = dict(output_size=(1, total), kernel_size=(1, n), stride=(1, hop))
        audio = F.fold(frames, **fold).reshape(b, total)
        envelope = F.fold(weights.contiguous(), **fold).reshape(b, total)
        pad = (n - hop) // 2
        audio, envelope = audio[:, pad:pad + t * hop], envelope[:, pad:pad + t * hop]
        audio = torch.where(envelope > 1e-8, audio / envelope.clamp(min=1e-8), torch.zeros_like(audio))
        if mask is not None:  # samples past an item's last frame are padding: zero, as documented
            audio = audio * mask[:, 0].repeat_interleave(hop, dim=-1)
        return audio


class VocosDecoder(nn.Module):
    """Latents ``[B, latent_dim, T]`` -> audio ``[B, 1, T * hop_length]``.

    ``forward(z, lengths)``: ``lengths [B]`` are valid frames per item of a padded batch
    (each item then decodes exactly as it would alone; samples past ``lengths * hop``
    are zero).
    """

    def __init__(self, latent_dim: int, hop_length: int, cfg: DecoderConfig, source: bool = False):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Conv1d(latent_dim, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, 1.0 / cfg.n_layers)
            for _ in range(cfg.n_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, hop_length, cfg.max_log_magnitude, source, cfg.phase,
                              cfg.envelope_bands)
        self.apply(self._init)
        if source:  # the source starts at a speech-like level (gain 0.01 per unit harmonic), not at gain 1
            nn.init.constant_(self.head.out.bias[self.head.gain_offset:], SOURCE_INITIAL_LOG_GAIN)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def features(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``[B, latent_dim, T]`` -> the head's input ``[B, dim, T]`` (``mask [B, 1, T]`` zeroes padding)."""
        x = self.embed(_masked(z, mask))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor | None = None,
                source: torch.Tensor | None = None, start_frame: torch.Tensor | None = None) -> torch.Tensor:
        """``source [B, 1, T * hop]``: the harmonic source signal, for a decoder built with ``source=True``;
        ``start_frame [B]``: where each item starts in a longer one (for ``phase="noise"``)."""
        mask = frame_mask(lengths, z.shape[-1], z.device)
        return self.head(self.features(z, mask), mask, source, start_frame)
