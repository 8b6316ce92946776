"""What a corpus holds: the sorted list of input utterances and their grouping into shards.

The plan is a pure function of the input (manifest or folder), the model and the shard
settings, so every process of a multi-process export, and every rerun, computes the same
shards and can skip or share them without talking to each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import SimVQError
from ..models.spec import ModelSpec
from .format import FORMAT_VERSION, LAYOUT, codes_dtype, shard_name


@dataclass(frozen=True)
class CorpusEntry:
    """One input utterance. ``source`` is ``path`` relative to the input root (posix), or absolute;
    ``duration`` (seconds) is only known for manifests or when asked for (``--shard-frames``)."""

    path: Path
    source: str
    id: str
    speaker: str | None = None
    text: str | None = None
    split: str | None = None
    duration: float | None = None


@dataclass(frozen=True)
class CorpusPlan:
    """Entries sorted by ``source``; shard ``i`` holds ``entries[bounds[i]:bounds[i + 1]]``."""

    entries: tuple[CorpusEntry, ...]
    bounds: tuple[int, ...]
    model: ModelSpec
    source_root: str
    shard_size: int | None = None
    shard_frames: int | None = None

    @property
    def n_shards(self) -> int:
        return len(self.bounds) - 1

    @property
    def dtype(self):
        return codes_dtype(self.model.codebook_size)

    def shard_entries(self, index: int) -> tuple[CorpusEntry, ...]:
        return self.entries[self.bounds[index]:self.bounds[index + 1]]

    def shards_of(self, num_processes: int = 1, process_index: int = 0) -> list[int]:
        """Shards that process ``process_index`` of ``num_processes`` owns: ``i % num_processes == process_index``."""
        if num_processes < 1 or not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} is not in [0, {num_processes})")
        return [i for i in range(self.n_shards) if i % num_processes == process_index]

    def fingerprint(self) -> str:
        """SHA-256 over the format, model, dtype and every shard's (id, source) list."""
        h = hashlib.sha256()
        h.update(json.dumps([FORMAT_VERSION, LAYOUT, self.model.model_id, self.dtype.name]).encode())
        for i in range(self.n_shards):
            h.update(f"\n{shard_name(i)}".encode())
            for e in self.shard_entries(i):
                h.update(json.dumps([e.id, e.source], ensure_ascii=False).encode())
        return h.hexdigest()

    def to_json(self) -> str:
        """Contents of ``plan.json`` (entries are not listed: the fingerprint stands for them)."""
        return json.dumps({
            "format_version": FORMAT_VERSION, "model_id": self.model.model_id, "dtype": self.dtype.name,
            "layout": LAYOUT, "n_shards": self.n_shards, "n_utterances": len(self.entries),
            "shard_size": self.shard_size, "shard_frames": self.shard_frames, "source_root": self.source_root,
            "plan_sha256": self.fingerprint(),
        }, indent=2, ensure_ascii=False) + "\n"


def _relative_source(path: Path, root: Path) -> str:
    try:
        return path.absolute().relative_to(root).as_posix()
    except ValueError:
        return path.absolute().as_posix()


def _audio_duration(path: Path) -> float:
    """Seconds from the header; 0.0 for an unreadable file (it will be reported when encoded)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate if info.samplerate > 0 else 0.0
    except Exception:  # noqa: BLE001 - planning must not fail on a file the encoder will report
        return 0.0


def list_inputs(input_path: str | os.PathLike, with_durations: bool = False) -> tuple[list[CorpusEntry], Path]:
    """Entries of a manifest (JSONL) or of every audio file under a folder, sorted by ``source``.

    Returns ``(entries, source_root)``: the manifest's folder or the input folder. Ids are the
    manifest's ``id`` or ``source`` without its extension; duplicate ids or paths are an error.
    Folder inputs take ``text`` from a sibling transcript (``STEM.txt``, ...) when there is one.
    """
    from ..audio.io import AUDIO_EXTENSIONS, find_audio_files
    from ..data.manifest import find_text, read_manifest

    input_path = Path(input_path)
    if input_path.is_dir():
        root = input_path.absolute()
        entries = []
        for path in find_audio_files(input_path):
            source = _relative_source(path, root)
            duration = _audio_duration(path) if with_durations else None
            entries.append(CorpusEntry(path=path, source=source, id=_strip_suffix(source),
                                       text=find_text(path), duration=duration))
    elif input_path.is_file() and input_path.suffix.lower() not in AUDIO_EXTENSIONS:
        root = input_path.parent.absolute()
        entries = []
        for m in read_manifest(input_path):
            source = _relative_source(m.path, root)
            entries.append(CorpusEntry(path=m.path, source=source, id=m.id or _strip_suffix(source),
                                       speaker=m.speaker, text=m.text, split=m.split, duration=m.duration))
    elif not input_path.exists():
        raise SimVQError(f"{input_path}: no such file or folder")
    else:
        raise SimVQError(f"{input_path}: expected a manifest (.jsonl) or a folder of audio files, not one audio file")
    entries.sort(key=lambda e: e.source)
    _check_unique(entries, input_path)
    if not entries:
        raise SimVQError(f"{input_path}: no audio files to export")
    return entries, root


def _strip_suffix(source: str) -> str:
    return PurePosixPath(source).with_suffix("").as_posix()


def _check_unique(entries: list[CorpusEntry], where: Path) -> None:
    seen_ids: dict[str, str] = {}
    for i, e in enumerate(entries):
        if i and entries[i - 1].source == e.source:
            raise SimVQError(f"{where}: {e.source} is listed twice")
        if e.id in seen_ids:
            raise SimVQError(f"{where}: utterance id {e.id!r} is used by {seen_ids[e.id]} and {e.source}")
        seen_ids[e.id] = e.source


def plan_shards(entries: list[CorpusEntry], model: ModelSpec, source_root: str | os.PathLike,
                shard_size: int | None = 1000, shard_frames: int | None = None) -> CorpusPlan:
    """Group sorted ``entries`` into shards of ``shard_size`` utterances or of about ``shard_frames`` frames.

    With ``shard_frames``, frames are estimated from durations (``ceil(duration * frame_rate)``) and a
    shard is closed before the utterance that would take it past ``shard_frames``; an utterance longer
    than that gets a shard of its own. Every shard has at least one utterance.
    """
    if (shard_size is None) == (shard_frames is None):
        raise ValueError("give exactly one of shard_size and shard_frames")
    entries = sorted(entries, key=lambda e: e.source)
    bounds = [0]
    if shard_size is not None:
        if shard_size < 1:
            raise SimVQError(f"shard size must be at least 1 utterance, got {shard_size}")
        bounds += list(range(shard_size, len(entries), shard_size))
    else:
        if shard_frames < 1:
            raise SimVQError(f"shard frames must be at least 1, got {shard_frames}")
        filled = 0
        for i, e in enumerate(entries):
            if e.duration is None:
                raise ValueError(f"{e.source}: duration unknown; list inputs with with_durations=True")
            frames = max(1, math.ceil(e.duration * model.frame_rate))
            if filled and filled + frames > shard_frames:
                bounds.append(i)
                filled = 0
            filled += frames
    if entries:
        bounds.append(len(entries))
    return CorpusPlan(entries=tuple(entries), bounds=tuple(bounds), model=model, source_root=str(source_root),
                      shard_size=shard_size, shard_frames=shard_frames)
