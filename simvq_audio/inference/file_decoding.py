"""Token files -> audio at each file's original rate, channel count and length.

Short files are decoded in memory, several per batch; long ones (``should_stream``) window by window
straight to an audio file, so memory is bounded by the batch whatever the file's length.
``decode_files`` takes many token files and hands each back as a ``DecodedFile`` to write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.io import StreamResampler, to_model_format
from ..audio.write import open_audio_writer, write_audio
from ..errors import AudioError, SimVQError, TokenFileError
from ..models.spec import ModelSpec
from ..tokens.format import TokenFile, read_tokens
from ..tokens.header import TokenHeader
from .batching import Batcher
from .inputs import check_codes
from .windows import plan_chunks

# Streamed decoding yields blocks of at most this many values (channels x samples at the original rate),
# so memory stays bounded whatever the original rate and channel count (16 MB of float32).
MAX_DECODE_BLOCK_VALUES = 1 << 22


def check_tokens(spec: ModelSpec, channels: int, header: TokenHeader, force: bool = False,
                 name: str | None = None) -> None:
    """Raise ``TokenFileError`` unless ``header`` was written by the model of ``spec`` (``force``: any
    compatible one: same rate, hop, codebook size and channels, no more codebooks)."""
    label = name or f"tokens of {header.source or 'unknown source'}"
    if header.model_id != spec.model_id and not force:
        raise TokenFileError(
            f"{label}: made by model {header.model_id} ({header.model_name}), not by the loaded model "
            f"{spec.model_id} ({spec.model_name}); decode with that model, or decode anyway with --force "
            f"(force=True in Python) if it is compatible"
        )
    if header.n_frames < 1:
        raise TokenFileError(f"{label}: holds no frames (an empty token file): nothing to decode")
    mine = (spec.sample_rate, spec.hop_length, spec.codebook_size, channels)
    theirs = (header.sample_rate, header.hop_length, header.codebook_size, header.channels)
    if mine != theirs or header.n_codebooks > spec.n_codebooks:
        raise TokenFileError(
            f"{label}: incompatible with the loaded model (rate, hop, codebook size, channels "
            f"{theirs} vs {mine}; {header.n_codebooks} codebooks vs {spec.n_codebooks})"
        )


def should_stream(batcher: Batcher, header: TokenHeader) -> bool:
    """Whether to decode ``header``'s file window by window to disk rather than in memory: it has more
    frames than one window, or its output (original rate and channels) is over 4x a window's audio."""
    chunk_frames = batcher.settings.chunk_frames
    rate = batcher.model.sample_rate
    window = chunk_frames * batcher.hop_length / rate  # seconds
    per_second = header.original_sample_rate * header.original_channels
    return header.n_frames > chunk_frames or header.duration * per_second > 4 * window * rate


def _resampled_channels(channels: int, header: TokenHeader) -> int:
    """Channels at the resampler: a mono model's output is resampled once and then copied."""
    return 1 if channels == 1 else header.original_channels


def _to_original_format(audio: np.ndarray, header: TokenHeader, resampler: StreamResampler | None = None,
                        last: bool = False) -> np.ndarray:
    """Model-format audio ``[C, n]`` -> ``[original_channels, n']`` at the original rate (whole, or one
    block through ``resampler``). Mono is resampled before it is copied to more channels, anything
    else mixed down first, so soxr always works on the fewer channels, in both paths alike."""
    work = _resampled_channels(audio.shape[0], header)
    audio = to_model_format(audio, header.sample_rate, None, work)
    if resampler is None:
        audio = to_model_format(audio, header.sample_rate, header.original_sample_rate, None)
    else:
        audio = resampler.process(audio, last=last)
    return to_model_format(audio, header.original_sample_rate, None, header.original_channels)


