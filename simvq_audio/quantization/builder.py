"""Quantizer configuration and the one place that turns it into modules."""

from __future__ import annotations

from dataclasses import dataclass

from .base import CodebookQuantizer
from .residual import ResidualQuantizer
from .simvq import SimVQ
from .vq import EMAVectorQuantizer, VectorQuantizer

KINDS = ("simvq", "vq", "ema")


@dataclass(frozen=True)
class QuantizerConfig:
    """Bottleneck settings.

    ``kind``: ``simvq`` (default), ``vq`` (plain learned codebook) or ``ema`` (EMA codebook).
    ``dim``: the quantizer's latent size; the codec projects the encoder output to it.
    Stage ``i`` of a residual stack uses seed ``seed + i``.
    """

    kind: str = "simvq"
    codebook_size: int = 65536
    dim: int = 128
    n_q: int = 1
    bias: bool = True
    train_codebook: bool = False
    seed: int = 0
    beta: float = 0.25
    ema_decay: float = 0.99
    quantizer_dropout: float = 0.0
    # Match the codebook to the first training batch's latent mean/covariance (see
    # CodebookQuantizer._data_init); without it a codec's codebook collapses to one code.
    data_init: bool = True
    # Cosine search: latents and codes l2-normalised before the search and the losses.
    l2_norm: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown quantizer kind {self.kind!r}; expected one of {KINDS}")
        if self.n_q < 1:
            raise ValueError(f"n_q must be >= 1, got {self.n_q}")


def build_stage(cfg: QuantizerConfig, index: int = 0) -> CodebookQuantizer:
    seed = cfg.seed + index
    if cfg.kind == "simvq":
        return SimVQ(cfg.dim, cfg.codebook_size, bias=cfg.bias, train_codebook=cfg.train_codebook, seed=seed,
                     beta=cfg.beta, data_init=cfg.data_init, l2_norm=cfg.l2_norm)
    if cfg.kind == "vq":
        return VectorQuantizer(cfg.dim, cfg.codebook_size, seed=seed, beta=cfg.beta, data_init=cfg.data_init,
                               l2_norm=cfg.l2_norm)
    return EMAVectorQuantizer(cfg.dim, cfg.codebook_size, decay=cfg.ema_decay, seed=seed, beta=cfg.beta,
                              data_init=cfg.data_init, l2_norm=cfg.l2_norm)


def build_quantizer(cfg: QuantizerConfig) -> ResidualQuantizer:
    """A ``ResidualQuantizer`` with ``cfg.n_q`` stages (one stage: a plain single codebook)."""
    return ResidualQuantizer([build_stage(cfg, i) for i in range(cfg.n_q)], cfg.quantizer_dropout)
