"""Shared pieces of the file-processing commands: model options, inputs and outputs, progress, summary.

Errors go to stderr as one line each (``simvq-audio COMMAND: error: PATH: problem``); notes and
the closing summary go to stdout; the progress bar goes to stderr and only when it is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SimVQError


# -- model options -------------------------------------------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser, chunking: bool = True) -> None:
    """``--model``, ``--device``, ``--batch-size`` and (optionally) ``--chunk-seconds``."""
    parser.add_argument("--model", default="default", metavar="DIR",
                        help="model folder, the name of a built-in model, or a Hugging Face Hub repo id "
                             "org/name (fetched into the Hub's cache; HF_HUB_OFFLINE=1 reads only the cache) "
                             "(default: default)")
    parser.add_argument("--device", default="auto", metavar="DEVICE", help="auto (CUDA if available, the default), cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N",
                        help="files (or windows of long files) per batch (default 8); on a CPU the encoder "
                             "still takes each window alone, so tokens never depend on the batch")
    if chunking:
        from ..inference.tokenizer import DEFAULT_CHUNK_SECONDS

        parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS, metavar="S",
                            help="audio longer than this is processed in windows of S seconds with a little "
                                 f"context on each side, in bounded memory (default {DEFAULT_CHUNK_SECONDS:g})")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--onnx-dir`` and ``--threads``."""
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch (default), or onnx: the model's ONNX graphs by ONNX Runtime on the CPU, about "
                             "twice as fast there, same tokens but for near-ties (pip install 'simvq-audio[onnx]'; "
                             "docs/onnx.md)")
    parser.add_argument("--onnx-dir", type=Path, default=None, metavar="DIR",
                        help="with --backend onnx: the graphs written by export-onnx, or a new folder to export them "
                             "into (default: a cache folder per model id under $XDG_CACHE_HOME/simvq-audio/onnx, "
                             "exported on first use in seconds)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads of torch or of ONNX Runtime (default: the usable CPUs, at most 4)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--quiet``."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (default: a folder run skips them, so a stopped run "
                             "resumes; an output file named with -o is refused)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, notes or summary; errors only")


def load_tokenizer(args: argparse.Namespace):
    """A ``Tokenizer`` from the ``add_model_arguments`` (and ``add_backend_arguments``) options; sets torch's
    threads for ``--threads`` with the torch backend."""
    from ..inference import Tokenizer
    from ..inference.backends import backend_device

    if args.batch_size < 1:
        raise SimVQError(f"--batch-size must be at least 1, got {args.batch_size}")
    chunk = getattr(args, "chunk_seconds", None)
    if chunk is not None and not chunk > 0:
        raise SimVQError(f"--chunk-seconds must be positive, got {chunk}")
    backend, onnx_dir = getattr(args, "backend", "torch"), getattr(args, "onnx_dir", None)
    if onnx_dir is not None and backend != "onnx":
        raise SimVQError("--onnx-dir needs --backend onnx")
    device = backend_device(backend, args.device)
    kwargs = {} if chunk is None else {"chunk_seconds": chunk}
    if hasattr(args, "threads"):
        from ..onnx import default_threads

        threads = default_threads() if args.threads is None else args.threads
        if threads < 1:
            raise SimVQError(f"--threads must be at least 1, got {threads}")
        if backend == "torch":
            import torch

            torch.set_num_threads(threads)
        else:
            kwargs["threads"] = threads
    return Tokenizer.from_pretrained(args.model, device=device, batch_size=args.batch_size, backend=backend,
                                     onnx_dir=onnx_dir, **kwargs)


# -- inputs and outputs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One input file and where its output goes."""

    source: Path
    output: Path


def collect_inputs(inputs: Iterable[str | os.PathLike], find: Callable[[Path], list[Path]],
                   what: str) -> list[tuple[Path, Path | None]]:
    """``(file, folder it was found in or None)`` for each file argument and each file under each folder
    argument (``find(folder)``). A missing path or a folder without ``what`` files is a ``SimVQError``.
    A file reached twice (named twice, or also inside a named folder) is kept once, where first found."""
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = find(path)
            if not files:
                raise SimVQError(f"{path}: no {what} files found in this folder")
            found += [(f, path) for f in files]
        elif path.exists():
            found.append((path, None))
        else:
            raise SimVQError(f"{path}: no such file or folder")
    seen: set[str] = set()
    unique = []
    for file, root in found:
        key = os.path.normcase(os.path.realpath(file))
        if key not in seen:
            seen.add(key)
            unique.append((file, root))
    return unique


def plan_jobs(found: list[tuple[Path, Path | None]], output: Path, suffix: str,
              file_suffixes: tuple[str, ...]) -> list[Job]:
    """Output paths: a single input file with an ``output`` named like a file (ending in one of
    ``file_suffixes``) writes exactly there; otherwise ``output`` is a folder that mirrors each input
    folder's tree (file inputs go to its top), with ``suffix`` replacing the input suffix.

    Raises ``SimVQError`` when an output would overwrite an input, or two inputs map to one output.
    """
    from ..fileio import check_not_input

    inputs = [src for src, _ in found]
    if is_single_file_output(found, output):
        check_not_input(output, inputs)
        if output.suffix.lower() not in file_suffixes:
            raise SimVQError(f"{output}: output file must end in {' or '.join(file_suffixes)} "
                             f"(or name a folder)")
        return [Job(found[0][0], output)]
    if output.suffix.lower() in file_suffixes and not output.is_dir():
        raise SimVQError(f"{output}: names a file, but {len(found)} inputs (or a folder) need an output folder")
    jobs, seen = [], {}
    for src, root in found:
        relative = src.relative_to(root) if root is not None else Path(src.name)
        out = output / relative.with_suffix(suffix)
        check_not_input(out, inputs)
        key = os.path.normcase(os.path.abspath(out))
        if key in seen:
            raise SimVQError(f"{out}: both {seen[key]} and {src} would be written here; encode them separately")
        seen[key] = src
        jobs.append(Job(src, out))
    return jobs


def is_single_file_output(found: list[tuple[Path, Path | None]], output: Path) -> bool:
    """One input file and an ``output`` named like a file: the output is exactly that file."""
    return len(found) == 1 and found[0][1] is None and output.suffix != "" and not output.is_dir()


def split_existing(jobs: list[Job], overwrite: bool, single_file: bool = False) -> tuple[list[Job], list[Job]]:
    """``(to do, skipped because the output exists)``. Folder runs skip existing outputs, so that a
    stopped run resumes; one explicitly named output file that exists is a ``SimVQError`` instead."""
    if overwrite:
        return jobs, []
    if single_file and jobs[0].output.exists():
        raise SimVQError(f"{jobs[0].output}: output file exists; pass --overwrite to replace it")
    todo = [j for j in jobs if not j.output.exists()]
    return todo, [j for j in jobs if j.output.exists()]


def check_writable(jobs: Iterable[Job]) -> None:
    """Raise ``SimVQError("FOLDER: cannot write here (reason)")`` unless every output's folder can be
    created and written to, before any compute is spent. Nothing is created: a temporary file is made
    and removed in the nearest folder that exists."""
    import tempfile

    probed: set[Path] = set()
    for job in jobs:
        folder = job.output.parent
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing in probed:
            continue
        probed.add(existing)
        if not existing.is_dir():
            raise SimVQError(f"{folder}: cannot create the output folder ({existing} is not a folder)")
        try:
            fd, name = tempfile.mkstemp(prefix=".simvq-write-test-", dir=existing)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            where = "" if existing == folder else f" (cannot create folders in {existing})"
            raise SimVQError(f"{folder}: output folder is not writable{where}: {exc.strerror or exc}") from exc


def prepare_output(path: Path) -> None:
    """Create the folder an output goes into."""
    path.parent.mkdir(parents=True, exist_ok=True)


# -- reporting -----------------------------------------------------------------------------------------
def write_output(command: str, output: Path, outcome, summary: Summary) -> bool:
    """Run one output's write, or report the error that replaced it; ``True`` when written.

    ``outcome`` is a zero-argument callable that writes ``output``, or the exception that
    the input raised instead. Input errors and write errors are counted in ``summary`` and
    reported as one line each, so a folder run goes on with the next file.
    """
    from ..errors import SimVQError

    try:
        if isinstance(outcome, BaseException):
            raise outcome
        prepare_output(output)
        outcome()
    except SimVQError as exc:
        summary.failed += 1
        report_failure(command, exc)
        return False
    except OSError as exc:
        summary.failed += 1
        report_failure(command, f"{output}: cannot write ({exc.strerror or exc})")
        return False
    return True


def report_failure(command: str, exc: BaseException) -> None:
    """One line on stderr, as ``cli.main`` prints errors that end a command."""
    message = " ".join(str(exc).split())
    print(f"simvq-audio {command}: error: {message}", file=sys.stderr, flush=True)


# Seconds between progress lines when stderr is not a terminal (a log file, a batch job).
PROGRESS_LINE_SECONDS = 60.0


class ProgressLines:
    """Progress for a log: a line on stderr at most every ``PROGRESS_LINE_SECONDS``, e.g.
    ``encoding: 1,234 of 7,200 s of audio (17%), 2.1x real time, about 45 min left``."""

    def __init__(self, total: float, desc: str | None):
        self.total, self.desc, self.n = total, desc or "progress", 0.0
        self.started = self._last = time.perf_counter()

    def update(self, n: float) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last < PROGRESS_LINE_SECONDS:
            return
        self._last = now
        elapsed = now - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        share = f" ({self.n / self.total:.0%})" if self.total > 0 else ""
        left = f", about {format_duration((self.total - self.n) / rate)} left" if rate > 0 and self.total > self.n else ""
        print(f"{self.desc}: {self.n:,.0f} of {self.total:,.0f} s of audio{share}, {rate:.1f}x real time{left}",
              file=sys.stderr, flush=True)

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc) -> None:
        return None


