"""ONNX Runtime sessions with the torch codec's ``encode`` / ``decode`` semantics.

``OnnxCodec(directory)`` reads a folder written by ``export_onnx`` (``simvq-audio export-onnx``).
It needs ``onnxruntime`` (the ``onnx`` extra) and numpy; torch tensors are accepted and returned
as torch tensors, numpy arrays as numpy arrays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import SimVQError
from .export import FORMAT, FORMAT_VERSION, MANIFEST_FILE, READABLE_VERSIONS


class OnnxModelError(SimVQError, ValueError):
    """An ONNX model folder that is missing, of another format, or an input the graphs cannot take."""


def default_threads() -> int:
    """Threads per session: the CPUs this process may use, at most 4 (more rarely pays at batch 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def read_manifest(directory: str | os.PathLike) -> dict:
    """The ``onnx.json`` of a folder written by ``export_onnx``; ``OnnxModelError`` if it has none or another format."""
    manifest_path = Path(directory) / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise OnnxModelError(f"{manifest_path}: not an ONNX model folder ({exc})") from exc
    manifest = manifest if isinstance(manifest, dict) else {}
    if manifest.get("format") != FORMAT or manifest.get("format_version") not in READABLE_VERSIONS:
        raise OnnxModelError(f"{manifest_path}: format {manifest.get('format')!r} version "
                             f"{manifest.get('format_version')!r}, expected {FORMAT!r} {FORMAT_VERSION}")
    return manifest


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _to_numpy(x, dtype) -> tuple[np.ndarray, bool]:
    """``x`` as a contiguous numpy array of ``dtype``, and whether it was a torch tensor."""
    if type(x).__module__.startswith("torch"):
        return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype), True
    return np.ascontiguousarray(np.asarray(x), dtype=dtype), False


def _like(x: np.ndarray, as_torch: bool):
    if not as_torch:
        return x
    import torch

    return torch.from_numpy(x)


