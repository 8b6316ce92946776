"""Training data: fixed-length random crops of audio files, reproducible from (seed, epoch, index).

Every random choice of an item (crop start, gain, replacement of an unreadable file) comes from a
generator seeded with ``(seed, epoch, index)``, so a resumed run sees exactly the batches it would have
seen, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from ..audio.io import load_audio, to_model_format
from ..errors import AudioError, SimVQError
from .manifest import ManifestEntry, read_manifest

logger = logging.getLogger(__name__)

# Random picks tried before scanning every file in turn for a readable one.
_RANDOM_RETRIES = 8
# Extra source context read on each side of a crop so the resampler's edge transient falls outside it.
_RESAMPLE_CONTEXT_SECONDS = 0.01


class AudioDataset(Dataset):
    """Audio crops for training the codec.

    Args:
        entries: the files (``ManifestEntry``; only ``path`` is used, lengths come from the file headers).
        sample_rate: rate of the returned audio, Hz (files are resampled to it).
        segment_seconds: crop length; ``None`` returns whole files.
        channels: channels of the returned audio (mean downmix, or repeat of mono).
        gain_db: ``(low, high)``: each item is scaled by a uniform random gain in that range, dB.
        seed: base seed of all random choices.
        random_crop: random crop start; ``False`` crops from the start of the file (validation).
        pitch_targets: a ``PitchTargets`` (``data/pitch_targets.py``): each item also carries pYIN's
            ``"pitch_f0"`` (FloatTensor [ceil(S / hop)], Hz, 0 where unvoiced) and ``"pitch_voiced"``
            (BoolTensor, same length) at the crop's frames.

    Item ``i``: ``{"audio": FloatTensor [C, S], "length": int, "skipped": int}`` where ``S`` =
    ``round(segment_seconds * sample_rate)``, ``length`` counts the valid samples (the rest is zero padding
    of a short file) and ``skipped`` the unreadable or empty files passed over to produce the item (each
    logged once per file and process). Raises SimVQError if no file at all can be read.

    Call ``set_epoch`` before iterating each epoch. DataLoader workers get a copy of the dataset when
    an iterator is created, so with ``persistent_workers=True`` the change would not reach them.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        sample_rate: int,
        segment_seconds: float | None,
        channels: int = 1,
        gain_db: tuple[float, float] | None = None,
        seed: int = 0,
        random_crop: bool = True,
        pitch_targets=None,
    ) -> None:
        if len(entries) == 0:
            raise SimVQError("the dataset has no audio files (empty manifest?)")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if segment_seconds is not None and segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive or None, got {segment_seconds}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if gain_db is not None:
            low, high = gain_db
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ValueError(f"gain_db must be (low, high) with low <= high, got {gain_db}")
            gain_db = (float(low), float(high))
        self.paths = [Path(e.path) for e in entries]
        self.sample_rate = int(sample_rate)
        self.segment_seconds = segment_seconds
        self.segment_samples = None if segment_seconds is None else max(1, round(segment_seconds * sample_rate))
        self.channels = int(channels)
        self.gain_db = gain_db
        self.seed = int(seed)
        self.random_crop = bool(random_crop)
        self.pitch_targets = pitch_targets
        self.epoch = 0
        # Per-process caches (each DataLoader worker has its own copy): files known to be unreadable,
        # so they are warned about once and not reopened.
        self._bad: dict[Path, str] = {}

    @classmethod
    def from_manifest(cls, manifest: str | os.PathLike, sample_rate: int, segment_seconds: float | None, **kwargs):
        """Dataset over the entries of a JSONL manifest (see ``read_manifest``)."""
        return cls(read_manifest(manifest), sample_rate, segment_seconds, **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and gains ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def rng(self, index: int, stream: int = 0) -> np.random.Generator:
        """A generator of item ``index`` in the current epoch: a pure function of (seed, epoch, index, stream)."""
        return np.random.default_rng([self.seed, self.epoch, index, stream])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.paths):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.paths)} files")
        skipped = 0
        for attempt, candidate in enumerate(self._candidates(index, self.rng(index))):
            path = self.paths[candidate]
            if path in self._bad:
                skipped += 1
                continue
            # A generator per attempt: the crop of a file does not depend on whether an earlier file
            # failed before or after drawing its own crop (or was already known bad).
            rng = self.rng(index, attempt + 1)
            try:
                audio, length, start = self._load(path, rng)
                pitch = None if self.pitch_targets is None else self.pitch_targets.crop(path, start, audio.shape[-1])
            except (AudioError, OSError, RuntimeError, ValueError, sf.LibsndfileError) as exc:
                reason = str(exc).replace("\n", " ")
                self._bad[path] = reason
                logger.warning("skipping unreadable audio: %s", reason if str(path) in reason else f"{path}: {reason}")
                skipped += 1
                continue
            if self.gain_db is not None:
                audio = audio * np.float32(10.0 ** (rng.uniform(*self.gain_db) / 20.0))
            item = {"audio": torch.from_numpy(np.ascontiguousarray(audio)), "length": length, "skipped": skipped}
            if pitch is not None:
                item["pitch_f0"], item["pitch_voiced"] = torch.from_numpy(pitch[0]), torch.from_numpy(pitch[1])
            return item
        raise SimVQError(f"none of the {len(self.paths)} audio files of the dataset can be read (first: {self.paths[0]})")

    def _candidates(self, index: int, rng: np.random.Generator):
        """``index`` first, then a few random replacements, then every file in turn (so all-bad is detected)."""
        n = len(self.paths)
        yield index
        for _ in range(min(_RANDOM_RETRIES, n - 1)):
            yield int(rng.integers(n))
        for offset in range(1, n):
            yield (index + offset) % n

    def _load(self, path: Path, rng: np.random.Generator) -> tuple[np.ndarray, int, float]:
        """``(audio [C, S] float32, valid samples, start)``: ``start`` is where the crop begins in the file,
        in samples at ``sample_rate``. Raises AudioError/OSError for unusable files."""
        if self.segment_samples is None:
            audio = load_audio(path, self.sample_rate, self.channels).samples
            return audio, audio.shape[-1], 0.0
        if not Path(path).is_file():  # libsndfile would only say "System error"
            raise AudioError(f"{path}: {'is a directory, not an audio file' if Path(path).is_dir() else 'file not found'}")
        with sf.SoundFile(str(path)) as f:
            frames, source_rate = f.frames, f.samplerate
            if frames <= 0:
                raise AudioError(f"{path}: empty audio file (0 samples)")
            # Source frames covering one segment at the target rate.
            need = math.ceil(self.segment_samples * source_rate / self.sample_rate)
            crop_start = 0.0
            if frames <= need:
                audio = None  # short file: read it whole below (validated by load_audio)
            else:
                start = int(rng.integers(0, frames - need + 1)) if self.random_crop else 0
                context = 0 if source_rate == self.sample_rate else math.ceil(_RESAMPLE_CONTEXT_SECONDS * source_rate)
                left = min(context, start)
                stop = min(frames, start + need + context)
                f.seek(start - left)
                chunk = f.read(stop - start + left, dtype="float32", always_2d=True).T  # [C, n]
                if chunk.shape[-1] == 0:
                    raise AudioError(f"{path}: could not read frames {start}-{stop}")
                if not np.isfinite(chunk).all():
                    raise AudioError(f"{path}: audio contains NaN or Inf samples")
                audio = to_model_format(chunk, source_rate, self.sample_rate, self.channels)
                offset = round(left * self.sample_rate / source_rate)
                audio = audio[:, offset : offset + self.segment_samples]
                crop_start = start * self.sample_rate / source_rate
        if audio is None:
            audio = load_audio(path, self.sample_rate, self.channels).samples[:, : self.segment_samples]
        length = audio.shape[-1]
        if length < self.segment_samples:
            audio = np.pad(audio, ((0, 0), (0, self.segment_samples - length)))
        return audio.astype(np.float32, copy=False), length, crop_start