def _fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``[C, N]`` to ``n`` samples (resampling may round the length by a sample)."""
    if audio.shape[-1] >= n:
        return audio[:, :n]
    return np.pad(audio, ((0, 0), (0, n - audio.shape[-1])))


def _codes(batcher: Batcher, token_file: TokenFile, name: str | None):
    model = batcher.model
    return check_codes(token_file.codes.astype(np.int64), model.n_codebooks, model.codebook_size, name or "tokens")


def decode_token_files(batcher: Batcher, token_files: list[TokenFile],
                       name: str | None = None) -> list[tuple[np.ndarray, int]]:
    """Checked token files -> ``(audio [C_orig, N_orig] float32, original_rate)`` each, in memory,
    decoded in batches: the original rate, channels (mono output copied to each) and length."""
    codes = [_codes(batcher, tf, name) for tf in token_files]
    audio = batcher.decode_items(codes)
    out = []
    for a, tf in zip(audio, token_files, strict=True):
        original = _to_original_format(a[:, : tf.header.n_samples].numpy(), tf.header)
        out.append((_fit_length(original, tf.header.original_n_samples), tf.header.original_sample_rate))
    return out


def iter_decode_tokens(batcher: Batcher, token_file: TokenFile, name: str | None = None) -> Iterator[np.ndarray]:
    """Decode a checked token file window by window: blocks ``[C_orig, n]`` at the original rate whose
    concatenation is the in-memory decoding; memory is bounded by the batch."""
    header, s, hop = token_file.header, batcher.settings, batcher.hop_length
    codes = _codes(batcher, token_file, name)
    chunks = plan_chunks(codes.shape[-1], s.chunk_frames, s.context_frames)
    offsets = batcher.phase_offsets(codes, chunks) or [0.0] * len(chunks)
    resampler = StreamResampler(header.sample_rate, header.original_sample_rate,
                                _resampled_channels(batcher.channels, header))
    remaining_in, remaining_out = header.n_samples, header.original_n_samples
    # Model-rate samples per block: what becomes at most MAX_DECODE_BLOCK_VALUES at the original format.
    step = max(hop, int(MAX_DECODE_BLOCK_VALUES * header.sample_rate
                        / (header.original_sample_rate * header.original_channels)))
    # Consecutive windows per batch, in signal order, so blocks can be streamed out.
    widest = max(c.frames for c in chunks) * hop
    per_batch = max(1, min(s.batch_size, s.max_batch_samples // widest))
    for first in range(0, len(chunks), per_batch):
        group = range(first, min(first + per_batch, len(chunks)))
        audio = batcher.decode_windows([codes[:, chunks[k].start : chunks[k].stop] for k in group],
                                       [offsets[k] for k in group], [chunks[k].start for k in group])
        for k, a in zip(group, audio, strict=True):
            kept = batcher.kept_audio(a, chunks[k]).numpy()[:, :remaining_in]
            for start in range(0, kept.shape[-1], step):
                piece = kept[:, start : start + step]
                remaining_in -= piece.shape[-1]
                block = _to_original_format(piece, header, resampler, last=remaining_in == 0)
                block = block[:, :remaining_out]
                remaining_out -= block.shape[-1]
                yield block
    if remaining_out > 0:  # resampling rounds the length; pad the last few samples
        yield np.zeros((header.original_channels, remaining_out), np.float32)


def decode_to_file(batcher: Batcher, token_file: TokenFile, path: str | os.PathLike, name: str | None = None,
                   subtype: str = "PCM_16") -> None:
    """Decode a checked token file straight to an audio file (WAV or FLAC by extension), window by
    window, atomically. A failed write (a full disk) is an ``AudioError`` naming ``path`` and the
    system's reason."""
    path = Path(path)
    if path.suffix.lower() not in (".wav", ".flac"):
        raise AudioError(f"{path}: streamed decoding writes .wav or .flac files")
    header = token_file.header
    with open_audio_writer(path, header.original_sample_rate, header.original_channels, subtype) as writer:
        for block in iter_decode_tokens(batcher, token_file, name=name):
            writer.write(block)


@dataclass
class DecodedFile:
    """One token file's audio, ready to write: decoded in memory (``audio [C_orig, N_orig]`` at
    ``sample_rate``), or, for a long file (``audio is None``), decoded window by window by ``write``."""

    source: Path
    token_file: TokenFile
    audio: np.ndarray | None
    _batcher: Batcher

    @property
    def sample_rate(self) -> int:
        """The original rate (Hz): the rate of ``audio`` and of the written file."""
        return self.token_file.header.original_sample_rate

    def write(self, path: str | os.PathLike) -> None:
        """Write the audio to ``path`` (16-bit PCM; format by extension); ``AudioError`` on failure."""
        if self.audio is None:
            decode_to_file(self._batcher, self.token_file, path, name=str(self.source))
        else:
            write_audio(path, self.audio, self.sample_rate)


def decode_files(batcher: Batcher, spec: ModelSpec, paths: Iterable[str | os.PathLike],
                 force: bool = False) -> Iterator[tuple[Path, DecodedFile | SimVQError]]:
    """Decode ``.svqt`` files; yields ``(path, DecodedFile)`` or ``(path, SimVQError)`` per file.

    Short files are decoded in batches of ``batch_size`` before they are handed out; long ones are
    handed out at once and decoded window by window while their ``write`` runs. A file that cannot be
    read, or that another model made (unless ``force``), never stops the others.
    """
    batch: list[tuple[Path, TokenFile]] = []

    def flush() -> Iterator[tuple[Path, DecodedFile]]:
        decoded = decode_token_files(batcher, [tf for _, tf in batch])
        for (path, tf), (audio, _) in zip(batch, decoded, strict=True):
            yield path, DecodedFile(path, tf, audio, batcher)
        batch.clear()

    for path in paths:
        path = Path(path)
        try:
            tf = read_tokens(path)
            check_tokens(spec, batcher.channels, tf.header, force=force, name=str(path))
        except SimVQError as exc:
            yield path, exc
            continue
        if should_stream(batcher, tf.header):
            yield path, DecodedFile(path, tf, None, batcher)
            continue
        batch.append((path, tf))
        if len(batch) >= batcher.settings.batch_size:
            yield from flush()
    if batch:
        yield from flush()
