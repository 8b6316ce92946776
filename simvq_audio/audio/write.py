"""Writing audio atomically with soundfile (libsndfile): whole signals or block by block.

Conventions as in ``io.py``: float32 samples ``[C, N]``, rates in Hz; every failure is an
``AudioError("PATH: cannot write (...)")`` with the operating system's reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from ..fileio import atomic_path
from .io import _as_float32, _check_finite

__all__ = ["AudioWriter", "open_audio_writer", "write_audio"]

# Container format and default subtype per extension, for writing. Opus only supports 8/12/16/24/48 kHz.
_WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
    ".aiff": ("AIFF", "PCM_16"),
    ".aif": ("AIFF", "PCM_16"),
}


def _write_problem(path: Path, err: Exception, handle: sf.SoundFile | None = None) -> str:
    """The reason a libsndfile write failed, with the operating system's words when it was a system error.

    soundfile's own message for a failed write() is libsndfile's generic "System error."; the open
    handle still knows the errno text ("No space left on device"), so ask it while it is open.
    """
    text = ""
    if handle is not None:
        with contextlib.suppress(Exception):  # soundfile internals; fall back to the generic text
            from soundfile import _ffi, _snd

            text = _ffi.string(_snd.sf_strerror(handle._file)).decode("utf-8", "replace")
            text = text.split(":", 1)[1] if text.lower().startswith("system error") and ":" in text else ""
    text = (text or getattr(err, "error_string", None) or str(err)).strip().rstrip(".")
    if text.lower() == "system error":
        with contextlib.suppress(OSError):
            if shutil.disk_usage(path.parent).free < (1 << 20):
                text = "No space left on device"
    return text


class AudioWriter:
    """An audio file open for writing block by block (see ``open_audio_writer``)."""

    def __init__(self, path: Path, handle: sf.SoundFile, channels: int, clip: bool):
        self.path, self._handle, self.channels, self._clip = path, handle, channels, clip

    def write(self, block: np.ndarray) -> None:
        """Append ``[C, n]`` float samples; a failed write is an ``AudioError`` with the system's reason."""
        data = _as_float32(block)
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2 or data.shape[0] != self.channels:
            raise AudioError(f"{self.path}: audio to write must be shaped [{self.channels}, N], got {tuple(data.shape)}")
        _check_finite(self.path, data)
        if self._clip:
            data = np.clip(data, -1.0, 1.0)
        try:
            self._handle.write(data.T)
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioError(f"{self.path}: cannot write ({_write_problem(self.path, err, self._handle)})") from err


@contextlib.contextmanager
def open_audio_writer(path: str | os.PathLike, sample_rate: int, channels: int,
                      subtype: str | None = None) -> Iterator[AudioWriter]:
    """Write an audio file block by block, atomically: nothing appears under ``path`` unless every block
    and the closing header were written. The format follows the extension (see ``write_audio``).

    Every failure is an ``AudioError("PATH: cannot write (...)")`` with the operating system's reason
    (e.g. "No space left on device"), never libsndfile's bare "System error."
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported output extension (use one of {', '.join(_WRITE_FORMATS)})")
    container, default_subtype = fmt
    subtype = subtype or default_subtype
    clip = subtype.startswith("PCM") or container in ("OGG", "MP3")
    with atomic_path(path) as tmp:
        try:
            handle = sf.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=int(channels),
                                  subtype=subtype, format=container)
        except (sf.SoundFileError, RuntimeError, ValueError) as err:
            text = getattr(err, "error_string", None) or str(err)
            if tmp.exists():
                text = _write_problem(path, err)
            raise AudioError(f"{path}: cannot write {container}/{subtype} at {sample_rate} Hz "
                             f"({text.strip().rstrip('.')})") from err
        try:
            yield AudioWriter(path, handle, int(channels), clip)
        except BaseException:
            with contextlib.suppress(Exception):
                handle.close()
            raise
        try:
            handle.close()  # writes the final header, which can fail on a full disk too
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioError(f"{path}: cannot write ({_write_problem(path, err)})") from err


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write samples [C, N] or [N] (float, nominally [-1, 1]) atomically; the format follows the extension.

    WAV, FLAC and AIFF default to PCM_16 (values outside [-1, 1] are clipped rather than wrapped), OGG to Vorbis,
    OPUS to Opus (8/12/16/24/48 kHz only), MP3 to MPEG layer III. `subtype` overrides, e.g. "FLOAT" for WAV.
    Raises `AudioError("PATH: ...")`, with the system's reason for a failed write ("No space left on device").
    """
    path = Path(path)
    data = _as_float32(samples)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise AudioError(f"{path}: audio to write must be shaped [N] or [C, N], got {tuple(data.shape)}")
    _check_finite(path, data)
    with open_audio_writer(path, sample_rate, data.shape[0], subtype) as writer:
        writer.write(data)
