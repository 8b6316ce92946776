"""Audio <-> tokens with a trained codec: batched, chunked for long audio, with token files.

``Tokenizer`` wraps a ``SimVQCodec`` for inference. In memory, ``encode`` turns audio at
any rate and channel count into codes ``[n_q, T]`` and ``decode`` turns codes back into
audio at the model's rate. On disk, ``encode_files`` / ``encode_file`` read audio files
(streaming long ones from disk) into ``TokenFile``s, and ``decode_tokens`` /
``iter_decode_tokens`` / ``decode_to_file`` give the audio back at the file's original
rate, channel count and length.

Batching: items are sorted by length, zero-padded and passed with their ``lengths``, so
each item's codes equal those of the item alone. Long items are cut into frame-aligned
windows with context (``simvq_audio.chunking``), so memory is bounded by the batch, never
by the file.

Tokens are exactly independent of the batch on a CPU: there each window of audio goes through
the encoder alone (``batch_invariant``), which is also faster there than a padded batch. On a
GPU windows share a forward pass, whose float rounding differs from a window alone by ~1e-7;
the nearest-code search is exact (``quantization.search``), so a token differs only when a
frame lies within that distance of the boundary between two codes (0 of 87,167 dev tokens with
padded batches on a CPU; see BENCHMARKS.md). ``batch_invariant=True`` makes a GPU exact too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio.io import StreamResampler, read_audio_info, to_model_format
from .chunking import (
    Chunk,
    FileWindows,
    batch_groups,
    check_length,
    n_frames_for,
    plan_chunks,
    release_freed_memory,
    split_samples,
)
from .errors import AudioError, SimVQError, TokenFileError
from .models.codec import SimVQCodec
from .tokens.format import (
    TokenFile,
    TokenHeader,
    codes_dtype,
    read_tokens,
    source_format_problem,
    write_tokens,
)

DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_CONTEXT_SECONDS = 2.0
# Zero-padded audio per forward pass. Activations of the default-size model take ~10 MB per second
# of 16 kHz audio in float32, so 60 s keeps CPU encoding of any file length near 1 GB of RSS.
DEFAULT_MAX_BATCH_SECONDS = {"cpu": 60.0, "cuda": 240.0}
# Streamed decoding yields blocks of at most this many values (channels x samples at the original rate),
# so memory stays bounded whatever the original rate and channel count (16 MB of float32).
MAX_DECODE_BLOCK_VALUES = 1 << 22

Progress = Callable[[float], None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; ``"cuda"`` without CUDA is a ``SimVQError``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SimVQError(f"unknown device {device!r} (use auto, cpu or cuda)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SimVQError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    return device


@dataclass
class _FileJob:
    """Bookkeeping for one file of ``encode_files``: its windows, kept codes by first frame, windows in flight."""

    path: Path
    windows: FileWindows
    parts: dict[int, torch.Tensor] = field(default_factory=dict)
    outstanding: int = 0
    read_done: bool = False


class Tokenizer:
    """Encode audio to integer tokens and decode them back with a ``SimVQCodec``.

    Every model call runs under ``torch.inference_mode()``; what comes back is ordinary CPU tensors
    or numpy arrays (safe to modify, whatever the device).

    Args:
        model: the codec (moved to ``device`` and put in eval mode).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        batch_size: items (or windows of long items) per forward pass.
        chunk_seconds: audio longer than this is processed in windows of this many seconds ...
        context_seconds: ... plus this much context on each side (discarded after the model).
        max_batch_seconds: bound on a zero-padded batch (seconds of audio at the model rate), for memory;
            default 60 on CPU, 240 on CUDA.
        batch_invariant: encode each window in a forward pass of its own, so that its tokens are
            bit-identical whatever else is encoded with it; default: on a CPU (where it is also the
            faster way), not on CUDA. Decoding is batched either way.
    """

    def __init__(
        self,
        model: SimVQCodec,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        context_seconds: float = DEFAULT_CONTEXT_SECONDS,
        max_batch_seconds: float | None = None,
        batch_invariant: bool | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._device = resolve_device(device)
        if max_batch_seconds is None:
            max_batch_seconds = DEFAULT_MAX_BATCH_SECONDS.get(self._device.type, DEFAULT_MAX_BATCH_SECONDS["cpu"])
        if chunk_seconds <= 0 or context_seconds < 0 or max_batch_seconds <= 0:
            raise ValueError("need chunk_seconds > 0, context_seconds >= 0 and max_batch_seconds > 0")
        self._model = model.to(self._device).eval()
        self._model_id = model.model_id  # hashes every weight: compute once
        self.batch_size = int(batch_size)
        self.batch_invariant = self._device.type == "cpu" if batch_invariant is None else bool(batch_invariant)
        self.chunk_frames = max(1, round(chunk_seconds * model.frame_rate))
        self.context_frames = int(np.ceil(context_seconds * model.frame_rate))
        self.max_batch_samples = max(1, int(max_batch_seconds * model.sample_rate))

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike = "default", device: str | torch.device = "auto",
                        **kwargs) -> Tokenizer:
        """Load a model folder or a built-in model by name; ``kwargs`` go to ``Tokenizer``."""
        return cls(SimVQCodec.from_pretrained(path_or_name, device="cpu"), device=device, **kwargs)

    # -- properties ----------------------------------------------------------------------------
    @property
    def model(self) -> SimVQCodec:
        return self._model

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model_name(self) -> str:
        return self._model.config.name

    @property
    def sample_rate(self) -> int:
        """Model rate (Hz)."""
        return self._model.sample_rate

    @property
    def frame_rate(self) -> float:
        """Frames (tokens per codebook) per second."""
        return self._model.frame_rate

    @property
    def hop_length(self) -> int:
        """Samples per frame at the model rate."""
        return self._model.hop_length

    @property
    def codebook_size(self) -> int:
        return self._model.codebook_size

    @property
    def n_codebooks(self) -> int:
        return self._model.n_codebooks

    @property
    def channels(self) -> int:
        return self._model.channels

    @property
    def bitrate(self) -> float:
        """Bits per second."""
        return self._model.bitrate

    @property
    def device(self) -> torch.device:
        return self._device

    # -- batched model calls -------------------------------------------------------------------------
    def _encode_windows(self, windows: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Windows ``[C, n_i]`` -> codes ``[n_q, ceil(n_i / hop)]`` (CPU, int64): one forward pass, or one
        per window when ``batch_invariant``."""
        if self.batch_invariant and len(windows) > 1:
            return [codes for w in windows for codes in self._encode_windows([w])]
        lengths = [w.shape[-1] for w in windows]
        x = torch.zeros(len(windows), self.channels, max(lengths))
        for i, w in enumerate(windows):
            x[i, :, : lengths[i]] = torch.from_numpy(np.ascontiguousarray(w))
        mask = None if len(set(lengths)) == 1 else torch.tensor(lengths)
        with torch.inference_mode():
            codes = self._model.encode(x.to(self._device), lengths=mask).cpu()
        release_freed_memory()
        return [codes[i, :, : n_frames_for(n, self.hop_length)] for i, n in enumerate(lengths)]

    def _decode_windows(self, windows: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One forward pass over codes ``[n_q, T_i]`` -> audio ``[C, T_i * hop]`` (CPU, float32)."""
        frames = [w.shape[-1] for w in windows]
        codes = torch.zeros(len(windows), windows[0].shape[0], max(frames), dtype=torch.long)
        for i, w in enumerate(windows):
            codes[i, :, : frames[i]] = w
        mask = None if len(set(frames)) == 1 else torch.tensor(frames)
        with torch.inference_mode():
            audio = self._model.decode(codes.to(self._device), frame_lengths=mask).float().cpu()
        release_freed_memory()
        return [audio[i, :, : t * self.hop_length] for i, t in enumerate(frames)]

    def _groups(self, sizes: list[int], batch_size: int | None = None) -> list[list[int]]:
        return batch_groups(sizes, batch_size or self.batch_size, self.max_batch_samples)

    # -- in memory ---------------------------------------------------------------------------------
    def _prepare(self, wav, sample_rate: int | None, label: str) -> np.ndarray:
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu()
            # Integer PCM stays integer so that to_model_format scales it; half/bfloat16 become float32.
            wav = (wav.float() if wav.is_floating_point() else wav).numpy()
        samples = self._channels_first(np.asarray(wav), label)
        samples = to_model_format(samples, sample_rate or self.sample_rate, self.sample_rate, self.channels)
        if not np.isfinite(samples).all():
            raise AudioError(f"{label}: contains NaN or infinite samples")
        self._check_length(samples.shape[-1], label)
        return samples

    def _channels_first(self, wav: np.ndarray, label: str) -> np.ndarray:
        """``[N]`` or ``[C, N]`` as given; soundfile's ``[N, C]`` (many samples of a few channels) transposed.

        Anything else is refused rather than guessed: a ``[4, N]`` array may be a batch of four items,
        which mixing down as four channels would silently average into one sequence.
        """
        allowed = max(2, self.channels)
        if wav.ndim == 1 or (wav.ndim == 2 and wav.shape[0] <= allowed):
            return wav
        if wav.ndim == 2 and wav.shape[1] <= allowed:
            return wav.T
        shape = tuple(wav.shape)
        raise AudioError(
            f"{label}: audio shaped {shape} is neither [N] nor [C, N] (or [N, C]) with at most {allowed} "
            f"channels; pass a batch as a list of items (e.g. list(x)), and mix more channels down first "
            f"(e.g. x.mean(axis=0) for [C, N])"
        )

    def _check_length(self, n: int, label: str) -> None:
        check_length(n, self.hop_length, self.sample_rate, label)

    def encode(self, wav, sample_rate: int | Sequence[int] | None = None, batch_size: int | None = None):
        """Audio -> codes ``LongTensor [n_q, ceil(N / hop)]`` (N: samples at the model rate).

        ``wav``: numpy array or tensor ``[N]`` or ``[C, N]`` (soundfile's ``[N, C]`` is accepted too) with
        at most 2 channels (or the model's count), float or integer PCM, at ``sample_rate`` (default: the
        model rate); it is downmixed/resampled to the model's format. A list of such arrays (with one rate
        or a list of rates) gives a list of code tensors, batched by length; each equals the item
        encoded alone. Raises ``AudioError`` for NaN/Inf, empty or shorter-than-one-frame audio, and for
        a 2-D array with more rows and columns than channels (a batch? pass a list).
        """
        single = not isinstance(wav, (list, tuple))
        wavs = [wav] if single else list(wav)
        rates = list(sample_rate) if isinstance(sample_rate, (list, tuple)) else [sample_rate] * len(wavs)
        if len(rates) != len(wavs):
            raise ValueError(f"{len(wavs)} items but {len(rates)} sample rates")
        items = [self._prepare(w, r, "audio" if single else f"audio item {i}") for i, (w, r) in enumerate(zip(wavs, rates, strict=True))]
        codes = self._encode_items(items, batch_size)
        return codes[0] if single else codes

    def _encode_items(self, items: list[np.ndarray], batch_size: int | None = None) -> list[torch.Tensor]:
        work = [(i, chunk, window) for i, item in enumerate(items)
                for chunk, window in split_samples(item, self.hop_length, self.chunk_frames, self.context_frames)]
        parts: list[dict[int, torch.Tensor]] = [{} for _ in items]
        for group in self._groups([w[2].shape[-1] for w in work], batch_size):
            codes = self._encode_windows([work[k][2] for k in group])
            for k, c in zip(group, codes, strict=True):
                i, chunk, _ = work[k]
                parts[i][chunk.keep_start] = c[:, chunk.keep]
        return [torch.cat([p[k] for k in sorted(p)], dim=-1) for p in parts]

    def _check_codes(self, codes, label: str) -> torch.Tensor:
        codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes).cpu()
        if codes.dim() != 2 or not 1 <= codes.shape[0] <= self.n_codebooks or codes.shape[1] < 1:
            hint = "; pass a batch as a list of [n_q, T] items" if codes.dim() == 3 else ""
            raise TokenFileError(f"{label}: expected codes [n_q <= {self.n_codebooks}, T >= 1], "
                                 f"got {tuple(codes.shape)}{hint}")
        if codes.is_floating_point() or codes.is_complex():
            raise TokenFileError(f"{label}: codes must be integers, got {codes.dtype}")
        codes = codes.long()
        if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
            raise TokenFileError(f"{label}: codes must be in [0, {self.codebook_size}), got "
                                 f"[{int(codes.min())}, {int(codes.max())}]")
        return codes

    def decode(self, codes, length: int | Sequence[int | None] | None = None, batch_size: int | None = None):
        """Codes ``[n_q, T]`` (tensor or numpy) -> audio ``FloatTensor [C, length]`` at the model rate.

        ``length`` defaults to ``T * hop``. A list of codes (and optionally a list of lengths) gives a
        list, decoded in length-sorted batches; each equals the item decoded alone.
        """
        single = not isinstance(codes, (list, tuple))
        items = [codes] if single else list(codes)
        lengths = list(length) if isinstance(length, (list, tuple)) else [length] * len(items)
        if len(lengths) != len(items):
            raise ValueError(f"{len(items)} items but {len(lengths)} lengths")
        items = [self._check_codes(c, "codes" if single else f"codes item {i}") for i, c in enumerate(items)]
        for i, (c, n) in enumerate(zip(items, lengths, strict=True)):
            if n is not None and not 1 <= n <= c.shape[-1] * self.hop_length:
                raise ValueError(f"length of item {i} must be in [1, {c.shape[-1] * self.hop_length}], got {n}")
        audio = self._decode_items(items, batch_size)
        audio = [a if n is None else a[:, :n] for a, n in zip(audio, lengths, strict=True)]
        return audio[0] if single else audio

    def _decode_items(self, items: list[torch.Tensor], batch_size: int | None = None) -> list[torch.Tensor]:
        work = [(i, chunk) for i, item in enumerate(items)
                for chunk in plan_chunks(item.shape[-1], self.chunk_frames, self.context_frames)]
        parts: list[dict[int, torch.Tensor]] = [{} for _ in items]
        for group in self._groups([work[k][1].frames * self.hop_length for k in range(len(work))], batch_size):
            windows = [items[work[k][0]][:, work[k][1].start : work[k][1].stop] for k in group]
            for k, audio in zip(group, self._decode_windows(windows), strict=True):
                i, chunk = work[k]
                parts[i][chunk.keep_start] = self._kept_audio(audio, chunk)
        return [torch.cat([p[k] for k in sorted(p)], dim=-1) for p in parts]

    def _kept_audio(self, audio: torch.Tensor, chunk: Chunk) -> torch.Tensor:
        keep = chunk.keep
        return audio[:, keep.start * self.hop_length : keep.stop * self.hop_length]

    # -- files: encoding ---------------------------------------------------------------------------
    def _header(self, job: _FileJob, n_frames: int) -> TokenHeader:
        return TokenHeader(
            model_id=self.model_id,
            model_name=self.model_name,
            sample_rate=self.sample_rate,
            frame_rate=float(self.frame_rate),
            hop_length=self.hop_length,
            codebook_size=self.codebook_size,
            n_codebooks=self.n_codebooks,
            n_frames=n_frames,
            n_samples=job.windows.n_samples,
            original_sample_rate=job.windows.info.sample_rate,
            original_n_samples=job.windows.original_n_samples,
            channels=self.channels,
            original_channels=job.windows.info.channels,
            dtype=np.dtype(codes_dtype(self.codebook_size)).name,
            source=job.path.name,
        )

    def _finish_job(self, job: _FileJob) -> TokenFile:
        codes = torch.cat([job.parts[k] for k in sorted(job.parts)], dim=-1)
        expected = n_frames_for(job.windows.n_samples, self.hop_length)
        if codes.shape[-1] != expected:  # a bug, not an input problem
            raise RuntimeError(f"{job.path}: {codes.shape[-1]} frames assembled, expected {expected}")
        array = codes.numpy().astype(codes_dtype(self.codebook_size))
        return TokenFile(header=self._header(job, expected), codes=array)

    def encode_files(self, paths: Iterable[str | os.PathLike], batch_size: int | None = None,
                     on_progress: Progress | None = None) -> Iterator[tuple[Path, TokenFile | Exception]]:
        """Encode audio files; yields ``(path, TokenFile)`` or ``(path, AudioError)`` per file, in no fixed order.

        Files are sorted by duration and their windows batched across files; long files are streamed from
        disk in blocks and resampled exactly on the fly, so memory is bounded by the batch (``batch_size``
        windows, ``max_batch_seconds``), whatever the file lengths. ``on_progress(seconds)`` is called after
        each batch with the seconds of audio it completed. Errors caused by a file never stop the others.
        """
        batch_size = batch_size or self.batch_size
        jobs = []
        for path in paths:
            path = Path(path)
            try:
                info = read_audio_info(path)
                problem = source_format_problem(info.sample_rate, info.channels)
                if problem:
                    raise AudioError(f"{path}: {problem}")
                windows = FileWindows(path, info, self.sample_rate, self.channels,
                                      self.hop_length, self.chunk_frames, self.context_frames)
                jobs.append(_FileJob(path, windows))
            except AudioError as exc:
                yield path, exc
        jobs.sort(key=lambda j: j.windows.info.duration)
        pending: list[tuple[_FileJob, Chunk, np.ndarray]] = []
        for job in jobs:
            try:
                for chunk, window in job.windows:
                    widest = max([window.shape[-1]] + [p[2].shape[-1] for p in pending])
                    if pending and (len(pending) + 1) * widest > self.max_batch_samples:
                        yield from self._flush(pending, on_progress)
                    pending.append((job, chunk, window))
                    job.outstanding += 1
                    if len(pending) >= batch_size:
                        yield from self._flush(pending, on_progress)
            except AudioError as exc:
                pending[:] = [p for p in pending if p[0] is not job]
                yield job.path, exc
                continue
            job.read_done = True
            if job.outstanding == 0:
                yield job.path, self._finish_job(job)
        if pending:
            yield from self._flush(pending, on_progress)

    def _flush(self, pending: list, on_progress: Progress | None) -> Iterator[tuple[Path, TokenFile]]:
        """Encode the pending windows (emptying the list); yield the files this completes."""
        batch = list(pending)
        pending.clear()
        kept = 0
        for (job, chunk, _), codes in zip(batch, self._encode_windows([p[2] for p in batch]), strict=True):
            job.parts[chunk.keep_start] = codes[:, chunk.keep]
            job.outstanding -= 1
            kept += chunk.keep_stop - chunk.keep_start
        if on_progress is not None:
            on_progress(kept / self.frame_rate)
        done = {id(job): job for job, _, _ in batch if job.read_done and job.outstanding == 0}
        for job in done.values():
            yield job.path, self._finish_job(job)

    def encode_file(self, path: str | os.PathLike) -> TokenFile:
        """Encode one audio file (any rate/channels; long files streamed); raises ``AudioError``."""
        for _, result in self.encode_files([path]):
            if isinstance(result, Exception):
                raise result
            return result
        raise AssertionError("encode_files yielded nothing")

    # -- files: decoding ---------------------------------------------------------------------------
    def check_tokens(self, header: TokenHeader, force: bool = False, name: str | None = None) -> None:
        """Raise ``TokenFileError`` unless ``header`` was written by this model (``force``: any compatible one)."""
        label = name or f"tokens of {header.source or 'unknown source'}"
        if header.model_id != self.model_id and not force:
            raise TokenFileError(
                f"{label}: made by model {header.model_id} ({header.model_name}), not by the loaded model "
                f"{self.model_id} ({self.model_name}); decode with that model, or decode anyway with --force "
                f"(force=True in Python) if it is compatible"
            )
        if header.n_frames < 1:
            raise TokenFileError(f"{label}: holds no frames (an empty token file): nothing to decode")
        mine = (self.sample_rate, self.hop_length, self.codebook_size, self.channels)
        theirs = (header.sample_rate, header.hop_length, header.codebook_size, header.channels)
        if mine != theirs or header.n_codebooks > self.n_codebooks:
            raise TokenFileError(
                f"{label}: incompatible with the loaded model (rate, hop, codebook size, channels "
                f"{theirs} vs {mine}; {header.n_codebooks} codebooks vs {self.n_codebooks})"
            )

    def _to_original(self, audio: np.ndarray, header: TokenHeader) -> np.ndarray:
        """Model-rate audio ``[C, n_samples]`` -> ``[original_channels, original_n_samples]`` at the original rate."""
        out = _to_original_format(audio, header)
        return _fit_length(out, header.original_n_samples)

    def should_stream(self, header: TokenHeader) -> bool:
        """Whether to decode ``header``'s file with ``decode_to_file`` rather than in memory: it has more
        frames than one window, or its output (original rate and channels) is over 4x a window's audio."""
        window = self.chunk_frames * self.hop_length / self.sample_rate  # seconds
        per_second = header.original_sample_rate * header.original_channels
        return header.n_frames > self.chunk_frames or header.duration * per_second > 4 * window * self.sample_rate

    def decode_tokens(self, token_file: TokenFile | Sequence[TokenFile], force: bool = False,
                      name: str | None = None):
        """Token file -> ``(audio [C_orig, N_orig] float32, original_rate)``: the original rate, channels
        (mono output copied to each) and length. A list of token files gives a list, decoded in batches.
        Raises ``TokenFileError`` for tokens of another model unless ``force``."""
        single = isinstance(token_file, TokenFile)
        files = [token_file] if single else list(token_file)
        for tf in files:
            self.check_tokens(tf.header, force, name if single else None)
        codes = [self._check_codes(tf.codes.astype(np.int64), name or "tokens") for tf in files]
        audio = self.decode(codes, [tf.header.n_samples for tf in files])
        out = [(self._to_original(a.numpy(), tf.header), tf.header.original_sample_rate) for a, tf in zip(audio, files, strict=True)]
        return out[0] if single else out

    def iter_decode_tokens(self, token_file: TokenFile, force: bool = False,
                           name: str | None = None) -> Iterator[np.ndarray]:
        """Decode a token file window by window: blocks ``[C_orig, n]`` at the original rate whose
        concatenation is ``decode_tokens(token_file)[0]``; memory is bounded by the batch."""
        header = token_file.header
        self.check_tokens(header, force, name)
        codes = self._check_codes(token_file.codes.astype(np.int64), name or "tokens")
        chunks = plan_chunks(codes.shape[-1], self.chunk_frames, self.context_frames)
        resampler = StreamResampler(header.sample_rate, header.original_sample_rate,
                                    _resampled_channels(self.channels, header))
        remaining_in, remaining_out = header.n_samples, header.original_n_samples
        # Model-rate samples per block: what becomes at most MAX_DECODE_BLOCK_VALUES at the original format.
        step = max(self.hop_length, int(MAX_DECODE_BLOCK_VALUES * header.sample_rate
                                        / (header.original_sample_rate * header.original_channels)))
        # Consecutive windows per batch, in signal order, so blocks can be streamed out.
        widest = max(c.frames for c in chunks) * self.hop_length
        per_batch = max(1, min(self.batch_size, self.max_batch_samples // widest))
        for first in range(0, len(chunks), per_batch):
            group = range(first, min(first + per_batch, len(chunks)))
            audio = self._decode_windows([codes[:, chunks[k].start : chunks[k].stop] for k in group])
            for k, a in zip(group, audio, strict=True):
                kept = self._kept_audio(a, chunks[k]).numpy()[:, :remaining_in]
                for start in range(0, kept.shape[-1], step):
                    piece = kept[:, start : start + step]
                    remaining_in -= piece.shape[-1]
                    block = _to_original_format(piece, header, resampler, last=remaining_in == 0)
                    block = block[:, :remaining_out]
                    remaining_out -= block.shape[-1]
                    yield block
        if remaining_out > 0:  # resampling rounds the length; pad the last few samples
            yield np.zeros((header.original_channels, remaining_out), np.float32)

    def decode_to_file(self, token_file: TokenFile, path: str | os.PathLike, force: bool = False,
                       name: str | None = None, subtype: str = "PCM_16") -> None:
        """Decode straight to an audio file (WAV or FLAC by extension), window by window, atomically.

        A failed write (a full disk) is an ``AudioError`` naming ``path`` and the system's reason."""
        from .audio.io import open_audio_writer

        path = Path(path)
        if path.suffix.lower() not in (".wav", ".flac"):
            raise AudioError(f"{path}: streamed decoding writes .wav or .flac files")
        header = token_file.header
        with open_audio_writer(path, header.original_sample_rate, header.original_channels, subtype) as writer:
            for block in self.iter_decode_tokens(token_file, force=force, name=name):
                writer.write(block)

    # -- token files ---------------------------------------------------------------------------------
    @staticmethod
    def save_tokens(path: str | os.PathLike, token_file: TokenFile) -> None:
        """Write a ``.svqt`` file atomically."""
        write_tokens(path, token_file.codes, token_file.header)

    @staticmethod
    def load_tokens(path: str | os.PathLike) -> TokenFile:
        """Read a ``.svqt`` file; raises ``TokenFileError`` for missing, truncated or corrupt files."""
        return read_tokens(path)


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
