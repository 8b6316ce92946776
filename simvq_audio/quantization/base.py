"""What every quantizer returns, and the shared forward pass of codebook quantizers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .search import DEFAULT_MAX_BLOCK_ELEMENTS, nearest_codes


@dataclass
class QuantizerOutput:
    """Result of a quantizer's forward pass.

    Attributes:
        quantized: ``[B, d, T]`` quantized latents with a straight-through gradient to the input.
        codes: ``[B, T]`` for a single codebook, ``[B, n_q, T]`` for a residual quantizer (int64).
        codebook_loss: scalar, mean of ``||sg(z) - q||^2`` (moves the codebook towards the latents).
        commitment_loss: scalar, mean of ``||z - sg(q)||^2`` (unweighted; see ``loss`` for beta).
        loss: scalar, ``codebook_loss + beta * commitment_loss``.
        metrics: detached scalars: ``perplexity``, ``usage`` (fraction of the codebook used in the batch).
        codebook: ``[K, d]`` the codebook as the search saw it, without gradient (before the sphere of
            ``l2_norm``; an EMA codebook after this pass's update). A residual quantizer gives its first
            stage's. Losses on the codebook read it here instead of projecting SimVQ's ``W C`` again.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    codebook: torch.Tensor | None = None


def code_metrics(codes: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Perplexity and used fraction of a flat tensor of codes."""
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).float()
    total = counts.sum().clamp(min=1.0)
    probs = counts / total
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    return {"perplexity": entropy.exp(), "usage": (counts > 0).float().mean()}


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over ``[B, d, T]``, counting only frames where ``mask [B, T]`` is true."""
    if mask is None:
        return F.mse_loss(a, b)
    m = mask.unsqueeze(1).to(a.dtype)
    denom = (m.sum() * a.shape[1]).clamp(min=1.0)
    return ((a - b).pow(2) * m).sum() / denom


def check_mask(mask: torch.Tensor | None, b: int, t: int) -> torch.Tensor | None:
    """``mask [B, T]`` as bool (true = real frame); an integer 0/1 mask would otherwise index rows."""
    if mask is None:
        return None
    if mask.shape != (b, t):
        raise ValueError(f"expected mask [B, T] = [{b}, {t}], got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or mask.is_complex() or ((mask != 0) & (mask != 1)).any():
            raise ValueError(f"mask must be bool (or integer 0/1), got {mask.dtype}")
        mask = mask.bool()
    return mask


class CodebookQuantizer(nn.Module):
    """A single codebook of ``codebook_size`` vectors of size ``dim``.

    Subclasses define ``codebook()`` (the effective ``[K, d]`` codebook used for the
    search) and ``lookup(codes)`` (the differentiable code vectors for ``codes``).
    Inputs are ``[B, d, T]``, channels first, as the encoder produces them.
    ``l2_norm``: search and output on the unit sphere (cosine similarity, as ViT-VQGAN and
    DAC): latents and code vectors are l2-normalised before the search and the losses.
    """

    def __init__(self, dim: int, codebook_size: int, beta: float = 0.25,
                 max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS, data_init: bool = False,
                 l2_norm: bool = False):
        super().__init__()
        if dim < 1 or codebook_size < 2:
            raise ValueError(f"need dim >= 1 and codebook_size >= 2, got {dim} and {codebook_size}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.beta = beta
        self.max_block_elements = max_block_elements
        self.data_init = data_init
        self.l2_norm = bool(l2_norm)
        # Persistent so that a resumed or loaded model is never re-initialised.
        self.register_buffer("initialized", torch.tensor(not data_init))

    # -- to be defined by subclasses -------------------------------------------------
    def codebook(self) -> torch.Tensor:
        raise NotImplementedError

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., d]`` for integer ``codes [...]``."""
        raise NotImplementedError

    def update_codebook(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """Hook for non-gradient codebook updates (EMA); called in training only."""

    def init_from_moments(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Place the codebook so its entries follow ``N(mean, scale scale^T)``.

        ``mean [d]`` and ``scale [d, d]`` (a Cholesky factor of the latents' covariance)
        are float32. Called once, on the first training batch, when ``data_init`` is set.
        """
        raise NotImplementedError

    @torch.no_grad()
    def _data_init(self, flat: torch.Tensor) -> None:
        """Match the codebook to the first batch's latent mean and covariance.

        At initialisation a random codebook and the encoder's latents live at different
        scales, so every frame picks the same code and plain nearest-neighbour training
        never recovers (EnCodec initialises with k-means for the same reason). Moment
        matching gives SimVQ a codebook ``W C + b`` spread like the data, and plain VQ the
        very same starting codebook, so ablations compare the learning rule alone.
        Statistics are summed over processes, so every replica computes the same codebook.
        """
        x = flat.detach().float()
        stats = torch.cat([x.sum(0), (x.t() @ x).reshape(-1), x.new_tensor([x.shape[0]])])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        d = self.dim
        n = stats[-1].clamp(min=1.0)
        mean = stats[:d] / n
        cov = stats[d:-1].view(d, d) / n - torch.outer(mean, mean)
        cov = 0.5 * (cov + cov.t())
        jitter = 1e-4 * cov.diagonal().mean().clamp(min=1e-12) + 1e-10
        eye = torch.eye(d, device=cov.device)
        scale, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) != 0:  # not positive definite even with jitter: fall back to per-dim scales
            scale = torch.diag((cov.diagonal().clamp(min=0) + jitter).sqrt())
        self.init_from_moments(mean, scale)
        self.initialized.fill_(True)

    # -- shared ------------------------------------------------------------------------
    def _sphere(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return F.normalize(x, dim=dim) if self.l2_norm else x

    def _search_codebook(self, codebook: torch.Tensor | None = None) -> torch.Tensor:
        return self._sphere(self.codebook() if codebook is None else codebook, -1)

    def _vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """The differentiable code vectors ``[..., d]`` the output uses (on the sphere with ``l2_norm``)."""
        return self._sphere(self.lookup(codes), -1)

    def _check(self, z: torch.Tensor) -> None:
        if z.dim() != 3 or z.shape[1] != self.dim:
            raise ValueError(f"expected latents [B, {self.dim}, T], got {tuple(z.shape)}")

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, d, T]`` -> codes ``[B, T]`` (int64)."""
        self._check(z)
        b, d, t = z.shape
        flat = self._sphere(z, 1).transpose(1, 2).reshape(-1, d)
        return nearest_codes(flat, self._search_codebook(), self.max_block_elements).view(b, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, T]`` -> quantized latents ``[B, d, T]``."""
        if codes.dim() != 2:
            raise ValueError(f"expected codes [B, T], got {tuple(codes.shape)}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        return self._vectors(codes).transpose(1, 2)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantize latents ``[B, d, T]``; ``mask [B, T]`` (true = real frame) limits losses and metrics."""
        self._check(z)
        b, d, t = z.shape
        z = self._sphere(z, 1)
        flat = z.transpose(1, 2).reshape(-1, d)
        mask = check_mask(mask, b, t)
        if self.training and not bool(self.initialized):
            self._data_init(flat if mask is None else flat[mask.reshape(-1)])
        codebook = self.codebook().detach()
        codes_flat = nearest_codes(flat, self._search_codebook(codebook), self.max_block_elements)
        codes = codes_flat.view(b, t)
        # Look up before any EMA update so the output uses the codebook the search saw
        # (then forward agrees with decode(encode(z)) taken just before it).
        # Contiguous like z: the losses' elementwise kernels and their backward are much slower
        # on a transposed operand.
        q = self._vectors(codes).transpose(1, 2).to(z.dtype).contiguous()
        if self.training:
            valid = flat if mask is None else flat[mask.reshape(-1)]
            valid_codes = codes_flat if mask is None else codes_flat[mask.reshape(-1)]
            self.update_codebook(valid, valid_codes)
        codebook_loss = _masked_mse(q, z.detach(), mask)
        commitment_loss = _masked_mse(z, q.detach(), mask)
        quantized = z + (q - z).detach()
        used = codes if mask is None else codes[mask]
        metrics = {k: v.detach() for k, v in code_metrics(used, self.codebook_size).items()}
        return QuantizerOutput(
            quantized=quantized,
            codes=codes,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            loss=codebook_loss + self.beta * commitment_loss,
            metrics=metrics,
            codebook=codebook,
        )
