"""What a ``Batcher`` runs: the torch codec itself (``"torch"``) or its ONNX graphs by ONNX Runtime (``"onnx"``).

The ONNX backend runs on the CPU. Its graphs come from a folder written by ``export_onnx``: one the
caller names, or a cache folder per model id (``$XDG_CACHE_HOME/simvq-audio/onnx/<model_id>``,
``~/.cache`` by default), exported on first use in a few seconds. An export goes to a temporary
folder that is renamed into place when complete, so a killed export never leaves a half folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from pathlib import Path

import torch

from ..errors import SimVQError
from .batching import resolve_device

BACKENDS = ("torch", "onnx")


class BackendError(SimVQError, ValueError):
    """A backend that does not go with the device, thread count or ONNX folder asked for."""


def backend_device(backend: str, device: str | torch.device = "auto") -> torch.device:
    """The device ``backend`` runs on: ``resolve_device(device)`` for torch; the CPU for onnx (``"auto"``
    included), where any other device is a ``BackendError``."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    if backend == "torch":
        return resolve_device(device)
    if str(device) == "auto":
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"unknown device {device!r} (use auto, cpu or cuda)") from exc
    if resolved.type != "cpu":
        raise BackendError(f"the onnx backend runs on the CPU only (ONNX Runtime's CPU provider), not on "
                           f"{str(device)!r}: use device cpu, or the torch backend on {str(device)!r}")
    return resolved


def check_backend_options(backend: str, onnx_dir: str | os.PathLike | None, threads: int | None) -> None:
    """``BackendError`` for options that ``backend`` does not take."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    if backend == "torch" and onnx_dir is not None:
        raise BackendError("an ONNX folder (onnx_dir, --onnx-dir) needs the onnx backend")
    if backend == "torch" and threads is not None:
        raise BackendError("threads sets ONNX Runtime's threads; the torch backend uses torch.set_num_threads")
    if threads is not None and int(threads) < 1:
        raise BackendError(f"threads must be at least 1, got {threads}")


def onnx_cache_dir(model_id: str) -> Path:
    """Where the ONNX graphs of model ``model_id`` are cached."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "simvq-audio" / "onnx" / model_id


def _export_into(model: torch.nn.Module, directory: Path) -> None:
    """``export_onnx`` to a temporary sibling of ``directory``, renamed to ``directory`` when complete.
    When another process got there first, its folder is kept and ours removed."""
    from ..onnx import export_onnx

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: its mode 0700 would stay on the renamed folder
    try:
        export_onnx(model, tmp)
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()  # an empty folder named by the caller: renaming onto it is not portable
        try:
            tmp.rename(directory)
        except OSError:
            if not (directory / "onnx.json").is_file():
                raise
    except ImportError as exc:
        raise BackendError(f"exporting the ONNX graphs needs {exc.name or 'the onnx extra'}: "
                           "pip install 'simvq-audio[onnx]'") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def onnx_folder(model: torch.nn.Module, model_id: str, onnx_dir: str | os.PathLike | None = None) -> Path:
    """A folder with the ONNX graphs of ``model``: ``onnx_dir`` (exported there when it is new or empty)
    or the cache folder of ``model_id``. ``OnnxModelError`` when the folder holds another model's graphs,
    or is neither empty nor an ONNX folder."""
    from ..onnx import OnnxModelError, read_manifest
    from ..onnx.export import FORMAT_VERSION

    directory = onnx_cache_dir(model_id) if onnx_dir is None else Path(onnx_dir)
    if onnx_dir is None and (directory / "onnx.json").is_file() \
            and read_manifest(directory).get("format_version") != FORMAT_VERSION:
        shutil.rmtree(directory, ignore_errors=True)  # cached by an older version: export again
    if not (directory / "onnx.json").is_file():
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise OnnxModelError(f"{directory}: not an ONNX model folder (no onnx.json) and not empty; name a "
                                 "folder written by simvq-audio export-onnx, or a new one to export into")
        _export_into(model, directory)
    graphs_id = read_manifest(directory)["model_id"]
    if graphs_id != model_id:
        raise OnnxModelError(f"{directory}: ONNX graphs of model {graphs_id}, not of the model loaded ({model_id}); "
                             "export this model's graphs (simvq-audio export-onnx) or name another folder")
    return directory


def onnx_runner(model: torch.nn.Module, model_id: str, onnx_dir: str | os.PathLike | None = None,
                threads: int | None = None):
    """An ``OnnxCodec`` of ``model``'s graphs (``onnx_folder``) with ``threads`` intra-op threads (default
    ``default_threads()``), handing inputs shorter than the graphs take to ``model`` (on the CPU)."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendError("the onnx backend needs ONNX Runtime: pip install 'simvq-audio[onnx]'")
    from ..onnx import OnnxCodec

    return OnnxCodec(onnx_folder(model, model_id, onnx_dir), threads=threads, fallback=model)
