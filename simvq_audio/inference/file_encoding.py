"""Audio files -> token files, in bounded memory whatever their length.

``FileWindows`` reads one file as the windows of ``windows.split_samples`` (streaming long files from
disk and resampling them exactly on the fly); ``encode_files`` batches the windows of many files,
shortest files first, and yields each file's ``TokenFile`` as soon as its last window is encoded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio.io import AudioInfo, StreamResampler, iter_audio_blocks, load_audio, read_audio_info
from ..errors import AudioError
from ..models.spec import ModelSpec, codes_dtype
from ..tokens.format import TokenFile
from ..tokens.header import TokenHeader, source_format_problem
from .batching import Batcher
from .windows import Chunk, StreamChunker, check_length, iter_windows, n_frames_for, split_samples

READ_BLOCK_SECONDS = 10.0  # file blocks read at a time when streaming

Progress = Callable[[float], None]


class FileWindows:
    """The windows of one audio file at a model's rate and channel count, as ``(Chunk, samples [C, n])``.

    Files that fit in one window are read whole (``load_audio``); longer ones are streamed from disk
    in blocks, downmixed and resampled exactly on the fly (``StreamResampler``), so they never sit in
    memory. Either way the windows equal ``split_samples`` on the whole converted signal. After
    iteration, ``n_samples`` (model rate) and ``original_n_samples`` (file rate) are set.
    Raises ``AudioError`` (naming the file) while iterating.
    """

    def __init__(self, path: Path, info: AudioInfo, sample_rate: int, channels: int, hop: int,
                 chunk_frames: int, context_frames: int):
        self.path, self.info = Path(path), info
        self.sample_rate, self.channels, self.hop = sample_rate, channels, hop
        self.chunk_frames, self.context_frames = chunk_frames, context_frames
        self.n_samples = 0
        self.original_n_samples = 0

    def __iter__(self) -> Iterator[tuple[Chunk, np.ndarray]]:
        expected = int(self.info.frames * self.sample_rate / self.info.sample_rate)
        if n_frames_for(expected, self.hop) <= self.chunk_frames:
            audio = load_audio(self.path, self.sample_rate, self.channels)
            self.n_samples, self.original_n_samples = audio.samples.shape[-1], audio.original_n_samples
            check_length(self.n_samples, self.hop, self.sample_rate, str(self.path))
            yield from split_samples(audio.samples, self.hop, self.chunk_frames, self.context_frames)
            return
        chunker = StreamChunker(self.hop, self.chunk_frames, self.context_frames, self.channels)
        yield from iter_windows(self._blocks(chunker), chunker)
        self.n_samples = chunker.n_samples

    def _blocks(self, chunker: StreamChunker) -> Iterator[np.ndarray]:
        resampler = StreamResampler(self.info.sample_rate, self.sample_rate, self.channels)
        block_samples = max(1, int(READ_BLOCK_SECONDS * self.info.sample_rate))
        for block in iter_audio_blocks(self.path, block_samples, channels=self.channels):
            self.original_n_samples += block.shape[-1]
            yield resampler.process(block)
        yield resampler.process(np.zeros((self.channels, 0), np.float32), last=True)
        check_length(chunker.n_samples, self.hop, self.sample_rate, str(self.path))


@dataclass
class _FileJob:
    """Bookkeeping for one file: its windows, kept codes by first frame, windows in flight."""

    path: Path
    windows: FileWindows
    parts: dict[int, torch.Tensor] = field(default_factory=dict)
    outstanding: int = 0
    read_done: bool = False


def _token_file(job: _FileJob, spec: ModelSpec, channels: int) -> TokenFile:
    codes = torch.cat([job.parts[k] for k in sorted(job.parts)], dim=-1)
    expected = n_frames_for(job.windows.n_samples, spec.hop_length)
    if codes.shape[-1] != expected:  # a bug, not an input problem
        raise RuntimeError(f"{job.path}: {codes.shape[-1]} frames assembled, expected {expected}")
    header = TokenHeader.of(spec, channels=channels, n_frames=expected, n_samples=job.windows.n_samples,
                            original_sample_rate=job.windows.info.sample_rate,
                            original_n_samples=job.windows.original_n_samples,
                            original_channels=job.windows.info.channels, source=job.path.name)
    return TokenFile(header=header, codes=codes.numpy().astype(codes_dtype(spec.codebook_size)))


def _open_jobs(batcher: Batcher, paths: Iterable[str | os.PathLike],
               failed: list[tuple[Path, AudioError]]) -> list[_FileJob]:
    """A job per readable file, shortest first; files that cannot be read go to ``failed``."""
    s = batcher.settings
    jobs = []
    for path in paths:
        path = Path(path)
        try:
            info = read_audio_info(path)
            problem = source_format_problem(info.sample_rate, info.channels)
            if problem:
                raise AudioError(f"{path}: {problem}")
            windows = FileWindows(path, info, batcher.model.sample_rate, batcher.channels, batcher.hop_length,
                                  s.chunk_frames, s.context_frames)
            jobs.append(_FileJob(path, windows))
        except AudioError as exc:
            failed.append((path, exc))
    return sorted(jobs, key=lambda j: j.windows.info.duration)


def encode_files(batcher: Batcher, spec: ModelSpec, paths: Iterable[str | os.PathLike],
                 batch_size: int | None = None,
                 on_progress: Progress | None = None) -> Iterator[tuple[Path, TokenFile | AudioError]]:
    """Encode audio files; yields ``(path, TokenFile)`` or ``(path, AudioError)`` per file, in no fixed order.

    Files are sorted by duration and their windows batched across files; long files are streamed from
    disk in blocks and resampled exactly on the fly, so memory is bounded by the batch (``batch_size``
    windows, ``max_batch_samples``), whatever the file lengths. ``on_progress(seconds)`` is called after
    each batch with the seconds of audio it completed. Errors caused by a file never stop the others.
    """
    batch_size = batch_size or batcher.settings.batch_size
    limit = batcher.settings.max_batch_samples
    failed: list[tuple[Path, AudioError]] = []
    jobs = _open_jobs(batcher, paths, failed)
    yield from failed
    pending: list[tuple[_FileJob, Chunk, np.ndarray]] = []

    def flush() -> Iterator[tuple[Path, TokenFile]]:
        """Encode the pending windows (emptying the list); yield the files this completes."""
        batch = list(pending)
        pending.clear()
        kept = 0
        for (job, chunk, _), codes in zip(batch, batcher.encode_windows([p[2] for p in batch]), strict=True):
            job.parts[chunk.keep_start] = codes[:, chunk.keep]
            job.outstanding -= 1
            kept += chunk.keep_stop - chunk.keep_start
        if on_progress is not None:
            on_progress(kept / spec.frame_rate)
        done = {id(job): job for job, _, _ in batch if job.read_done and job.outstanding == 0}
        for job in done.values():
            yield job.path, _token_file(job, spec, batcher.channels)

    for job in jobs:
        try:
            for chunk, window in job.windows:
                widest = max([window.shape[-1]] + [p[2].shape[-1] for p in pending])
                if pending and (len(pending) + 1) * widest > limit:
                    yield from flush()
                pending.append((job, chunk, window))
                job.outstanding += 1
                if len(pending) >= batch_size:
                    yield from flush()
        except AudioError as exc:
            pending[:] = [p for p in pending if p[0] is not job]
            yield job.path, exc
            continue
        job.read_done = True
        if job.outstanding == 0:
            yield job.path, _token_file(job, spec, batcher.channels)
    if pending:
        yield from flush()
