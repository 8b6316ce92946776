"""The training data loader, with an order that is a pure function of (seed, epoch).

With the dataset's crops also a function of (seed, epoch, index), the batch at a given
(epoch, position) is the same in an interrupted-and-resumed run as in an uninterrupted
one; ``Accelerator.skip_first_batches`` then skips to the position without loading audio.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import AudioDataset, collate_audio
from ..data.manifest import filter_by_duration, read_manifest
from ..errors import SimVQError
from .config import DataConfig


class EpochSampler(Sampler[int]):
    """A shuffled order of ``range(n)`` drawn from ``seed`` and the epoch set by ``set_epoch``.

    Not a ``RandomSampler`` on purpose: Accelerate leaves it alone, and every process
    draws the same order before the batches are sharded between them.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, int(seed), shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def build_train_loader(cfg: DataConfig, sample_rate: int, channels: int, seed: int, pitch_targets=None) -> DataLoader:
    """Loader of ``{"audio": [B, C, S], "lengths": [B], "skipped": int}`` crops (last short batch dropped);
    with ``pitch_targets`` (a ``PitchTargets``), also pYIN's ``"pitch_f0"`` and ``"pitch_voiced"`` ``[B, T]``.

    Call ``set_data_epoch(loader, epoch)`` on this loader before each epoch.
    """
    entries = filter_by_duration(read_manifest(cfg.train_manifest), min_duration=cfg.min_duration)
    if len(entries) < cfg.batch_size:
        raise SimVQError(f"{cfg.train_manifest}: {len(entries)} usable files, fewer than one batch "
                         f"(data.batch_size={cfg.batch_size})")
    # With loudness normalisation on, the trainer applies gain_db after it (see levels.py).
    gain_db = cfg.gain_db if cfg.loudness_db is None else None
    dataset = AudioDataset(entries, sample_rate, cfg.segment_seconds, channels=channels, gain_db=gain_db,
                           seed=seed, random_crop=True, pitch_targets=pitch_targets)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(dataset), seed),
        collate_fn=collate_audio,
        num_workers=cfg.num_workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,  # workers must see the dataset's epoch, set before each epoch
    )


def set_data_epoch(loader: DataLoader, epoch: int) -> None:
    """Select ``epoch`` in the sampler and dataset of a loader from ``build_train_loader``.

    Pass the loader as built (before ``accelerator.prepare``): prepared and skipping
    loaders share its sampler and dataset objects.
    """
    loader.dataset.set_epoch(epoch)
    loader.sampler.set_epoch(epoch)
