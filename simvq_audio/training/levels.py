"""Per-crop level normalisation of training batches.

A codec's encoder is not level-invariant. Much recorded speech sits 30-40 dB below full
scale; fed as is to a freshly initialised encoder, every frame maps to the same code
(the encoder output is dominated by its biases) and training can stay collapsed on one
code. Scaling each crop to a random RMS level in a speech-like range keeps the signal
visible to the encoder from step 0, while the range keeps the model usable on quiet
and loud input alike.
"""

from __future__ import annotations

import numpy as np
import torch

from ..modules.conv import length_mask
from .config import DataConfig


def rms_db(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RMS level in dB re full scale of the valid samples of each item: ``[B, C, S]`` -> ``[B]``."""
    mask = length_mask(lengths, audio.shape[-1], audio.device)[:, None, :]
    power = (audio.float().pow(2) * mask).sum(dim=(1, 2)) / (lengths.to(audio.device).clamp(min=1) * audio.shape[1])
    return 10.0 * torch.log10(power.clamp(min=1e-20))


def batch_generator(seed: int, epoch: int, index: int, rank: int, *stream: int) -> torch.Generator:
    """A CPU generator for one batch of one process: a pure function of ``(seed, epoch, index, rank)``
    and an optional ``stream`` number (one per use), so a resumed run draws the same numbers."""
    keys = [int(seed), int(epoch), int(index), int(rank), *map(int, stream)]
    state = np.random.SeedSequence(keys).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def draw_levels(cfg: DataConfig, batch_size: int, seed: int, epoch: int, index: int, rank: int) -> torch.Tensor | None:
    """Target RMS levels (dB) for one batch: uniform in ``loudness_db`` plus uniform in ``gain_db``.

    A pure function of ``(seed, epoch, index, rank)``, so a resumed run draws the same
    levels for the same batch. ``None`` when ``cfg.loudness_db`` is off.
    """
    if cfg.loudness_db is None:
        return None
    g = batch_generator(seed, epoch, index, rank)
    low, high = cfg.loudness_db
    levels = low + (high - low) * torch.rand(batch_size, generator=g, dtype=torch.float64)
    if cfg.gain_db is not None:
        g_low, g_high = cfg.gain_db
        levels = levels + g_low + (g_high - g_low) * torch.rand(batch_size, generator=g, dtype=torch.float64)
    return levels.float()


def set_levels(audio: torch.Tensor, lengths: torch.Tensor, target_db: torch.Tensor,
               max_boost_db: float = 40.0) -> torch.Tensor:
    """Scale each item of ``audio [B, C, S]`` to ``target_db [B]`` RMS, boosting by at most ``max_boost_db``.

    The cap keeps near-silent crops from being raised into loud noise.
    """
    gain_db = (target_db.to(audio.device) - rms_db(audio, lengths)).clamp(max=max_boost_db)
    return audio * torch.pow(10.0, gain_db / 20.0).to(audio.dtype)[:, None, None]

