"""Manifests: JSON Lines files listing audio files with their duration and optional labels.

One JSON object per line::

    {"path": "train/a.flac", "duration": 3.2, "sample_rate": 16000, "speaker": "84", "text": "...", "split": "train"}

``path`` is absolute or relative to the manifest's folder; ``duration`` is in seconds. Other keys
(``gender``, ``license``, ...) are accepted and ignored, so manifests made by other tools load as is.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudioError, SimVQError

logger = logging.getLogger(__name__)

# Sibling transcript files, in order of preference: LibriTTS normalized text, plain text, HTK/MFA labels.
TEXT_SUFFIXES = (".normalized.txt", ".txt", ".lab")
SPEAKER_SOURCES = ("parent", "filename")


@dataclass
class ManifestEntry:
    """One audio file of a manifest. ``duration`` in seconds, ``sample_rate`` in Hz (the file's own)."""

    path: Path
    duration: float
    speaker: str | None = None
    text: str | None = None
    split: str | None = None
    id: str | None = None
    sample_rate: int | None = None

    def to_dict(self, base: Path | None = None) -> dict:
        """JSON-ready dict; ``path`` relative to ``base`` when given, else absolute. ``None`` fields are left out."""
        path = Path(self.path)
        if base is not None:
            text_path = os.path.relpath(path.absolute(), Path(base).absolute())
        else:
            text_path = str(path.absolute())
        out: dict = {"path": Path(text_path).as_posix(), "duration": round(float(self.duration), 4)}
        for key in ("sample_rate", "speaker", "text", "split", "id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise SimVQError(f"{where}: '{key}' must be a string, got {value!r}")
    return str(value)


def parse_manifest_line(line: str, base: Path, where: str) -> ManifestEntry:
    """Parse one manifest line; ``where`` ("FILE:LINE") prefixes error messages."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SimVQError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise SimVQError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    path = obj.get("path")
    if not isinstance(path, str) or not path:
        raise SimVQError(f"{where}: missing or empty 'path'")
    duration = obj.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration < 0:
        raise SimVQError(f"{where}: 'duration' must be a non-negative number of seconds, got {duration!r}")
    sample_rate = obj.get("sample_rate")
    if isinstance(sample_rate, float) and sample_rate.is_integer():
        sample_rate = int(sample_rate)  # 16000.0 from tools that write every number as a float
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0):
        raise SimVQError(f"{where}: 'sample_rate' must be a positive integer, got {sample_rate!r}")
    p = Path(path)
    return ManifestEntry(
        path=p if p.is_absolute() else base / p,
        duration=float(duration),
        speaker=_optional_str(obj, "speaker", where),
        text=_optional_str(obj, "text", where),
        split=_optional_str(obj, "split", where),
        id=_optional_str(obj, "id", where),
        sample_rate=sample_rate,
    )


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """Read a JSONL manifest; relative paths are resolved against the manifest's folder.

    Blank lines are skipped. Raises SimVQError naming the file (and line) for a missing file or a bad line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SimVQError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SimVQError(f"{path}: cannot read manifest ({exc})") from None
    base = path.parent.absolute()
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            entries.append(parse_manifest_line(line, base, f"{path}:{number}"))
    return entries


def manifest_text(entries: Iterable[ManifestEntry], base: Path | None = None) -> str:
    """The JSONL text of ``entries`` (see ``ManifestEntry.to_dict`` for ``base``)."""
    return "".join(json.dumps(e.to_dict(base), ensure_ascii=False) + "\n" for e in entries)


def write_manifest(path: str | os.PathLike, entries: Iterable[ManifestEntry], relative: bool = False) -> None:
    """Write ``entries`` as JSONL, atomically (temporary file renamed onto ``path``).

    Paths are absolute, or relative to the manifest's folder with ``relative=True`` (portable with the data).
    """
    from ..fileio import atomic_write_text  # deferred: keeps ``import simvq_audio.data`` light

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, manifest_text(entries, path.parent if relative else None))


def find_text(audio_path: Path) -> str | None:
    """Transcript from a sibling ``STEM.normalized.txt``, ``STEM.txt`` or ``STEM.lab``, or None."""
    stem = audio_path.with_suffix("")
    for suffix in TEXT_SUFFIXES:
        candidate = stem.parent / (stem.name + suffix)
        if candidate.is_file():
            try:
                return " ".join(candidate.read_text(encoding="utf-8").split())
            except (OSError, UnicodeDecodeError):
                return None
    return None


def guess_speaker(audio_path: Path, source: str | None) -> str | None:
    """Speaker label: ``"parent"`` -> parent folder name; ``"filename"`` -> text before the first ``_``
    of the file name (LibriTTS/LibriSpeech ``84_121123_000007_000000.wav`` -> ``"84"``); None -> None."""
    if source is None:
        return None
    if source == "parent":
        return audio_path.parent.name or None
    if source == "filename":
        return audio_path.stem.split("_", 1)[0] or None
    raise SimVQError(f"unknown speaker source {source!r}; expected one of {', '.join(SPEAKER_SOURCES)}")


def build_manifest(
    root: str | os.PathLike,
    min_duration: float = 0.0,
    max_duration: float = math.inf,
    speaker_from: str | None = None,
    split: str | None = None,
    with_text: bool = True,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[ManifestEntry]:
    """Entries for every audio file under ``root`` (recursive, sorted) with ``min_duration <= d <= max_duration``.

    Durations come from the file headers (no decoding). Unreadable or empty files are left out with a
    logged warning and reported to ``on_skip(path, reason)``. ``id`` is the path under ``root`` without
    extension. Raises SimVQError if ``root`` is not a folder.
    """
    from ..audio.io import find_audio_files, read_audio_info

    root = Path(root)
    if not root.is_dir():
        raise SimVQError(f"{root}: not a folder")
    if speaker_from is not None and speaker_from not in SPEAKER_SOURCES:
        raise SimVQError(f"unknown speaker source {speaker_from!r}; expected one of {', '.join(SPEAKER_SOURCES)}")
    entries = []
    for path in find_audio_files(root):
        try:
            info = read_audio_info(path)
            if info.frames <= 0:
                raise AudioError(f"{path}: contains no samples (empty audio)")
        except AudioError as exc:
            reason = str(exc).replace("\n", " ")
            logger.warning("skipped: %s", reason)
            if on_skip is not None:
                on_skip(path, reason)
            continue
        duration = info.duration
        if not (min_duration <= duration <= max_duration):
            continue
        entries.append(
            ManifestEntry(
                path=path.absolute(),
                duration=duration,
                speaker=guess_speaker(path, speaker_from),
                text=find_text(path) if with_text else None,
                split=split,
                id=path.relative_to(root).with_suffix("").as_posix(),
                sample_rate=info.sample_rate,
            )
        )
    return entries


def filter_by_duration(
    entries: Sequence[ManifestEntry], min_duration: float = 0.0, max_duration: float = math.inf
) -> list[ManifestEntry]:
    """Entries with ``min_duration <= duration <= max_duration`` (seconds)."""
    return [e for e in entries if min_duration <= e.duration <= max_duration]


def total_hours(entries: Iterable[ManifestEntry]) -> float:
    """Sum of durations, in hours."""
    return sum(e.duration for e in entries) / 3600.0
