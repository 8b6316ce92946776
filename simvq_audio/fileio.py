"""Atomic file writing and output-path checks.

Every output of simvq-audio (audio, token files, manifests, checkpoints) is written to a hidden temporary file in
the destination folder and renamed onto the final name, so a crash or an error never leaves a half-written file
under the real name. The rename is atomic on POSIX and on Windows (`os.replace`) because source and destination
are in the same folder, hence on the same file system. We do not fsync: the promise is "no partial file after an
error or a killed process", not durability across a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import SimVQError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_not_input", "temp_path_for"]

# Marker inside temporary names; `find_audio_files` and friends skip hidden files, so temp files are never inputs.
_TMP_MARK = ".tmp-"


def temp_path_for(path: str | os.PathLike) -> Path:
    """A fresh hidden temporary path beside `path`: `.NAME.tmp-PID-RAND<suffix>`.

    The suffix of `path` is kept at the end so that libraries which infer the format from the extension
    (soundfile, safetensors users, ...) see the same extension as the final file.
    """
    path = Path(path)
    return path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on normal exit rename it onto `path`, on an exception delete it.

    Usage::

        with atomic_path("out.wav") as tmp:
            soundfile.write(tmp, samples, rate)

    The body must create the temporary file. Raises `SimVQError` if the destination folder does not exist or
    `path` is an existing directory. An existing file at `path` is replaced only after the body succeeded.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise SimVQError(f"{path}: output folder {str(parent)!r} does not exist")
    if path.is_dir():
        raise SimVQError(f"{path}: output path is a directory")
    tmp = temp_path_for(path)
    try:
        yield tmp
        if not tmp.exists():
            raise SimVQError(f"{path}: nothing was written")
        os.replace(tmp, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt during a long write must not leave the temp file behind.
        _remove_quietly(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (temporary file + rename); newlines are written as given."""
    atomic_write_bytes(path, text.encode(encoding))


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        # Catches hard links and other aliases that resolve() cannot see; only possible when both exist.
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Raise `SimVQError("OUTPUT: output path is an input file")` if `output` is one of `inputs`.

    Compares resolved paths (symlinks, `..`) and, when both exist, the file identity (hard links).
    """
    output = Path(output)
    for item in inputs:
        if _same_file(output, Path(item)):
            raise SimVQError(f"{output}: output path is an input file")