def progress_bar(total: float, quiet: bool, unit: str = "s", desc: str | None = None):
    """A tqdm bar on stderr when it is a terminal; otherwise ``ProgressLines`` (nothing when ``quiet``)."""
    from tqdm import tqdm

    if not quiet and not sys.stderr.isatty():
        return ProgressLines(total, desc)
    return tqdm(total=total, unit=unit, desc=desc, disable=quiet, dynamic_ncols=True, leave=False,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]")


@contextlib.contextmanager
def summary_on_interrupt(summary: Summary, quiet: bool) -> Iterator[None]:
    """On Ctrl-C, print what was finished (``interrupted: encoded 3 files, ...``) before stopping."""
    try:
        yield
    except KeyboardInterrupt:
        if not quiet:
            print(summary.line(interrupted=True), flush=True)
        raise


def format_duration(seconds: float) -> str:
    """``"12.3 s"``, ``"4.5 min"`` or ``"1.23 h"``: readable at every scale."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


@dataclass
class Summary:
    """Counts for the closing line of a command; ``seconds`` is audio duration.

    Call ``model_loaded()`` once the model is in memory: the real-time factor counts the work on the
    files only, not the loading.
    """

    verb: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    tokens: int | None = None
    started: float = field(default_factory=time.perf_counter)
    working_since: float | None = None

    def model_loaded(self) -> None:
        self.working_since = time.perf_counter()

    def line(self, interrupted: bool = False) -> str:
        now = time.perf_counter()
        elapsed = now - self.started
        working = now - (self.working_since or self.started)
        speed = f", {self.seconds / working:.1f}x real time" if working > 0 and self.seconds > 0 else ""
        loading = f" (model loaded in {self.working_since - self.started:.1f} s)" if self.working_since else ""
        tokens = "" if self.tokens is None else f", {self.tokens:,} tokens"
        files = "file" if self.done == 1 else "files"
        prefix = "interrupted: " if interrupted else ""
        return (f"{prefix}{self.verb} {self.done} {files}, skipped {self.skipped} (output exists), failed "
                f"{self.failed}: {format_duration(self.seconds)} of audio{tokens} in {elapsed:.1f} s{loading}{speed}")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0
