"""Random access to an exported token corpus (``simvq-audio export-dataset``) for LM training.

Items are LongTensors ``[T, n_q]`` (frames x codebooks), the on-disk layout, read through
``np.memmap``: one utterance per item, or fixed windows of ``window`` frames. Memory maps are
opened lazily in the process that reads (a DataLoader worker) and are never pickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import SimVQError, TokenFileError
from ..modules.conv import length_mask
from .format import META_NAME, CorpusMeta, ShardFiles, expected_bin_size, read_index, read_meta


class TokenDataset(Dataset):
    """Utterances or windows of an exported token corpus.

    Args:
        root: the corpus folder (holds ``meta.json``).
        split: ``ROOT/SPLIT`` when that is a corpus folder, else only the utterances whose index
            ``split`` (from the manifest) equals it.
        window: ``None``: one item per utterance, ``[T, n_q]``. An int ``W``: items are windows of
            ``W`` frames starting every ``stride`` frames in each utterance; when the windows do not
            reach an utterance's end, one more window ends exactly there (it overlaps the one
            before), so no frame is left out and every window has ``W`` frames, except that an
            utterance shorter than ``W`` is one shorter item (``collate`` pads it and masks it).
            Windows never cross utterances.
        stride: frames between window starts (default ``window``: no overlap).
        n_codebooks: keep the first ``n_codebooks`` codebooks (coarse to fine); default all.
        return_meta: items are ``(codes, meta)`` with ``meta`` a dict (id, source, speaker, text,
            split, utterance index, start frame) instead of ``codes``.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, window: int | None = None,
                 stride: int | None = None, n_codebooks: int | None = None, return_meta: bool = False):
        root = Path(root)
        if split is not None and (root / split / META_NAME).is_file():
            root, split = root / split, None
        self.root = root
        self.meta: CorpusMeta = read_meta(root)
        n_q = self.meta.n_codebooks
        if n_codebooks is not None and not 1 <= n_codebooks <= n_q:
            raise ValueError(f"n_codebooks must be in [1, {n_q}] for this corpus, got {n_codebooks}")
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of frames, got {window}")
        if stride is not None and (window is None or stride < 1):
            raise ValueError("stride needs a window and must be at least 1")
        self.n_codebooks = n_codebooks or n_q
        self.window, self.stride = window, (stride or window)
        self.return_meta = return_meta
        self.records = self._read_records(split)
        self._shard = np.array([r.shard for r in self.records], dtype=np.int64)
        self._offset = np.array([r.offset for r in self.records], dtype=np.int64)
        self._frames = np.array([r.n_frames for r in self.records], dtype=np.int64)
        self._items = self._enumerate_items()
        self._maps: dict[int, np.memmap] = {}

    # -- corpus ------------------------------------------------------------------------------
    def _read_records(self, split: str | None) -> list:
        records = []
        dtype, n_q = self.meta.numpy_dtype, self.meta.n_codebooks
        for i, shard in enumerate(self.meta.shards):
            files = ShardFiles.of(self.root, i)
            shard_records = read_index(files.index)
            size = files.bin.stat().st_size if files.bin.is_file() else -1
            if size != expected_bin_size(shard_records, n_q, dtype) or len(shard_records) != shard.n_utterances:
                raise TokenFileError(f"{files.bin}: missing or does not match its index ({size} bytes)")
            records += shard_records
        if split is not None:
            records = [r for r in records if r.split == split]
            if not records:
                raise SimVQError(f"{self.root}: no folder {split!r} and no utterance with split {split!r}")
        return records

    def _enumerate_items(self) -> np.ndarray:
        """``[N, 3]`` int64 rows (utterance, start frame, n frames)."""
        if self.window is None:
            u = np.arange(len(self.records))
            return np.stack([u, np.zeros_like(u), self._frames], axis=1)
        w, s = self.window, self.stride
        rows = []
        for u, t in enumerate(self._frames.tolist()):
            if t <= w:
                rows.append(np.array([[u, 0, t]]))
                continue
            starts = np.arange(0, t - w + 1, s)
            if starts[-1] + w < t:
                starts = np.append(starts, t - w)
            rows.append(np.stack([np.full_like(starts, u), starts, np.full_like(starts, w)], axis=1))
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), dtype=np.int64)

    # -- properties ----------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.meta.codebook_size

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.meta.frame_rate

    @property
    def lengths(self) -> np.ndarray:
        """Frames of each item, ``[len(self)]`` (for length-bucketed samplers)."""
        return self._items[:, 2].copy()

    # -- access ----------------------------------------------------------------------------------
    def _memmap(self, shard: int) -> np.memmap:
        mm = self._maps.get(shard)
        if mm is None:
            mm = np.memmap(ShardFiles.of(self.root, shard).bin, dtype=self.meta.numpy_dtype, mode="r")
            self._maps[shard] = mm
        return mm

    def read(self, utterance: int, start: int = 0, n_frames: int | None = None) -> torch.Tensor:
        """Frames ``[start, start + n_frames)`` of utterance ``utterance``: LongTensor ``[n_frames, n_codebooks]``."""
        total = int(self._frames[utterance])
        n_frames = total - start if n_frames is None else n_frames
        if not (0 <= start and 1 <= n_frames and start + n_frames <= total):
            raise IndexError(f"frames [{start}, {start + n_frames}) outside utterance of {total} frames")
        n_q = self.meta.n_codebooks
        first = (int(self._offset[utterance]) + start) * n_q
        flat = self._memmap(int(self._shard[utterance]))[first:first + n_frames * n_q]
        codes = flat.reshape(n_frames, n_q)[:, : self.n_codebooks].astype(np.int64)
        return torch.from_numpy(codes)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        u, start, n = (int(v) for v in self._items[index])
        codes = self.read(u, start, n)
        if not self.return_meta:
            return codes
        r = self.records[u]
        return codes, {"id": r.id, "source": r.source, "speaker": r.speaker, "text": r.text, "split": r.split,
                       "utterance": u, "start": start}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}  # maps are reopened by whoever unpickles (a DataLoader worker)
        return state


