"""Convolution wrappers that own their padding.

One wrapper decides how a 1-d convolution is padded so that the encoder and the
decoder keep exact frame/sample bookkeeping:

* causal: all padding on the left, so output frame ``t`` never sees input after ``t``;
* non-causal: padding split between both sides;
* in both cases, extra right padding so that the last window is full (any input
  length maps to ``ceil(N / stride)`` frames);
* the transposed convolution trims what the matching padding added (all on the right
  when causal, split otherwise).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

NORMS = ("none", "weight_norm")


def _apply_norm(module: nn.Module, norm: str) -> nn.Module:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    if norm == "weight_norm":
        return parametrizations.weight_norm(module)
    return module


def extra_padding_for_full_window(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding (samples) needed so the last convolution window is complete."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return max(0, ideal_length - length)


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "constant") -> torch.Tensor:
    """``F.pad`` on the last axis that also accepts reflect padding wider than the input."""
    left, right = paddings
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    length = x.shape[-1]
    max_pad = max(left, right)
    extra = 0
    if length <= max_pad:
        # Reflection needs more samples than the padding; zero-extend first, then trim.
        extra = max_pad - length + 1
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    end = padded.shape[-1] - extra
    return padded[..., :end]


def unpad1d(x: torch.Tensor, paddings: tuple[int, int]) -> torch.Tensor:
    left, right = paddings
    assert left >= 0 and right >= 0 and left + right <= x.shape[-1], (paddings, x.shape)
    return x[..., left : x.shape[-1] - right]


def length_mask(lengths: torch.Tensor, t: int, device: torch.device | None = None) -> torch.Tensor:
    """``[B, T]`` bool, true at positions ``< lengths[b]`` (frames or samples) of a padded batch."""
    device = lengths.device if device is None else device
    return torch.arange(t, device=device)[None, :] < lengths.to(device)[:, None]


def frame_mask(lengths: torch.Tensor | None, t: int, device: torch.device) -> torch.Tensor | None:
    """``[B, 1, T]`` float mask of valid frames (``None`` when ``lengths`` is ``None``)."""
    if lengths is None:
        return None
    return length_mask(lengths, t, device).unsqueeze(1).float()


class PaddedConv1d(nn.Module):
    """``Conv1d`` with padding owned by the module (EnCodec's ``StreamableConv1d``, without streaming
    state: it pads whole signals, so a window needs context on both sides to match the whole).

    Input ``[B, C_in, N]`` -> output ``[B, C_out, ceil(N / stride)]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: str = "none",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        self.conv = _apply_norm(
            nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias),
            norm,
        )
        self.causal = causal
        self.pad_mode = pad_mode

    @property
    def stride(self) -> int:
        return self.conv.stride[0]

    def _paddings(self, n: int) -> tuple[int, int]:
        """Left and right padding of a signal of ``n`` samples."""
        conv = self.conv
        effective_kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        stride = conv.stride[0]
        padding_total = effective_kernel - stride
        extra = extra_padding_for_full_window(n, effective_kernel, stride, padding_total)
        if self.causal:
            return padding_total, extra
        right = padding_total // 2
        return padding_total - right, right + extra

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return pad1d(x, self._paddings(x.shape[-1]), mode=self.pad_mode)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for valid input ``lengths`` (``ceil(length / stride)``)."""
        return torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, N]``; ``lengths [B]`` marks each item's valid samples (the rest is padding).

        With ``lengths``, each item is padded as if it were alone, so valid outputs of a
        padded batch equal those of the items one at a time; outputs past an item's
        valid length are undefined.
        """
        if lengths is None or bool((lengths == x.shape[-1]).all()):
            return self.conv(self._pad(x))
        items = [self._pad(x[i : i + 1, :, : int(n)]) for i, n in enumerate(lengths.tolist())]
        # At least the width of the whole padded signal: the output has ceil(N / stride) frames even when
        # every item of the batch is shorter than N.
        width = max(x.shape[-1] + sum(self._paddings(x.shape[-1])), *(item.shape[-1] for item in items))
        return self.conv(torch.cat([F.pad(item, (0, width - item.shape[-1])) for item in items]))


class TrimmedConvTranspose1d(nn.Module):
    """``ConvTranspose1d`` that trims its own overlap (EnCodec's ``StreamableConvTranspose1d``, without
    streaming state).

    Input ``[B, C_in, T]`` -> output ``[B, C_out, T * stride]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: str = "none",
        trim_right_ratio: float = 1.0,
    ):
        super().__init__()
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio only applies to causal convolutions")
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ValueError("trim_right_ratio must be in [0, 1]")
        self.convtr = _apply_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride), norm)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio

    @property
    def stride(self) -> int:
        return self.convtr.stride[0]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths * self.stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, T]`` -> ``[B, C_out, T * stride]``; with ``lengths``, padding frames are zeroed
        first so that they cannot leak into the valid output of shorter items."""
        if lengths is not None and not bool((lengths == x.shape[-1]).all()):
            x = x * frame_mask(lengths, x.shape[-1], x.device).to(x.dtype)
        kernel_size = self.convtr.kernel_size[0]
        stride = self.convtr.stride[0]
        padding_total = kernel_size - stride
        y = self.convtr(x)
        if self.causal:
            right = math.ceil(padding_total * self.trim_right_ratio)
            left = padding_total - right
        else:
            right = padding_total // 2
            left = padding_total - right
        return unpad1d(y, (left, right))
