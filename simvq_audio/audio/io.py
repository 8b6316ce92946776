"""Reading and converting audio with soundfile (libsndfile) and soxr; writing is ``write.py``.

Conventions: samples are float32 numpy arrays shaped [C, N] (channels first, as the models use), values nominally
in [-1, 1]; rates are in Hz; lengths are in samples. Errors caused by the input are `AudioError` with a message
that starts with the file's path: "PATH: problem".

Formats are whatever the installed libsndfile decodes (check `soundfile.available_formats()`); with libsndfile
>= 1.1 that includes WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF. Other formats (m4a/aac, wma) must be converted
first, e.g. `ffmpeg -i in.m4a out.flac`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInfo",
    "LoadedAudio",
    "StreamResampler",
    "audio_duration",
    "find_audio_files",
    "iter_audio_blocks",
    "load_audio",
    "read_audio_info",
    "resample",
    "to_model_format",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif")

_RESAMPLE_QUALITY = "HQ"


@dataclass
class LoadedAudio:
    """Audio read by `load_audio`.

    samples: [C, N] float32 at `sample_rate`. The `original_*` fields describe the file before conversion.
    """

    samples: np.ndarray
    sample_rate: int
    original_sample_rate: int
    original_channels: int
    original_n_samples: int
    path: Path | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[-1] / self.sample_rate


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says, without decoding: rate (Hz), channels, frames (samples per channel), seconds.

    `frames` is exact for PCM/FLAC; for compressed formats (MP3, Vorbis, Opus) libsndfile may estimate it.
    """

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


# ----------------------------------------------------------------------------------------------------- checks


def _check_input_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")


def _read_problem(path: Path, err: Exception) -> str:
    # LibsndfileError.error_string is libsndfile's own text without the "Error opening 'PATH':" prefix.
    text = (getattr(err, "error_string", None) or str(err)).strip().rstrip(".")
    hint = ""
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        hint = f"; readable formats: {', '.join(AUDIO_EXTENSIONS)}; convert others first, e.g. with ffmpeg"
    return f"cannot read audio ({text}){hint}"


def _check_finite(path: Path | str, data: np.ndarray) -> None:
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")


# ------------------------------------------------------------------------------------------------ conversions


def _as_float32(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        # Integer PCM: scale to [-1, 1) the way libsndfile does (int16 -> / 32768).
        info = np.iinfo(samples.dtype)
        scale = float(-info.min) if info.min < 0 else float(info.max + 1) / 2
        offset = 0.0 if info.min < 0 else scale
        return ((samples.astype(np.float64) - offset) / scale).astype(np.float32)
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"audio samples must be numbers, got dtype {samples.dtype}")
    return samples.astype(np.float32, copy=False)


def _channel_problem(n_in: int, channels: int | None) -> str | None:
    if channels is None or channels == n_in or channels == 1 or (n_in == 1 and channels > 1):
        return None
    return f"cannot convert {n_in} channels to {channels} (only downmix to mono or copy mono to more channels)"


def _check_channels(path: Path, n_in: int, channels: int | None) -> None:
    problem = _channel_problem(n_in, channels)
    if problem:
        raise AudioError(f"{path}: {problem}")