def collate(items: list, pad_value: int = 0) -> dict:
    """Pad items of ``TokenDataset`` to the longest: ``{"codes": [B, T_max, n_q] long,
    "mask": [B, T_max] bool (True = real frame), "lengths": [B] long}``, plus ``"meta"`` (list of
    dicts) when the items are ``(codes, meta)``."""
    metas = None
    if items and isinstance(items[0], tuple):
        items, metas = [c for c, _ in items], [m for _, m in items]
    lengths = torch.tensor([c.shape[0] for c in items], dtype=torch.long)
    t_max, n_q = int(lengths.max()), items[0].shape[1]
    codes = torch.full((len(items), t_max, n_q), pad_value, dtype=torch.long)
    for b, c in enumerate(items):
        codes[b, : c.shape[0]] = c
    mask = length_mask(lengths, t_max)
    batch = {"codes": codes, "mask": mask, "lengths": lengths}
    if metas is not None:
        batch["meta"] = metas
    return batch


def flatten_codebooks(codes: torch.Tensor, codebook_size: int | None = None) -> torch.Tensor:
    """Interleave codebooks into one stream: ``[..., T, n_q] -> [..., T * n_q]`` ordered
    ``t0 q0, t0 q1, ..., t1 q0, ...`` (a reshape, thanks to the frame-major layout).

    With ``codebook_size`` K, codebook ``q`` is shifted by ``q * K`` so each has its own token ids
    (vocabulary ``n_q * K``). A mask ``[..., T]`` follows with ``mask.repeat_interleave(n_q, -1)``.
    """
    if codes.dim() < 2:
        raise ValueError(f"expected codes [..., T, n_q], got {tuple(codes.shape)}")
    if codebook_size is not None:
        codes = codes + torch.arange(codes.shape[-1], device=codes.device) * codebook_size
    return codes.reshape(*codes.shape[:-2], -1)


def unflatten_codebooks(tokens: torch.Tensor, n_codebooks: int, codebook_size: int | None = None) -> torch.Tensor:
    """Inverse of ``flatten_codebooks``: ``[..., T * n_q] -> [..., T, n_q]`` (the length must divide)."""
    if tokens.shape[-1] % n_codebooks:
        raise ValueError(f"{tokens.shape[-1]} tokens is not a multiple of {n_codebooks} codebooks")
    codes = tokens.reshape(*tokens.shape[:-1], -1, n_codebooks)
    if codebook_size is not None:
        codes = codes - torch.arange(n_codebooks, device=codes.device) * codebook_size
    return codes
