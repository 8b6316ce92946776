"""SEANet waveform encoder and decoder (the EnCodec architecture).

The encoder maps audio ``[B, channels, N]`` to latents ``[B, dimension, ceil(N / hop)]``;
the decoder maps latents ``[B, dimension, T]`` back to audio ``[B, channels, T * hop]``,
where ``hop = prod(ratios)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .conv import PaddedConv1d, TrimmedConvTranspose1d

ACTIVATIONS = {"ELU": nn.ELU, "GELU": nn.GELU, "LeakyReLU": nn.LeakyReLU, "SiLU": nn.SiLU}


@dataclass(frozen=True)
class SEANetConfig:
    """Architecture of the SEANet encoder and decoder.

    ``ratios`` are listed in decoder order (upsampling), as in EnCodec; the encoder
    downsamples by the same factors in reverse order. ``lstm`` is the number of LSTM
    layers after the convolutions (0: none).
    """

    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    activation: str = "ELU"
    norm: str = "weight_norm"
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = False
    pad_mode: str = "reflect"
    true_skip: bool = True
    compress: int = 2
    lstm: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"ratios must be positive integers, got {self.ratios}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)



class SEANetResnetBlock(nn.Module):
    """Residual unit: dilated convolutions with a skip connection. ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, dim: int, kernel_sizes: tuple[int, ...], dilations: tuple[int, ...], cfg: SEANetConfig):
        super().__init__()
        act = ACTIVATIONS[cfg.activation]
        hidden = dim // cfg.compress
        layers: list[nn.Module] = []
        for i, (k, d) in enumerate(zip(kernel_sizes, dilations, strict=True)):
            in_ch = dim if i == 0 else hidden
            out_ch = dim if i == len(kernel_sizes) - 1 else hidden
            layers += [
                act(),
                PaddedConv1d(in_ch, out_ch, k, dilation=d, causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode),
            ]
        self.block = nn.Sequential(*layers)
        if cfg.true_skip:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = PaddedConv1d(dim, dim, 1, causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return run_layers(self.shortcut, x, lengths)[0] + run_layers(self.block, x, lengths)[0]


class SLSTM(nn.Module):
    """LSTM over time with a skip connection. ``[B, C, T] -> [B, C, T]``; unidirectional, so causal."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)
        y, _ = self.lstm(seq)
        return (y + seq).permute(1, 2, 0)


def run_layers(layers: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None):
    """Apply ``layers`` (one module or a Sequential), threading per-item valid ``lengths``.

    Returns the output and the output lengths (``None`` when ``lengths`` is ``None``).
    """
    modules = layers if isinstance(layers, nn.Sequential) else [layers]
    for layer in modules:
        if isinstance(layer, (PaddedConv1d, TrimmedConvTranspose1d)):
            x = layer(x, lengths)
            lengths = None if lengths is None else layer.output_lengths(lengths)
        elif isinstance(layer, SEANetResnetBlock):
            x = layer(x, lengths)
        else:
            x = layer(x)
    return x, lengths


def _residual_stack(dim: int, cfg: SEANetConfig) -> list[nn.Module]:
    return [
        SEANetResnetBlock(
            dim,
            kernel_sizes=(cfg.residual_kernel_size, 1),
            dilations=(cfg.dilation_base**j, 1),
            cfg=cfg,
        )
        for j in range(cfg.n_residual_layers)
    ]


class SEANetEncoder(nn.Module):
    """Audio ``[B, channels, N]`` -> latents ``[B, dimension, ceil(N / hop)]``."""

    def __init__(self, cfg: SEANetConfig):
        super().__init__()
        self.cfg = cfg
        act = ACTIVATIONS[cfg.activation]
        conv = dict(causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode)
        mult = 1
        layers: list[nn.Module] = [PaddedConv1d(cfg.channels, cfg.n_filters, cfg.kernel_size, **conv)]
        for ratio in reversed(cfg.ratios):
            dim = mult * cfg.n_filters
            layers += _residual_stack(dim, cfg)
            layers += [act(), PaddedConv1d(dim, dim * 2, kernel_size=ratio * 2, stride=ratio, **conv)]
            mult *= 2
        if cfg.lstm:
            layers.append(SLSTM(mult * cfg.n_filters, cfg.lstm))
        layers += [act(), PaddedConv1d(mult * cfg.n_filters, cfg.dimension, cfg.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths [B]``: valid samples per item; valid frames are ``ceil(length / hop)``."""
        return run_layers(self.model, x, lengths)[0]


class SEANetDecoder(nn.Module):
    """Latents ``[B, dimension, T]`` -> audio ``[B, channels, T * hop]``.

    With ``excitation_channels > 0`` (a source-filter decoder, as NSF-HiFiGAN), ``forward``
    also takes a sample-rate excitation ``[B, excitation_channels, T * hop]``
    (``modules/excitation.py``): after each upsampling layer it is average-pooled to that
    layer's rate and added through a convolution that starts at zero, so a decoder warm
    started from one without excitation begins exactly where that one was.
    """

    def __init__(self, cfg: SEANetConfig, excitation_channels: int = 0):
        super().__init__()
        self.cfg = cfg
        act = ACTIVATIONS[cfg.activation]
        conv = dict(causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode)
        mult = 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [PaddedConv1d(cfg.dimension, mult * cfg.n_filters, cfg.kernel_size, **conv)]
        if cfg.lstm:
            layers.append(SLSTM(mult * cfg.n_filters, cfg.lstm))
        for ratio in cfg.ratios:
            dim = mult * cfg.n_filters
            layers += [
                act(),
                TrimmedConvTranspose1d(
                    dim, dim // 2, kernel_size=ratio * 2, stride=ratio, causal=cfg.causal, norm=cfg.norm
                ),
            ]
            layers += _residual_stack(dim // 2, cfg)
            mult //= 2
        layers += [act(), PaddedConv1d(cfg.n_filters, cfg.channels, cfg.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)
        self.excitation_channels = excitation_channels
        self.inject = nn.ModuleList()
        if excitation_channels:
            mult = 2 ** len(cfg.ratios)
            for _ in cfg.ratios:
                mult //= 2
                inj = PaddedConv1d(excitation_channels, mult * cfg.n_filters, 7, causal=cfg.causal,
                                       pad_mode="constant")
                nn.init.zeros_(inj.conv.weight)
                nn.init.zeros_(inj.conv.bias)
                self.inject.append(inj)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor | None = None,
                excitation: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths [B]``: valid frames per item; valid samples are ``length * hop``."""
        if not self.excitation_channels:
            return run_layers(self.model, z, lengths)[0]
        hop = self.cfg.hop_length
        if excitation is None or excitation.shape != (z.shape[0], self.excitation_channels, z.shape[-1] * hop):
            shape = None if excitation is None else tuple(excitation.shape)
            raise ValueError(f"this decoder needs an excitation [B, {self.excitation_channels}, T * {hop}], got {shape}")
        x, stage, rate = z, 0, 1
        for layer in self.model:
            x, lengths = run_layers(layer, x, lengths)
            if isinstance(layer, TrimmedConvTranspose1d):
                rate *= self.cfg.ratios[stage]
                pool = hop // rate
                e = excitation if pool == 1 else F.avg_pool1d(excitation, pool)
                x = x + self.inject[stage](e, lengths)
                stage += 1
        return x
