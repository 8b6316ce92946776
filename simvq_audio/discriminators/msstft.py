"""Multi-scale STFT discriminator (EnCodec style).

Each sub-discriminator looks at one complex STFT (real and imaginary parts as two
channels, so phase errors are visible, unlike a magnitude discriminator) and runs 2-d
convolutions laid out as ``[B, C, frames, freq]``: kernels ``(3, 9)``, dilations
growing along time, stride 2 along frequency.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from .layers import conv_stack, run_members
from .mpd import _check_wav


def _same_padding(kernel_size: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return ((kernel_size[0] - 1) * dilation[0] // 2, (kernel_size[1] - 1) * dilation[1] // 2)


def _wn_conv2d(in_ch: int, out_ch: int, kernel_size: tuple[int, int], **kwargs) -> nn.Module:
    padding = _same_padding(kernel_size, kwargs.get("dilation", (1, 1)))
    return parametrizations.weight_norm(nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, **kwargs))


class STFTDiscriminator(nn.Module):
    """One resolution of the MS-STFT discriminator.

    Input ``[B, 1, N]`` (any ``N >= 1``; shorter than ``n_fft`` is zero-padded to one
    frame). Output ``(logits [B, 1, frames, F'], fmaps)``, with ``len(dilations) + 2``
    feature maps (activations after each conv), all ``[B, C_l, frames, F_l]``.
    The STFT is computed in float32 (``torch.stft`` does not support bf16), scaled by
    the window's energy so its level does not depend on ``win_length``.
    """

    def __init__(
        self,
        filters: int = 32,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int = 1024,
        max_filters: int = 1024,
        filters_scale: int = 1,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: tuple[int, ...] = (1, 2, 4),
        stride: tuple[int, int] = (1, 2),
        negative_slope: float = 0.2,
    ):
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
        if hop_length < 1:
            raise ValueError(f"hop_length must be >= 1, got {hop_length}")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.negative_slope = negative_slope
        window = torch.hann_window(win_length)
        self.register_buffer("window", window / window.pow(2).sum().sqrt(), persistent=False)

        convs = [_wn_conv2d(2, filters, kernel_size)]
        in_ch = filters
        for i, dilation in enumerate(dilations):
            out_ch = min(filters_scale ** (i + 1) * filters, max_filters)
            convs.append(_wn_conv2d(in_ch, out_ch, kernel_size, stride=stride, dilation=(dilation, 1)))
            in_ch = out_ch
        out_ch = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        square = (kernel_size[0], kernel_size[0])
        convs.append(_wn_conv2d(in_ch, out_ch, square))
        self.convs = nn.ModuleList(convs)
        self.conv_post = _wn_conv2d(out_ch, 1, square)

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` -> ``[B, 2, frames, n_fft // 2 + 1]`` (real, imaginary), float32."""
        x = wav.float().squeeze(1)
        if x.shape[-1] < self.n_fft:
            x = F.pad(x, (0, self.n_fft - x.shape[-1]))
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(
                x,
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window.float(),
                center=False,
                return_complex=True,
            )  # [B, freq, frames]
        return torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(wav, "STFTDiscriminator")
        x = self.spectrogram(wav)
        return conv_stack(self.convs, self.conv_post, x, self.negative_slope)


class MultiScaleSTFTDiscriminator(nn.Module):
    """One :class:`STFTDiscriminator` per ``(n_fft, hop_length, win_length)`` triple.

    ``forward(wav [B, 1, N]) -> (logits, fmaps)``: one logits tensor and one list of
    feature maps per resolution. ``filters`` is the width of every conv (EnCodec: 32);
    extra keyword arguments go to each :class:`STFTDiscriminator`.
    """

    def __init__(
        self,
        filters: int = 32,
        n_ffts: tuple[int, ...] = (1024, 2048, 512),
        hop_lengths: tuple[int, ...] = (256, 512, 128),
        win_lengths: tuple[int, ...] = (1024, 2048, 512),
        **kwargs,
    ):
        super().__init__()
        if not (len(n_ffts) == len(hop_lengths) == len(win_lengths)) or not n_ffts:
            raise ValueError(
                "n_ffts, hop_lengths and win_lengths must be non-empty and of equal length, got "
                f"{len(n_ffts)}, {len(hop_lengths)}, {len(win_lengths)}"
            )
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(filters, n_fft=n, hop_length=h, win_length=w, **kwargs)
            for n, h, w in zip(n_ffts, hop_lengths, win_lengths, strict=True)
        )

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        _check_wav(wav, "MultiScaleSTFTDiscriminator")
        return run_members(self.discriminators, wav)
