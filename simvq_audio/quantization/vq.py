"""Baseline quantizers under the SimVQ interface, for ablations.

* ``VectorQuantizer``: plain VQ-VAE, a learned codebook trained by the codebook loss.
  Only selected codes receive gradient, so large codebooks collapse.
* ``EMAVectorQuantizer``: the codebook follows an exponential moving average of the
  latents assigned to each code (VQ-VAE-2 / SoundStream style), with Laplace smoothing.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import CodebookQuantizer
from .search import DEFAULT_MAX_BLOCK_ELEMENTS


def _moment_matched(unit: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Rows of ``unit [K, d]`` (covariance I/d) mapped to covariance ``scale scale^T`` around ``mean``."""
    return unit.float() @ (scale * unit.shape[1] ** 0.5).t() + mean


class VectorQuantizer(CodebookQuantizer):
    """Plain VQ with a learned codebook ``[K, d]`` initialised like SimVQ's (std ``d ** -0.5``)."""

    def __init__(self, dim: int, codebook_size: int, seed: int = 0, beta: float = 0.25,
                 max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS, data_init: bool = False,
                 l2_norm: bool = False):
        super().__init__(dim, codebook_size, beta, max_block_elements, data_init=data_init, l2_norm=l2_norm)
        generator = torch.Generator().manual_seed(int(seed))
        self.embedding = nn.Parameter(torch.randn(codebook_size, dim, generator=generator) * dim**-0.5)

    def codebook(self) -> torch.Tensor:
        return self.embedding.detach()

    @torch.no_grad()
    def init_from_moments(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        # The same affine map SimVQ's data init applies to its frozen codebook, so with one
        # seed both quantizers start from identical code vectors.
        self.embedding.copy_(_moment_matched(self.embedding, mean, scale))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding[codes]


class EMAVectorQuantizer(CodebookQuantizer):
    """VQ whose codebook is an EMA of assigned latents (no gradient to the codebook).

    Args:
        decay: EMA decay of cluster sizes and sums.
        eps: Laplace smoothing that keeps empty clusters finite.
    """

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, eps: float = 1e-5, seed: int = 0,
                 beta: float = 0.25, max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS, data_init: bool = False,
                 l2_norm: bool = False):
        super().__init__(dim, codebook_size, beta, max_block_elements, data_init=data_init, l2_norm=l2_norm)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.eps = eps
        generator = torch.Generator().manual_seed(int(seed))
        init = torch.randn(codebook_size, dim, generator=generator) * dim**-0.5
        self.register_buffer("embedding", init)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embedding_sum", init.clone())

    def codebook(self) -> torch.Tensor:
        return self.embedding

    @torch.no_grad()
    def init_from_moments(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        self.embedding.copy_(_moment_matched(self.embedding, mean, scale))
        self.embedding_sum.copy_(self.embedding)
        self.cluster_size.fill_(1.0)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding[codes]

    @torch.no_grad()
    def update_codebook(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        flat = flat.detach().float()
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.embedding_sum).index_add_(0, codes, flat)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embedding.copy_(self.embedding_sum / smoothed.unsqueeze(1))