def collate_audio(items: Sequence[dict]) -> dict:
    """Batch dataset items of possibly different lengths.

    Returns ``{"audio": FloatTensor [B, C, S_max] (zero-padded), "lengths": LongTensor [B] (valid samples),
    "skipped": int (total over the batch)}``, and ``"pitch_f0"``/``"pitch_voiced"`` ``[B, T_max]`` (unvoiced
    padding) when the items carry pitch targets.
    """
    if not items:
        raise ValueError("collate_audio needs at least one item")
    longest = max(item["audio"].shape[-1] for item in items)
    channels = items[0]["audio"].shape[0]
    audio = torch.zeros(len(items), channels, longest, dtype=torch.float32)
    for b, item in enumerate(items):
        audio[b, :, : item["audio"].shape[-1]] = item["audio"]
    lengths = torch.tensor([int(item["length"]) for item in items], dtype=torch.long)
    batch = {"audio": audio, "lengths": lengths, "skipped": int(sum(item.get("skipped", 0) for item in items))}
    if "pitch_f0" in items[0]:
        frames = max(item["pitch_f0"].shape[-1] for item in items)
        batch["pitch_f0"] = torch.zeros(len(items), frames, dtype=torch.float32)
        batch["pitch_voiced"] = torch.zeros(len(items), frames, dtype=torch.bool)
        for b, item in enumerate(items):
            n = item["pitch_f0"].shape[-1]
            batch["pitch_f0"][b, :n], batch["pitch_voiced"][b, :n] = item["pitch_f0"], item["pitch_voiced"]
    return batch
