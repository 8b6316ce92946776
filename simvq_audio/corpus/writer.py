"""Encode a corpus into token shards (one process's share) and finalise the corpus folder.

Process ``p`` of ``n`` encodes the shards ``i`` with ``i % n == p``. Each shard is written as
``.bin`` (temp + rename), then its failures (if any), then its index (temp + rename), so an
index on disk means a finished shard: reruns skip those and redo the rest. ``meta.json`` is
removed while any shard is being (re)written and written by ``finalize_corpus`` once all are done,
so its presence means a complete corpus.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SimVQError, TokenFileError
from ..fileio import atomic_path, atomic_write_text
from .format import (
    FAILURES_NAME,
    META_NAME,
    PLAN_NAME,
    CorpusMeta,
    ShardFiles,
    ShardInfo,
    UtteranceRecord,
    expected_bin_size,
    index_text,
    meta_text,
    read_index,
    shard_name,
)
from .plan import CorpusEntry, CorpusPlan

FailureCallback = Callable[[CorpusEntry, str], None]


@dataclass
class ProcessReport:
    """What one ``write_shards`` call did: shards encoded now, shards found finished, failures in both."""

    encoded: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def prepare_output(output_dir: str | os.PathLike, plan: CorpusPlan) -> Path:
    """Create the folder and record ``plan.json``; refuse a folder holding a different export."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SimVQError(f"{out}: output exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / PLAN_NAME
    fingerprint = plan.fingerprint()
    if plan_path.is_file():
        try:
            previous = json.loads(plan_path.read_text(encoding="utf-8")).get("plan_sha256")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != fingerprint:
            raise SimVQError(f"{out}: holds an export of another model, input list or shard setting "
                             f"({PLAN_NAME} differs); use a new output folder or delete this one")
    else:
        # Every process may get here at once; they all write the same bytes, and renames are atomic.
        atomic_write_text(plan_path, plan.to_json())
    return out


