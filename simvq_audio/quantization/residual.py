"""Residual quantization: ``n_q`` codebook quantizers, each coding what the previous left."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import CodebookQuantizer, QuantizerOutput, check_mask


class ResidualQuantizer(nn.Module):
    """Stack of codebook quantizers (SimVQ, VQ or EMA VQ) applied to successive residuals.

    Codes are ``[B, n_q, T]``. With ``quantizer_dropout > 0``, that fraction of the
    examples in a training batch uses only the first ``n`` stages (``n`` uniform in
    ``1..n_q``), so one model serves several bitrates (SoundStream, DAC). A stage's
    losses, metrics and EMA updates count only the examples that use it; its codes are
    still returned for every example (they equal what ``encode`` gives).
    """

    def __init__(self, stages: Sequence[CodebookQuantizer], quantizer_dropout: float = 0.0):
        super().__init__()
        if not stages:
            raise ValueError("a residual quantizer needs at least one stage")
        dims = {s.dim for s in stages}
        sizes = {s.codebook_size for s in stages}
        if len(dims) != 1 or len(sizes) != 1:
            raise ValueError("all stages must share dim and codebook_size")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {quantizer_dropout}")
        self.stages = nn.ModuleList(stages)
        self.quantizer_dropout = quantizer_dropout
        self.dim = dims.pop()
        self.codebook_size = sizes.pop()

    @property
    def n_q(self) -> int:
        return len(self.stages)

    def _n_q(self, n_q: int | None) -> int:
        n = self.n_q if n_q is None else int(n_q)
        if not 1 <= n <= self.n_q:
            raise ValueError(f"n_q must be in [1, {self.n_q}], got {n}")
        return n

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None, n_q: int | None = None,
                generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantize ``z [B, d, T]`` with the first ``n_q`` stages (all by default).

        In training with ``quantizer_dropout``, ``generator`` (a CPU ``torch.Generator``) draws which
        examples drop stages; it must be given then, so that runs are reproducible and resumable.
        """
        n = self._n_q(n_q)
        if z.dim() != 3 or z.shape[1] != self.dim:
            raise ValueError(f"expected latents [B, {self.dim}, T], got {tuple(z.shape)}")
        b, _, t = z.shape
        mask = check_mask(mask, b, t)
        active = torch.full((b,), n, device=z.device)
        dropout = self.training and self.quantizer_dropout > 0 and n > 1
        if dropout:
            if generator is None:
                raise ValueError("quantizer dropout needs an explicit generator (forward(..., generator=g))")
            drop = torch.rand(b, generator=generator).to(z.device) < self.quantizer_dropout
            sampled = torch.randint(1, n + 1, (b,), generator=generator).to(z.device)
            active = torch.where(drop, sampled, active)
        residual = z
        quantized = torch.zeros_like(z)
        codes, cb_losses, cm_losses, losses = [], [], [], []
        codebook = None  # the first stage's
        metrics: dict[str, torch.Tensor] = {}
        for i, stage in enumerate(self.stages[:n]):
            on = active > i
            keep = on.to(z.dtype).view(b, 1, 1)
            stage_mask = mask
            if dropout:
                # Examples that dropped this stage must not train it (nor the encoder through it).
                stage_mask = on[:, None].expand(b, t) if mask is None else mask & on[:, None]
            out = stage(residual, mask=stage_mask)
            quantized = quantized + out.quantized.detach() * keep
            residual = residual - out.quantized.detach()
            codes.append(out.codes)
            cb_losses.append(out.codebook_loss)
            cm_losses.append(out.commitment_loss)
            losses.append(out.loss)
            if i == 0:
                codebook = out.codebook
            for key, value in out.metrics.items():
                metrics[f"{key}" if self.n_q == 1 else f"{key}/q{i}"] = value
        # One straight-through estimator for the sum: with one per stage the gradient to z
        # would be n_q times the identity (each stage's residual carries z's gradient).
        quantized = z + (quantized - z).detach()
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),
            codebook_loss=torch.stack(cb_losses).mean(),
            commitment_loss=torch.stack(cm_losses).mean(),
            loss=torch.stack(losses).mean(),
            metrics=metrics,
            codebook=codebook,
        )

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Latents ``[B, d, T]`` -> codes ``[B, n_q, T]``."""
        n = self._n_q(n_q)
        residual = z
        codes = []
        for stage in self.stages[:n]:
            c = stage.encode(residual)
            residual = residual - stage.decode(c).to(residual.dtype)
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, n, T]`` (``n <= n_q``) -> quantized latents ``[B, d, T]``."""
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, n_q, T], got {tuple(codes.shape)}")
        n = self._n_q(codes.shape[1])
        out = None
        for i, stage in enumerate(self.stages[:n]):
            q = stage.decode(codes[:, i])
            out = q if out is None else out + q
        return out
