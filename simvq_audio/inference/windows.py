"""Frame-aligned chunks with context, for encoding and decoding long signals in bounded memory.

A long signal of ``T`` frames is cut into windows whose boundaries are whole frames
(multiples of the hop, so every intermediate stride of the encoder stays aligned). Each
window covers ``chunk_frames`` *kept* frames plus up to ``context_frames`` on each side;
the model sees the whole window and only the kept (centre) frames are used. When the
context is at least the model's receptive field, the kept frames of a convolutional model
equal those of whole-signal processing; an LSTM carries state across the whole signal, so
with one the match is only approximate (the left context warms the state up).

Units: ``Chunk`` fields are frames; sample positions are ``frame * hop``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import AudioError


@dataclass(frozen=True)
class Chunk:
    """A window ``[start, stop)`` of frames fed to the model, of which ``[keep_start, keep_stop)`` is kept.

    ``start <= keep_start < keep_stop <= stop``; the kept ranges of a plan tile ``[0, T)``.
    """

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def frames(self) -> int:
        """Frames in the window."""
        return self.stop - self.start

    @property
    def keep(self) -> slice:
        """The kept frames, relative to the window start."""
        return slice(self.keep_start - self.start, self.keep_stop - self.start)


def plan_chunks(n_frames: int, chunk_frames: int, context_frames: int) -> list[Chunk]:
    """Windows covering ``n_frames`` frames: one window when ``n_frames <= chunk_frames``, else
    kept ranges ``[i * chunk_frames, (i + 1) * chunk_frames)`` each widened by ``context_frames``
    on both sides (clipped to ``[0, n_frames)``)."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if chunk_frames < 1 or context_frames < 0:
        raise ValueError(f"need chunk_frames >= 1 and context_frames >= 0, got {chunk_frames}, {context_frames}")
    if n_frames <= chunk_frames:
        return [Chunk(0, n_frames, 0, n_frames)]
    chunks = []
    for keep_start in range(0, n_frames, chunk_frames):
        keep_stop = min(keep_start + chunk_frames, n_frames)
        chunks.append(
            Chunk(max(0, keep_start - context_frames), min(n_frames, keep_stop + context_frames), keep_start, keep_stop)
        )
    return chunks


def n_frames_for(n_samples: int, hop: int) -> int:
    """Frames for ``n_samples`` samples: ``ceil(n_samples / hop)``."""
    return -(-int(n_samples) // int(hop))


def window_samples(samples: np.ndarray, chunk: Chunk, hop: int, offset: int = 0) -> np.ndarray:
    """The samples ``[C, n]`` of ``chunk``'s window from ``samples [C, N]`` that start at absolute sample ``offset``."""
    return samples[:, chunk.start * hop - offset : chunk.stop * hop - offset]


def split_samples(samples: np.ndarray, hop: int, chunk_frames: int, context_frames: int) -> list[tuple[Chunk, np.ndarray]]:
    """Windows of an in-memory signal ``[C, N]`` (views, no copies), per ``plan_chunks``."""
    plan = plan_chunks(n_frames_for(samples.shape[-1], hop), chunk_frames, context_frames)
    return [(chunk, window_samples(samples, chunk, hop)) for chunk in plan]


class StreamChunker:
    """Cuts a stream of sample blocks ``[C, n]`` into the windows ``split_samples`` would give on the whole.

    ``push(block)`` returns the windows that are complete so far, ``finish()`` the rest once the
    length is known. It holds at most one window plus one block of samples, so an hour of audio
    never sits in memory.
    """

    def __init__(self, hop: int, chunk_frames: int, context_frames: int, channels: int):
        if hop < 1 or chunk_frames < 1 or context_frames < 0:
            raise ValueError("need hop >= 1, chunk_frames >= 1, context_frames >= 0")
        self.hop, self.chunk_frames, self.context_frames = hop, chunk_frames, context_frames
        self._buffer = np.zeros((channels, 0), dtype=np.float32)
        self._offset = 0  # absolute sample index of _buffer[:, 0]
        self._next_keep = 0  # first frame not yet emitted
        self._finished = False

    @property
    def n_samples(self) -> int:
        """Samples received so far."""
        return self._offset + self._buffer.shape[-1]

    def _emit(self, chunk: Chunk) -> tuple[Chunk, np.ndarray]:
        window = window_samples(self._buffer, chunk, self.hop, self._offset).copy()
        self._next_keep = chunk.keep_stop
        # Keep only what later windows can still need: their left context starts here.
        drop = max(0, (self._next_keep - self.context_frames) * self.hop - self._offset)
        self._buffer = self._buffer[:, drop:]
        self._offset += drop
        return chunk, window

    def push(self, block: np.ndarray) -> list[tuple[Chunk, np.ndarray]]:
        """Add ``block [C, n]``; returns the windows now complete (none may be)."""
        if self._finished:
            raise RuntimeError("push after finish")
        self._buffer = np.concatenate([self._buffer, np.asarray(block, dtype=np.float32)], axis=-1)
        out = []
        while True:
            keep_start = self._next_keep
            keep_stop = keep_start + self.chunk_frames
            stop = keep_stop + self.context_frames
            # Emit only windows that are surely full: then the signal has more than chunk_frames
            # frames and the whole-signal plan has exactly this window.
            if stop * self.hop > self.n_samples:
                return out
            out.append(self._emit(Chunk(max(0, keep_start - self.context_frames), stop, keep_start, keep_stop)))

    def finish(self) -> list[tuple[Chunk, np.ndarray]]:
        """The remaining windows; the stream has ended. Empty if no samples were pushed."""
        self._finished = True
        n = self.n_samples
        if n == 0:
            return []
        plan = plan_chunks(n_frames_for(n, self.hop), self.chunk_frames, self.context_frames)
        return [self._emit(chunk) for chunk in plan if chunk.keep_start >= self._next_keep]


def check_length(n_samples: int, hop: int, sample_rate: int, label: str) -> None:
    """``AudioError`` for audio with no samples or shorter than one frame (``hop`` samples)."""
    if n_samples == 0:
        raise AudioError(f"{label}: contains no samples (empty audio)")
    if n_samples < hop:
        raise AudioError(f"{label}: shorter than one frame ({n_samples} samples < hop {hop} at {sample_rate} Hz)")


def iter_windows(blocks: Iterator[np.ndarray], chunker: StreamChunker) -> Iterator[tuple[Chunk, np.ndarray]]:
    """All windows of a block stream, lazily."""
    for block in blocks:
        yield from chunker.push(block)
    yield from chunker.finish()