class OnnxCodec:
    """``encode(audio [B, C, N]) -> codes [B, n_q, ceil(N / hop)]`` and ``decode(codes, length)``, by ONNX Runtime.

    Codes equal ``SimVQCodec.encode``'s except where two codes are within ~1e-15 of a tie (the
    graph's search is float64, torch's exact); decoded audio is within float32 rounding of torch's
    (docs/onnx.md has the measured figures). Inputs need at least ``min_samples`` samples
    (``min_frames`` frames); ``lengths`` / ``frame_lengths`` of a padded batch run each item alone,
    as the torch codec's per-item padding does.

    Args:
        directory: a folder written by ``export_onnx``.
        threads: intra-op threads per session (default ``default_threads()``).
        fallback: the torch ``SimVQCodec`` of the same model, to encode and decode inputs shorter than the
            graphs take (else those are an ``OnnxModelError``).
    """

    def __init__(self, directory: str | os.PathLike, threads: int | None = None, fallback=None):
        self.directory = Path(directory)
        self.manifest = manifest = read_manifest(self.directory)
        if fallback is not None and fallback.model_id != manifest["model_id"]:
            raise OnnxModelError(f"the fallback codec is model {fallback.model_id}, the graphs are {manifest['model_id']}")
        self.fallback = fallback
        self.threads = default_threads() if threads is None else int(threads)
        self._encoder = _session(self.directory / manifest["encoder"]["file"], self.threads)
        self._decoder = _session(self.directory / manifest["decoder"]["file"], self.threads)
        pitch = manifest.get("pitch")
        self._pitch = None if pitch is None else _session(self.directory / pitch["file"], self.threads)

    # -- what the tokenizer reads off a codec --------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def sample_rate(self) -> int:
        return self.manifest["sample_rate"]

    @property
    def channels(self) -> int:
        return self.manifest["channels"]

    @property
    def hop_length(self) -> int:
        return self.manifest["hop_length"]

    @property
    def n_codebooks(self) -> int:
        return self.manifest["n_codebooks"]

    @property
    def codebook_size(self) -> int:
        return self.manifest["codebook_size"]

    @property
    def min_samples(self) -> int:
        return self.manifest["min_samples"]

    @property
    def min_frames(self) -> int:
        return self.manifest["min_frames"]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, n_samples: int) -> int:
        return -(-int(n_samples) // self.hop_length)

    @property
    def takes_phase_offset(self) -> bool:
        """Whether ``decode`` takes ``phase_offset`` (harmonics of the pitch head's F0; graphs exported before
        the input existed do not)."""
        return "phase_offset" in self.manifest["decoder"] and self._pitch is not None

    def voicing(self, prob):
        """The sines' amplitude per frame from the voicing probability, as ``SimVQCodec.voicing``."""
        from ..modules.excitation import voicing_amplitude

        return voicing_amplitude(prob, bool(self.manifest["decoder"].get("soft_voicing")))

    @property
    def takes_start_frame(self) -> bool:
        """Whether ``decode`` takes ``start_frame`` (a noise-phase Vocos head)."""
        return "start_frame" in self.manifest["decoder"]

    # -- encode / decode ------------------------------------------------------------------------
    @staticmethod
    def _torch(method, array: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return method(torch.from_numpy(array)).cpu().numpy()

    def _encode_one(self, audio: np.ndarray) -> np.ndarray:
        if audio.shape[-1] < self.min_samples:
            if self.fallback is not None:
                return self._torch(self.fallback.encode, audio)
            raise OnnxModelError(f"the ONNX encoder needs at least {self.min_samples} samples, got {audio.shape[-1]} "
                                 "(encode shorter audio with the torch codec)")
        return self._encoder.run(None, {"audio": audio})[0]

    def encode(self, audio, lengths=None):
        """Audio ``[B, C, N]`` (float) -> codes ``[B, n_q, ceil(N / hop)]`` int64.

        With ``lengths [B]`` (valid samples per item of a zero-padded batch) item ``b``'s codes are
        ``codes[b, :, :ceil(lengths[b] / hop)]``, equal to those of the item alone; later frames are 0.
        """
        x, as_torch = _to_numpy(audio, np.float32)
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise OnnxModelError(f"expected audio [B, {self.channels}, N], got {tuple(x.shape)}")
        if lengths is None:
            return _like(self._encode_one(x), as_torch)
        lengths = [int(n) for n in np.asarray(lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
        if len(lengths) != x.shape[0] or min(lengths) < 1 or max(lengths) > x.shape[-1]:
            raise OnnxModelError(f"lengths must be [B] = [{x.shape[0]}] values in [1, {x.shape[-1]}], got {lengths}")
        codes = np.zeros((x.shape[0], self.n_codebooks, self.num_frames(x.shape[-1])), dtype=np.int64)
        for i, n in enumerate(lengths):
            c = self._encode_one(x[i:i + 1, :, :n])
            codes[i, :, :c.shape[-1]] = c[0]
        return _like(codes, as_torch)

    def _decode_one(self, codes: np.ndarray, phase_offset: np.ndarray, start_frame: np.ndarray) -> np.ndarray:
        if codes.shape[-1] < self.min_frames:
            if self.fallback is not None:
                import torch

                with torch.inference_mode():
                    return self.fallback.decode(torch.from_numpy(codes), phase_offset=torch.from_numpy(phase_offset),
                                                start_frame=torch.from_numpy(start_frame)).cpu().numpy()
            raise OnnxModelError(f"the ONNX decoder needs at least {self.min_frames} frames, got {codes.shape[-1]} "
                                 "(decode shorter codes with the torch codec)")
        feed = {"codes": codes}
        if "phase_offset" in self.manifest["decoder"]:
            feed["phase_offset"] = phase_offset.astype(np.float32)
        if self.takes_start_frame:
            feed["start_frame"] = start_frame.astype(np.int64)
        return self._decoder.run(None, feed)[0]

    def predict_pitch(self, codes):
        """Codes ``[B, n_q, T]`` -> ``(f0 [B, T] in Hz, voicing probability [B, T])`` float32, as
        ``SimVQCodec.predict_pitch``."""
        if self._pitch is None:
            raise OnnxModelError(f"{self.directory} has no pitch graph (the model has no harmonics, or the graphs "
                                 "were exported before it existed: export them again)")
        c, as_torch = _to_numpy(codes, np.int64)
        if c.ndim != 3 or c.shape[1] != self.n_codebooks:
            raise OnnxModelError(f"expected codes [B, {self.n_codebooks}, T], got {tuple(c.shape)}")
        f0, voicing = self._pitch.run(None, {"codes": c})
        return _like(f0, as_torch), _like(voicing, as_torch)

    @staticmethod
    def _per_item(values, b: int, dtype, name: str) -> np.ndarray:
        if values is None:
            return np.zeros(b, dtype=dtype)
        array = np.asarray(values.tolist() if hasattr(values, "tolist") else values, dtype=dtype).reshape(-1)
        if array.shape[0] != b:
            raise OnnxModelError(f"{name} must be [B] = [{b}], got {array.shape[0]} values")
        return array

    def decode(self, codes, length: int | None = None, frame_lengths=None, phase_offset=None, start_frame=None):
        """Codes ``[B, n_q, T]`` -> audio ``[B, C, length]`` float32 (default ``T * hop`` samples).

        ``frame_lengths [B]`` marks valid frames per item of a padded batch: each item is decoded on its
        own frames, as it would be alone, and is zero past ``frame_lengths[b] * hop``. ``phase_offset`` and
        ``start_frame`` (``[B]``, where the graphs take them) place windows of longer items, as
        ``SimVQCodec.decode``'s.
        """
        c, as_torch = _to_numpy(codes, np.int64)
        if c.ndim != 3 or c.shape[1] != self.n_codebooks:
            raise OnnxModelError(f"expected codes [B, {self.n_codebooks}, T], got {tuple(c.shape)}")
        t = c.shape[-1]
        if length is not None and not 1 <= length <= t * self.hop_length:
            raise OnnxModelError(f"length must be in [1, {t * self.hop_length}] for {t} frames, got {length}")
        if c.size and (c.min() < 0 or c.max() >= self.codebook_size):
            raise OnnxModelError(f"codes must lie in [0, {self.codebook_size})")
        offsets = self._per_item(phase_offset, c.shape[0], np.float64, "phase_offset")
        starts = self._per_item(start_frame, c.shape[0], np.int64, "start_frame")
        if frame_lengths is None:
            audio = self._decode_one(c, offsets, starts)
        else:
            frames = [int(n) for n in np.asarray(frame_lengths.tolist() if hasattr(frame_lengths, "tolist")
                                                 else frame_lengths)]
            if len(frames) != c.shape[0] or min(frames) < 1 or max(frames) > t:
                raise OnnxModelError(f"frame_lengths must be [B] = [{c.shape[0]}] values in [1, {t}], got {frames}")
            audio = np.zeros((c.shape[0], self.channels, t * self.hop_length), dtype=np.float32)
            for i, n in enumerate(frames):
                audio[i, :, :n * self.hop_length] = self._decode_one(c[i:i + 1, :, :n], offsets[i:i + 1],
                                                                     starts[i:i + 1])[0]
        return _like(audio if length is None else np.ascontiguousarray(audio[..., :length]), as_torch)
