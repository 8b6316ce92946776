"""``Tokenizer``: audio <-> tokens with a trained codec, in memory and on disk.

A thin front over this package: ``inputs`` checks what callers pass, ``batching`` runs the model over
windows in padded batches, ``windows`` cuts long audio into frame-aligned windows with context, and
``file_encoding`` / ``file_decoding`` stream files. Tokens never depend on the batch on a CPU; on a
GPU see ``batch_invariant`` (and BENCHMARKS.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..models.codec import SimVQCodec
from ..models.spec import ModelSpec
from ..tokens.format import TokenFile, read_tokens, write_tokens
from ..tokens.header import TokenHeader
from . import file_decoding, file_encoding
from .backends import backend_device, check_backend_options, onnx_runner
from .batching import Batcher, BatchSettings, EncodedBatch, pad_codes
from .inputs import AudioLike, CodesLike, check_codes, prepare_audio

DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_CONTEXT_SECONDS = 2.0
# Zero-padded audio per forward pass. Activations of the default-size model take ~10 MB per second
# of 16 kHz audio in float32, so 60 s keeps CPU encoding of any file length near 1 GB of RSS.
DEFAULT_MAX_BATCH_SECONDS = {"cpu": 60.0, "cuda": 240.0}


class Tokenizer:
    """Encode audio to integer tokens and decode them back with a ``SimVQCodec``.

    Args:
        model: the codec (moved to ``device`` and put in eval mode).
        device: ``"auto"`` (CUDA if available; the CPU for the onnx backend), ``"cpu"``, ``"cuda"`` or a
            ``torch.device``.
        batch_size: items (or windows of long items) per forward pass.
        chunk_seconds: audio longer than this is processed in windows of this many seconds ...
        context_seconds: ... plus this much context on each side (discarded after the model).
        max_batch_seconds: bound on a zero-padded batch (seconds at the model rate); default 60 on CPU, 240 on CUDA.
        batch_invariant: encode each window in a forward pass of its own, so that its tokens are
            bit-identical whatever else is encoded with it; default: on a CPU (where it is also the
            faster way), not on CUDA. Decoding is batched either way.
        backend: ``"torch"`` (the model itself) or ``"onnx"``: its ONNX graphs by ONNX Runtime on the CPU
            (the ``onnx`` extra), about twice as fast there, with the same codes except on near-ties and
            audio within float32 rounding (docs/onnx.md); inputs shorter than the graphs take (under 40 ms
            for the built-in model) go through the model.
        onnx_dir: the onnx backend's graphs: a folder written by ``export_onnx``, or a new or empty one to
            export into; default: a cache folder per model id under ``$XDG_CACHE_HOME/simvq-audio/onnx``
            (``~/.cache``), exported on first use. Graphs of another model are an ``OnnxModelError``.
        threads: ONNX Runtime's intra-op threads (default ``onnx.default_threads()``: the usable CPUs, at
            most 4); the torch backend takes none (it uses ``torch.set_num_threads``).

    A backend, device and options that do not go together are a ``BackendError``.
    """

    def __init__(self, model: SimVQCodec, device: str | torch.device = "cpu", batch_size: int = 8,
                 chunk_seconds: float = DEFAULT_CHUNK_SECONDS, context_seconds: float = DEFAULT_CONTEXT_SECONDS,
                 max_batch_seconds: float | None = None, batch_invariant: bool | None = None,
                 backend: str = "torch", onnx_dir: str | os.PathLike | None = None, threads: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_backend_options(backend, onnx_dir, threads)
        device = backend_device(backend, device)
        if max_batch_seconds is None:
            max_batch_seconds = DEFAULT_MAX_BATCH_SECONDS.get(device.type, DEFAULT_MAX_BATCH_SECONDS["cpu"])
        if chunk_seconds <= 0 or context_seconds < 0 or max_batch_seconds <= 0:
            raise ValueError("need chunk_seconds > 0, context_seconds >= 0 and max_batch_seconds > 0")
        settings = BatchSettings(
            batch_size=int(batch_size), chunk_frames=max(1, round(chunk_seconds * model.frame_rate)),
            context_frames=int(np.ceil(context_seconds * model.frame_rate)),
            max_batch_samples=max(1, int(max_batch_seconds * model.sample_rate)),
            batch_invariant=device.type == "cpu" if batch_invariant is None else bool(batch_invariant))
        self.spec: ModelSpec = model.spec  # hashes every weight: computed once
        self.backend = backend
        self._model = model.to(device).eval()
        runner = self._model if backend == "torch" else onnx_runner(self._model, self.spec.model_id, onnx_dir, threads)
        self.batcher = Batcher(runner, device, settings)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike = "default", device: str | torch.device = "auto",
                        backend: str = "torch", onnx_dir: str | os.PathLike | None = None, threads: int | None = None,
                        **kwargs) -> Tokenizer:
        """Load a model folder, a built-in model or a Hub repo id by name; ``kwargs`` go to ``Tokenizer``."""
        check_backend_options(backend, onnx_dir, threads)
        backend_device(backend, device)  # before loading the weights
        return cls(SimVQCodec.from_pretrained(path_or_name, device="cpu"), device=device, backend=backend,
                   onnx_dir=onnx_dir, threads=threads, **kwargs)

    # -- what the model is (see ``spec``) and how it is run --------------------------------------------
    model = property(lambda self: self._model, doc="The torch codec, on ``device``, in eval mode (whatever the backend).")
    onnx_dir = property(lambda self: getattr(self.batcher.model, "directory", None),
                        doc="The folder of the onnx backend's graphs; None for torch.")
    device = property(lambda self: self.batcher.device, doc="Where the model runs.")
    settings = property(lambda self: self.batcher.settings, doc="Batch size, window and memory limits.")
    batch_size = property(lambda self: self.settings.batch_size, doc="Items (or windows) per forward pass.")
    batch_invariant = property(lambda self: self.settings.batch_invariant, doc="One encoder pass per window.")
    chunk_frames = property(lambda self: self.settings.chunk_frames, doc="Kept frames per window.")
    model_id = property(lambda self: self.spec.model_id, doc="Hash of the model's config and weights.")
    model_name = property(lambda self: self.spec.model_name)
    sample_rate = property(lambda self: self.spec.sample_rate, doc="Model rate (Hz).")
    frame_rate = property(lambda self: self.spec.frame_rate, doc="Frames (tokens per codebook) per second.")
    hop_length = property(lambda self: self.spec.hop_length, doc="Samples per frame at the model rate.")
    codebook_size = property(lambda self: self.spec.codebook_size)
    n_codebooks = property(lambda self: self.spec.n_codebooks)
    bitrate = property(lambda self: self.spec.bitrate, doc="Bits per second.")
    channels = property(lambda self: self.batcher.channels, doc="Channels of the model's audio.")

    # -- in memory -------------------------------------------------------------------------------------
    def _prepare(self, wav: AudioLike, sample_rate: int | None, label: str) -> np.ndarray:
        return prepare_audio(wav, sample_rate or self.sample_rate, self.sample_rate, self.channels,
                             self.hop_length, label)

    def encode(self, wav: AudioLike, sample_rate: int | None = None) -> torch.Tensor:
        """Audio -> codes ``LongTensor [n_q, ceil(N / hop)]`` (N: samples at the model rate).

        ``wav``: numpy array or tensor ``[N]`` or ``[C, N]`` (soundfile's ``[N, C]`` is accepted too) with
        at most 2 channels (or the model's count), float or integer PCM, at ``sample_rate`` (default: the
        model rate); it is downmixed/resampled to the model's format. Raises ``AudioError`` for NaN/Inf,
        empty or shorter-than-one-frame audio, and for a 2-D array with more rows and columns than
        channels (a batch? see ``encode_batch``).
        """
        return self.batcher.encode_items([self._prepare(wav, sample_rate, "audio")])[0]

    def encode_batch(self, wavs: Sequence[AudioLike], sample_rate: int | Sequence[int] | None = None,
                     batch_size: int | None = None) -> EncodedBatch:
        """A list of items as ``encode`` takes them (one rate, or one per item) -> ``EncodedBatch``: codes
        ``[B, n_q, T_max]`` padded with 0 and the frame mask ``[B, T_max]``. Items are batched by length;
        each item's codes equal those of the item encoded alone."""
        rates = list(sample_rate) if isinstance(sample_rate, (list, tuple)) else [sample_rate] * len(wavs)
        if len(rates) != len(wavs) or not wavs:
            raise ValueError(f"need one or more items and one rate per item, got {len(wavs)} items, {len(rates)} rates")
        items = [self._prepare(w, r, f"audio item {i}") for i, (w, r) in enumerate(zip(wavs, rates, strict=True))]
        codes, mask = pad_codes(self.batcher.encode_items(items, batch_size))
        return EncodedBatch(codes, mask, torch.tensor([x.shape[-1] for x in items], dtype=torch.long))

    def decode(self, codes: CodesLike, length: int | None = None) -> torch.Tensor:
        """Codes ``[n_q, T]`` (tensor or numpy) -> audio ``FloatTensor [C, length]`` at the model rate
        (``length`` defaults to ``T * hop``)."""
        return self.decode_batch([codes], lengths=None if length is None else [length])[0]

    def decode_batch(self, codes: EncodedBatch | torch.Tensor | Sequence[CodesLike],
                     padding_mask: torch.Tensor | None = None, lengths: Sequence[int | None] | None = None,
                     batch_size: int | None = None) -> list[torch.Tensor]:
        """Codes of a batch -> audio ``[C, n_i]`` per item, decoded in length-sorted batches (each equals
        the item decoded alone). ``codes``: an ``EncodedBatch`` (its ``n_samples`` are the lengths), a
        padded ``[B, n_q, T]`` with ``padding_mask [B, T]`` (true on real frames), or a list of
        ``[n_q, T_i]``. ``lengths`` (samples) default to ``T_i * hop``."""
        if isinstance(codes, EncodedBatch):
            codes, padding_mask, lengths = codes.audio_codes, codes.padding_mask, lengths or codes.n_samples.tolist()
        if padding_mask is not None:
            codes = [c[:, : int(t)] for c, t in zip(codes, torch.as_tensor(padding_mask).sum(-1), strict=True)]
        items = [check_codes(c, self.n_codebooks, self.codebook_size, "codes" if len(codes) == 1 else f"codes item {i}")
                 for i, c in enumerate(codes)]
        lengths = [None] * len(items) if lengths is None else list(lengths)
        if len(lengths) != len(items):
            raise ValueError(f"{len(items)} items but {len(lengths)} lengths")
        for i, (c, n) in enumerate(zip(items, lengths, strict=True)):
            if n is not None and not 1 <= n <= c.shape[-1] * self.hop_length:
                raise ValueError(f"length of item {i} must be in [1, {c.shape[-1] * self.hop_length}], got {n}")
        audio = self.batcher.decode_items(items, batch_size)
        return [a if n is None else a[:, :n] for a, n in zip(audio, lengths, strict=True)]

    # -- files -----------------------------------------------------------------------------------------
    def encode_files(self, paths: Iterable[str | os.PathLike], batch_size: int | None = None,
                     on_progress=None) -> Iterator[tuple[Path, TokenFile | Exception]]:
        """Audio files -> ``(path, TokenFile | AudioError)`` each, in bounded memory; see
        ``file_encoding.encode_files``."""
        return file_encoding.encode_files(self.batcher, self.spec, paths, batch_size, on_progress)

    def encode_file(self, path: str | os.PathLike) -> TokenFile:
        """Encode one audio file (any rate/channels; long files streamed); raises ``AudioError``."""
        for _, result in self.encode_files([path]):
            if isinstance(result, Exception):
                raise result
            return result
        raise AssertionError("encode_files yielded nothing")

    def decode_files(self, paths: Iterable[str | os.PathLike], force: bool = False):
        """``.svqt`` files -> ``(path, DecodedFile | SimVQError)`` each, to ``write``; see
        ``file_decoding.decode_files``."""
        return file_decoding.decode_files(self.batcher, self.spec, paths, force)

    def check_tokens(self, header: TokenHeader, force: bool = False, name: str | None = None) -> None:
        """Raise ``TokenFileError`` unless ``header`` was written by this model (``force``: any compatible one)."""
        file_decoding.check_tokens(self.spec, self.channels, header, force, name)

    def should_stream(self, header: TokenHeader) -> bool:
        """Whether ``decode_to_file`` (window by window) suits ``header``'s file better than ``decode_tokens``."""
        return file_decoding.should_stream(self.batcher, header)

    def decode_tokens(self, token_file: TokenFile, force: bool = False,
                      name: str | None = None) -> tuple[np.ndarray, int]:
        """Token file -> ``(audio [C_orig, N_orig] float32, original_rate)``: the original rate, channels
        (mono output copied to each) and length. ``TokenFileError`` for another model's tokens unless ``force``."""
        self.check_tokens(token_file.header, force, name)
        return file_decoding.decode_token_files(self.batcher, [token_file], name)[0]

    def iter_decode_tokens(self, token_file: TokenFile, force: bool = False,
                           name: str | None = None) -> Iterator[np.ndarray]:
        """Decode a token file in blocks ``[C_orig, n]`` whose concatenation is ``decode_tokens``'s audio."""
        self.check_tokens(token_file.header, force, name)
        return file_decoding.iter_decode_tokens(self.batcher, token_file, name)

    def decode_to_file(self, token_file: TokenFile, path: str | os.PathLike, force: bool = False,
                       name: str | None = None, subtype: str = "PCM_16") -> None:
        """Decode straight to a WAV or FLAC file, window by window, atomically (``AudioError`` on failure)."""
        self.check_tokens(token_file.header, force, name)
        file_decoding.decode_to_file(self.batcher, token_file, path, name, subtype)

    @staticmethod
    def save_tokens(path: str | os.PathLike, token_file: TokenFile) -> None:
        """Write a ``.svqt`` file atomically."""
        write_tokens(path, token_file.codes, token_file.header)

    @staticmethod
    def load_tokens(path: str | os.PathLike) -> TokenFile:
        """Read a ``.svqt`` file; raises ``TokenFileError`` for missing, truncated or corrupt files."""
        return read_tokens(path)