def _convert_channels(samples: np.ndarray, channels: int | None) -> np.ndarray:
    """[C, N] -> [channels, N]: mean downmix to mono, mono copied to more channels, else must match."""
    n_in = samples.shape[0]
    problem = _channel_problem(n_in, channels)
    if problem:
        raise AudioError(problem)
    if channels is None or channels == n_in:
        return samples
    if channels == 1:
        return samples.mean(axis=0, keepdims=True, dtype=np.float32)
    return np.repeat(samples, channels, axis=0)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with soxr (HQ). x: [..., N] -> [..., N'] float32, N' = round(N * target / orig).

    Returns the input (as float32) when the rates are equal.
    """
    x = _as_float32(x)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return x
    lead, n = x.shape[:-1], x.shape[-1]
    if n == 0:
        return np.zeros((*lead, 0), dtype=np.float32)
    # soxr wants [N, channels]; fold every leading axis into channels.
    frames = np.ascontiguousarray(x.reshape(-1, n).T)
    out = soxr.resample(frames, orig_sr, target_sr, quality=_RESAMPLE_QUALITY)
    return np.ascontiguousarray(out.T).reshape(*lead, -1).astype(np.float32, copy=False)


def to_model_format(
    samples: np.ndarray, sample_rate: int, target_rate: int | None, target_channels: int | None = 1
) -> np.ndarray:
    """Convert audio to what a model expects.

    samples: [N] or [C, N] (float, or integer PCM which is scaled to [-1, 1)) at `sample_rate`.
    Returns [target_channels, N'] float32 at `target_rate` (None keeps the rate / the channels).
    Channels are downmixed before resampling so soxr works on as few channels as possible.
    """
    samples = _as_float32(samples)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.ndim != 2:
        raise AudioError(f"audio must be shaped [N] or [C, N], got shape {tuple(samples.shape)}")
    samples = _convert_channels(samples, target_channels)
    if target_rate is not None:
        samples = resample(samples, sample_rate, target_rate)
    return samples


# ---------------------------------------------------------------------------------------------------- reading


def read_audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file (sf.info; no decoding), for cheap planning of long jobs."""
    path = Path(path)
    _check_input_path(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(f"{path}: {_read_problem(path, err)}") from err
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{path}: invalid header ({info.samplerate} Hz, {info.channels} channels)")
    return AudioInfo(
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        duration=float(info.frames) / info.samplerate,
        format=str(info.format),
        subtype=str(info.subtype),
    )


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header (no decoding)."""
    return read_audio_info(path).duration


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, channels: int | None = 1) -> LoadedAudio:
    """Read an audio file into [channels, N'] float32 at `sample_rate`.

    The file is opened and decoded once; downmixing (mean over channels) happens before resampling (soxr HQ).
    `sample_rate=None` keeps the file's rate, `channels=None` keeps its channels.
    Raises `AudioError("PATH: ...")` for a missing path, a directory, an unreadable or corrupt file, a file
    with no samples, and NaN/Inf samples.
    """
    path = Path(path)
    _check_input_path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            rate, n_channels = int(f.samplerate), int(f.channels)
            data = f.read(dtype="float32", always_2d=True)  # [N, C]
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(f"{path}: {_read_problem(path, err)}") from err
    n_samples = data.shape[0]
    if n_samples == 0:
        raise AudioError(f"{path}: contains no samples (empty audio)")
    _check_finite(path, data)
    _check_channels(path, n_channels, channels)
    samples = to_model_format(data.T, rate, sample_rate, channels)
    return LoadedAudio(
        samples=np.ascontiguousarray(samples),
        sample_rate=rate if sample_rate is None else int(sample_rate),
        original_sample_rate=rate,
        original_channels=n_channels,
        original_n_samples=n_samples,
        path=path,
    )


def iter_audio_blocks(
    path: str | os.PathLike, block_samples: int, overlap_samples: int = 0, channels: int | None = 1
) -> Iterator[np.ndarray]:
    """Stream a file in blocks with bounded memory, at the file's own rate (no resampling).

    Yields float32 arrays [channels, n], one block for every start `i * block_samples` inside the file: block i
    holds samples [i * B, min(i * B + B + O, N)) of the file (B = block_samples, O = overlap_samples, N = length),
    so each block's last O samples repeat at the start of the next one, and concatenating `block[:, :B]` over all
    blocks gives the whole file exactly. Only the final blocks are shorter than B + O.
    Use `read_audio_info` for the rate and length, `StreamResampler` to resample blocks exactly.
    Raises `AudioError` like `load_audio` (missing, unreadable, empty; NaN/Inf when the block holding it is read).
    """
    if block_samples <= 0 or overlap_samples < 0:
        raise ValueError(f"need block_samples > 0 and overlap_samples >= 0, got {block_samples}, {overlap_samples}")
    path = Path(path)
    _check_input_path(path)
    span = block_samples + overlap_samples
    try:
        with sf.SoundFile(str(path)) as f:
            _check_channels(path, int(f.channels), channels)
            carry = np.zeros((0, f.channels), dtype=np.float32)  # [n, C]: samples of the next block already read
            first = True
            while True:
                fresh = f.read(span - carry.shape[0], dtype="float32", always_2d=True)
                _check_finite(path, fresh)
                block = np.concatenate([carry, fresh]) if carry.shape[0] else fresh
                if block.shape[0] == 0:
                    if first:
                        raise AudioError(f"{path}: contains no samples (empty audio)")
                    break
                first = False
                yield np.ascontiguousarray(_convert_channels(block.T, channels))
                if block.shape[0] < span and block.shape[0] <= block_samples:
                    break  # end of file reached, and the next block would start at or after it
                carry = block[block_samples:]
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(f"{path}: {_read_problem(path, err)}") from err


class StreamResampler:
    """Exact chunked resampling (soxr.ResampleStream, HQ): the concatenated outputs equal `resample` on the whole.

    process(block [C, n], last=False) -> [C, m] float32. Pass `last=True` with the final block (it may be empty)
    to flush the filter's tail. With equal rates blocks pass through unchanged.
    """

    def __init__(self, orig_sr: int, target_sr: int, channels: int) -> None:
        self.orig_sr, self.target_sr, self.channels = int(orig_sr), int(target_sr), int(channels)
        self._stream = None
        if self.orig_sr != self.target_sr:
            self._stream = soxr.ResampleStream(
                self.orig_sr, self.target_sr, self.channels, dtype="float32", quality=_RESAMPLE_QUALITY
            )

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        block = _as_float32(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a block shaped [{self.channels}, n], got {tuple(block.shape)}")
        if self._stream is None:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T), last=last)
        return np.ascontiguousarray(out.reshape(-1, self.channels).T)


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """Audio files under `root` (recursive), sorted, matched by AUDIO_EXTENSIONS case-insensitively.

    Hidden files and folders (name starting with ".") are skipped, which also skips our own temporary files.
    Symlinked folders are followed once (cycles are cut). A `root` that is itself an audio file gives `[root]`.
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in AUDIO_EXTENSIONS else []
    if not root.is_dir():
        raise AudioError(f"{root}: folder not found")
    found = []
    visited: set[tuple[int, int]] = set()
    # Symlinked folders are followed (datasets are often linked in), but each real folder is walked once,
    # so a link cycle cannot loop forever.
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                found.append(Path(folder) / name)
    return sorted(found)
