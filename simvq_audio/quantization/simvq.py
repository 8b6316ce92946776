"""SimVQ: a frozen random codebook reparameterised by one learned linear map.

Zhu et al., "Addressing Representation Collapse in Vector Quantized Models with One
Linear Layer" (arXiv 2411.02038). Plain VQ only moves the code vectors that were
selected, so most of a large codebook dies. SimVQ keeps a frozen Gaussian codebook
``C [K, d]`` and learns ``W``; the codebook in use is ``W(C) = C W^T + b``. Every
gradient step on ``W`` moves the whole codebook, so all codes stay reachable.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SimVQError
from .base import CodebookQuantizer, QuantizerOutput
from .search import DEFAULT_MAX_BLOCK_ELEMENTS


def frozen_codebook(codebook_size: int, dim: int, seed: int) -> torch.Tensor:
    """The frozen Gaussian codebook ``[K, d]`` (std ``d ** -0.5``), derived from ``seed`` alone."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(codebook_size, dim, generator=generator, dtype=torch.float32) * dim**-0.5


def fingerprint(codebook: torch.Tensor) -> torch.Tensor:
    """SHA-256 of the codebook's float32 little-endian bytes, as a ``[32]`` uint8 tensor."""
    data = codebook.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes()
    return torch.frombuffer(bytearray(hashlib.sha256(data).digest()), dtype=torch.uint8).clone()


class CodebookMismatchError(SimVQError, ValueError):
    """A checkpoint's frozen codebook differs from the one rebuilt from its seed."""


class SimVQ(CodebookQuantizer):
    """SimVQ quantizer over latents ``[B, dim, T]``.

    Args:
        dim: latent size ``d``.
        codebook_size: number of codes ``K``.
        bias: whether the linear map ``W`` has a bias (the paper's default: yes).
        train_codebook: also learn ``C`` (then ``C`` is stored in checkpoints).
        seed: seed of the frozen codebook; checkpoints store a fingerprint of ``C``, not ``C``.
        beta: weight of the commitment term in ``QuantizerOutput.loss``.
        data_init: on the first training batch, set ``W`` and ``b`` so that ``W(C)`` has the
            latents' mean and covariance (see ``CodebookQuantizer._data_init``); off by
            default here (the paper's initialisation), on by default in ``QuantizerConfig``.
        l2_norm: cosine search (see ``CodebookQuantizer``).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        bias: bool = True,
        train_codebook: bool = False,
        seed: int = 0,
        beta: float = 0.25,
        max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
        data_init: bool = False,
        l2_norm: bool = False,
    ):
        super().__init__(dim, codebook_size, beta, max_block_elements, data_init=data_init, l2_norm=l2_norm)
        self.seed = int(seed)
        self.train_codebook = train_codebook
        base = frozen_codebook(codebook_size, dim, seed)
        if train_codebook:
            self.base_codebook = nn.Parameter(base)
        else:
            self.register_buffer("base_codebook", base, persistent=False)
        self.register_buffer("codebook_fingerprint", fingerprint(base))
        self.proj = nn.Linear(dim, dim, bias=bias)
        self._cache: torch.Tensor | None = None
        self._cache_key: tuple | None = None
        self._graph_codebook: torch.Tensor | None = None  # set only inside forward, see there

    @torch.no_grad()
    def init_from_moments(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        # C has covariance I/d, so W = sqrt(d) * scale gives W C the covariance scale scale^T.
        self.proj.weight.copy_(scale * self.dim**0.5)
        if self.proj.bias is not None:
            self.proj.bias.copy_(mean)
        self._cache = None

    def _key(self) -> tuple | None:
        """Identity of ``W``, ``C`` and ``b`` for the cache, or ``None`` when it cannot be known.

        Tensors made under ``torch.inference_mode()`` have no version counter, so in-place changes
        to them cannot be seen: the codebook is then recomputed on every call (K x d x d, cheap).
        """
        params = [self.proj.weight, self.base_codebook] + ([self.proj.bias] if self.proj.bias is not None else [])
        if any(p.is_inference() for p in params):
            return None
        return tuple((p._version, p.data_ptr(), p.device, p.dtype) for p in params)

    def codebook(self) -> torch.Tensor:
        """The effective codebook ``W(C)``, ``[K, d]`` in float32, without gradient.

        In eval mode it is cached, and recomputed whenever ``W`` or ``C`` change
        (in-place optimiser steps and ``load_state_dict`` bump the tensors' versions); a module
        built under ``torch.inference_mode()`` is not cached (see ``_key``).
        """
        if self._graph_codebook is not None:
            return self._graph_codebook.detach()
        if self.training:
            self._cache = None
            return self._project_all()
        key = self._key()
        if key is None:
            self._cache = None
            return self._project_all()
        if self._cache is None or self._cache_key != key:
            self._cache = self._project_all()
            self._cache_key = key
        return self._cache

    def _project(self, codebook: torch.Tensor) -> torch.Tensor:
        """``W(codebook)`` in float32 (also under autocast), with gradient when enabled."""
        with torch.autocast(device_type=codebook.device.type, enabled=False):
            b = None if self.proj.bias is None else self.proj.bias.float()
            return F.linear(codebook.float(), self.proj.weight.float(), b)

    @torch.no_grad()
    def _project_all(self) -> torch.Tensor:
        return self._project(self.base_codebook)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """As ``CodebookQuantizer.forward``; a training batch with more frames than codes projects
        the whole codebook once, with its graph, for both the search and the lookup."""
        if not (self.training and torch.is_grad_enabled() and bool(self.initialized) and z.dim() == 3
                and z.shape[0] * z.shape[-1] >= self.codebook_size):
            return super().forward(z, mask)  # (a pending data init changes W first)
        self._graph_codebook = self._project(self.base_codebook)
        try:
            return super().forward(z, mask)
        finally:
            self._graph_codebook = None

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        if self._graph_codebook is not None:
            return self._graph_codebook[codes]
        if not self.training and not torch.is_grad_enabled():
            return self.codebook()[codes]
        # Gradient must reach W (and C if trained): project whichever is smaller, the selected
        # rows (N x d x d) or the whole codebook (K x d x d, when a batch has more frames than
        # codes); a large codebook is never projected with a graph.
        if codes.numel() >= self.codebook_size:
            return self._project(self.base_codebook)[codes]
        return self._project(self.base_codebook[codes])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "codebook_fingerprint"
        if key in state_dict and not self.train_codebook:
            stored = state_dict[key].to(torch.uint8).cpu()
            if not torch.equal(stored, self.codebook_fingerprint.cpu()):
                raise CodebookMismatchError(
                    f"frozen codebook fingerprint mismatch at {prefix.rstrip('.') or 'quantizer'}: the checkpoint was made with "
                    f"another codebook (seed, size or torch's random generator differ); this build uses seed "
                    f"{self.seed}, K={self.codebook_size}, d={self.dim}"
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if self.train_codebook:
            with torch.no_grad():
                self.codebook_fingerprint.copy_(fingerprint(self.base_codebook))
        self._cache = None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, seed={self.seed}, train_codebook={self.train_codebook}"