def read_failures(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def finished_records(output_dir: str | os.PathLike, plan: CorpusPlan, index: int) -> list[UtteranceRecord] | None:
    """The index of shard ``index`` if the shard is finished and consistent with the plan, else None."""
    files = ShardFiles.of(output_dir, index)
    if not files.index.is_file() or not files.bin.is_file():
        return None
    try:
        records = read_index(files.index)
        size = expected_bin_size(records, plan.model.n_codebooks, plan.dtype)
    except TokenFileError:
        return None
    planned = [e.id for e in plan.shard_entries(index)]
    ids = iter(planned)
    in_plan_order = all(r.id in ids for r in records)  # consumes ``ids``: a subsequence test
    if size != files.bin.stat().st_size or not in_plan_order or any(r.shard != index for r in records):
        return None
    return records


def _remove_stale_temps(out: Path, index: int) -> None:
    """Temp files left by a killed run of this shard (only this shard's owner ever writes them)."""
    for tmp in out.glob(f".{shard_name(index)}.*.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _checked_codes(result, plan: CorpusPlan) -> tuple[np.ndarray, float]:
    """``[T, n_q]`` codes in the corpus dtype and the source duration (s) from a ``TokenFile``."""
    header = result.header
    codes = np.asarray(result.codes)
    n_q, k = plan.model.n_codebooks, plan.model.codebook_size
    if codes.ndim != 2 or codes.shape[0] != n_q or codes.shape[1] < 1:
        raise RuntimeError(f"tokenizer returned codes of shape {codes.shape}, expected [{n_q}, T >= 1]")
    if int(codes.min()) < 0 or int(codes.max()) >= k:
        raise RuntimeError(f"tokenizer returned codes outside [0, {k})")
    duration = header.original_n_samples / header.original_sample_rate
    return np.ascontiguousarray(codes.T, dtype=plan.dtype), float(duration)


def _encode_shard(tokenizer, plan: CorpusPlan, out: Path, index: int, batch_size: int | None,
                  on_failure: FailureCallback | None, advance: Callable[[], None]) -> list[dict]:
    files = ShardFiles.of(out, index)
    _remove_stale_temps(out, index)
    entries = plan.shard_entries(index)
    position = {Path(e.path): k for k, e in enumerate(entries)}
    done: dict[int, object] = {}
    records: list[UtteranceRecord] = []
    failures: list[dict] = []
    next_k = offset = 0
    with atomic_path(files.bin) as tmp, open(tmp, "xb") as f:
        for path, result in tokenizer.encode_files([e.path for e in entries], batch_size=batch_size):
            done[position[Path(path)]] = result
            while next_k in done:  # write in plan order whatever order the tokenizer yields in
                e, result = entries[next_k], done.pop(next_k)
                next_k += 1
                advance()
                if isinstance(result, BaseException):
                    message = str(result) or type(result).__name__
                    failures.append({"id": e.id, "source": e.source, "shard": index, "error": message})
                    if on_failure is not None:
                        on_failure(e, message)
                    continue
                codes, duration = _checked_codes(result, plan)
                f.write(codes.tobytes())
                records.append(UtteranceRecord(id=e.id, source=e.source, speaker=e.speaker, text=e.text,
                                               split=e.split, shard=index, offset=offset,
                                               n_frames=codes.shape[0], duration=round(duration, 6)))
                offset += codes.shape[0]
    if next_k != len(entries):
        raise RuntimeError(f"{shard_name(index)}: tokenizer returned {next_k} of {len(entries)} files")
    if failures:
        atomic_write_text(files.failures, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in failures))
    else:
        with contextlib.suppress(FileNotFoundError):
            files.failures.unlink()
    atomic_write_text(files.index, index_text(records))  # last: marks the shard finished
    return failures


def write_shards(tokenizer, plan: CorpusPlan, output_dir: str | os.PathLike, num_processes: int = 1,
                  process_index: int = 0, batch_size: int | None = None,
                  on_failure: FailureCallback | None = None, progress: bool = False) -> ProcessReport:
    """Encode this process's unfinished shards with ``tokenizer`` (a ``simvq_audio.Tokenizer``).

    Files that fail to load or encode are skipped, reported to ``on_failure(entry, message)`` and
    listed in the shard's failures; other errors propagate (the partial shard is discarded).
    """
    out = prepare_output(output_dir, plan)
    mine = plan.shards_of(num_processes, process_index)
    report = ProcessReport()
    todo = []
    for i in mine:
        if finished_records(out, plan, i) is None:
            todo.append(i)
        else:
            report.skipped.append(i)
            report.failures += read_failures(ShardFiles.of(out, i).failures)
    if todo:
        with contextlib.suppress(FileNotFoundError):
            (out / META_NAME).unlink()  # the corpus is incomplete until finalize_corpus
    from tqdm.auto import tqdm

    total = sum(len(plan.shard_entries(i)) for i in todo)
    with tqdm(total=total, unit="file", disable=not progress, desc="export") as bar:
        for i in todo:
            report.failures += _encode_shard(tokenizer, plan, out, i, batch_size, on_failure, lambda: bar.update(1))
            report.encoded.append(i)
    return report


def finalize_corpus(output_dir: str | os.PathLike, plan: CorpusPlan) -> CorpusMeta:
    """Check every shard is finished, write ``failures.jsonl`` and then ``meta.json``; returns the meta.

    Raises ``SimVQError`` naming the first unfinished shard (a process failed: rerun the export).
    """
    out = Path(output_dir)
    shards, failures = [], []
    n_frames = 0
    duration = 0.0
    for i in range(plan.n_shards):
        records = finished_records(out, plan, i)
        if records is None:
            raise SimVQError(f"{ShardFiles.of(out, i).index}: shard is missing or unfinished; rerun the export")
        shard_failures = read_failures(ShardFiles.of(out, i).failures)
        failures += shard_failures
        frames = sum(r.n_frames for r in records)
        shards.append(ShardInfo(name=shard_name(i), n_utterances=len(records), n_frames=frames,
                                n_failed=len(shard_failures)))
        n_frames += frames
        duration += sum(r.duration for r in records)
    atomic_write_text(out / FAILURES_NAME, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in failures))
    meta = CorpusMeta.of(
        plan.model, n_utterances=sum(s.n_utterances for s in shards), n_frames=n_frames,
        n_failed=len(failures), duration=round(duration, 3), shards=tuple(shards),
        source_root=plan.source_root, plan_sha256=plan.fingerprint(),
    )
    atomic_write_text(out / META_NAME, meta_text(meta))
    return meta


def write_corpus(tokenizer, plan: CorpusPlan, output_dir: str | os.PathLike, state=None,
                  batch_size: int | None = None, on_failure: FailureCallback | None = None,
                  progress: bool = False) -> tuple[ProcessReport, CorpusMeta | None]:
    """Run an export in this process; ``state`` is an ``accelerate.PartialState`` (None: single process).

    Every process encodes its shards; after ``state.wait_for_everyone()`` the main process finalises.
    Returns this process's report and, on the main process, the corpus meta (None elsewhere).
    """
    n, rank = (1, 0) if state is None else (state.num_processes, state.process_index)
    report = write_shards(tokenizer, plan, output_dir, num_processes=n, process_index=rank,
                           batch_size=batch_size, on_failure=on_failure, progress=progress)
    if state is not None:
        state.wait_for_everyone()
    meta = finalize_corpus(output_dir, plan) if rank == 0 else None
    return report, meta
