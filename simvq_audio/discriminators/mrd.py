"""Multi-resolution (magnitude-spectrogram) discriminator, as in UnivNet and Vocos.

Each sub-discriminator looks at one compressed magnitude spectrogram ``[B, 1, frames,
freq]`` and runs a few narrow 2-d convolutions with stride 2 along frequency. It is far
cheaper than the complex MS-STFT discriminator (one input channel, few filters, large
hops), which is why the CPU recipe uses it: it judges the harmonic fine structure that
the mel loss blurs, while the multi-period discriminator judges the waveform's periods.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from .layers import conv_stack, run_members
from .mpd import _check_wav

# Magnitudes are compressed as |X| ** 0.3 (as in speech enhancement): quiet harmonics
# stay visible to the discriminator without a log's blow-up at zero.
_COMPRESSION = 0.3


class ResolutionDiscriminator(nn.Module):
    """One resolution of the MRD.

    Input ``[B, 1, N]``; output ``(logits [B, 1, frames, F'], fmaps)`` with ``len(strides) + 1``
    feature maps, all ``[B, channels, frames, F_l]``. ``frames = N // hop_length + 1``.
    """

    def __init__(self, n_fft: int, hop_length: int, channels: int = 32,
                 strides: tuple[int, ...] = (1, 2, 2, 2), negative_slope: float = 0.1):
        super().__init__()
        if hop_length < 1 or n_fft < 2:
            raise ValueError(f"need n_fft >= 2 and hop_length >= 1, got {n_fft}, {hop_length}")
        self.n_fft, self.hop_length, self.negative_slope = n_fft, hop_length, negative_slope
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs, in_ch = [], 1
        for s in strides:
            conv = nn.Conv2d(in_ch, channels, (3, 9), stride=(1, s), padding=(1, 4))
            convs.append(parametrizations.weight_norm(conv))
            in_ch = channels
        convs.append(parametrizations.weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = parametrizations.weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` -> compressed magnitudes ``[B, 1, frames, n_fft // 2 + 1]`` (float32)."""
        x = wav.squeeze(1).float()
        pad_mode = "reflect" if x.shape[-1] > self.n_fft // 2 else "constant"
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=True,
                              pad_mode=pad_mode, return_complex=True)
            power = torch.view_as_real(spec).pow(2).sum(-1)
        return (power + 1e-9).pow(_COMPRESSION / 2).transpose(1, 2).unsqueeze(1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(wav, "ResolutionDiscriminator")
        x = self.spectrogram(wav).to(self.conv_post.weight.dtype)
        return conv_stack(self.convs, self.conv_post, x, self.negative_slope)


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`ResolutionDiscriminator` per ``(n_fft, hop_length)`` pair (samples).

    ``forward(wav [B, 1, N]) -> (logits, fmaps)``: one logits tensor and one list of
    feature maps per resolution.
    """

    def __init__(self, n_ffts: tuple[int, ...] = (2048, 1024, 512),
                 hop_lengths: tuple[int, ...] = (512, 256, 128), channels: int = 32):
        super().__init__()
        if not n_ffts or len(n_ffts) != len(hop_lengths):
            raise ValueError(f"n_ffts and hop_lengths must be non-empty and of equal length, got "
                             f"{list(n_ffts)} and {list(hop_lengths)}")
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(n, h, channels) for n, h in zip(n_ffts, hop_lengths, strict=True))

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        _check_wav(wav, "MultiResolutionDiscriminator")
        return run_members(self.discriminators, wav)
