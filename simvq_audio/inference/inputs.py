"""Checks and conversions at the tokenizer's door: caller audio to the model's format, caller codes to int64."""

from __future__ import annotations

import numpy as np
import torch

from ..audio.io import to_model_format
from ..errors import AudioError, TokenFileError
from .windows import check_length

AudioLike = np.ndarray | torch.Tensor
CodesLike = np.ndarray | torch.Tensor


def channels_first(wav: np.ndarray, channels: int, label: str) -> np.ndarray:
    """``[N]`` or ``[C, N]`` as given; soundfile's ``[N, C]`` (many samples of a few channels) transposed.

    Anything else is refused rather than guessed: a ``[4, N]`` array may be a batch of four items,
    which mixing down as four channels would silently average into one sequence.
    """
    allowed = max(2, channels)
    if wav.ndim == 1 or (wav.ndim == 2 and wav.shape[0] <= allowed):
        return wav
    if wav.ndim == 2 and wav.shape[1] <= allowed:
        return wav.T
    shape = tuple(wav.shape)
    raise AudioError(
        f"{label}: audio shaped {shape} is neither [N] nor [C, N] (or [N, C]) with at most {allowed} "
        f"channels; pass a batch as a list of items to encode_batch (e.g. list(x)), and mix more channels "
        f"down first (e.g. x.mean(axis=0) for [C, N])"
    )


def prepare_audio(wav: AudioLike, sample_rate: int, model_rate: int, channels: int, hop: int,
                  label: str) -> np.ndarray:
    """Caller audio at ``sample_rate`` Hz -> float32 ``[channels, N]`` at ``model_rate`` Hz.

    Raises ``AudioError`` for NaN/Inf, empty or shorter-than-one-frame audio and ambiguous shapes.
    """
    if isinstance(wav, (list, tuple)):
        raise TypeError(f"{label}: one item is an array or tensor; pass a list of items to encode_batch")
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu()
        # Integer PCM stays integer so that to_model_format scales it; half/bfloat16 become float32.
        wav = (wav.float() if wav.is_floating_point() else wav).numpy()
    samples = channels_first(np.asarray(wav), channels, label)
    samples = to_model_format(samples, sample_rate, model_rate, channels)
    if not np.isfinite(samples).all():
        raise AudioError(f"{label}: contains NaN or infinite samples")
    check_length(samples.shape[-1], hop, model_rate, label)
    return samples


def check_codes(codes: CodesLike, n_codebooks: int, codebook_size: int, label: str) -> torch.Tensor:
    """Caller codes ``[n_q <= n_codebooks, T >= 1]`` -> int64 CPU tensor; ``TokenFileError`` otherwise."""
    if isinstance(codes, (list, tuple)):
        raise TypeError(f"{label}: one item is an array or tensor [n_q, T]; pass a batch to decode_batch")
    codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes).cpu()
    if codes.dim() != 2 or not 1 <= codes.shape[0] <= n_codebooks or codes.shape[1] < 1:
        hint = "; pass a batch as a list of [n_q, T] items, or padded [B, n_q, T], to decode_batch" if codes.dim() == 3 else ""
        raise TokenFileError(f"{label}: expected codes [n_q <= {n_codebooks}, T >= 1], "
                             f"got {tuple(codes.shape)}{hint}")
    if codes.is_floating_point() or codes.is_complex():
        raise TokenFileError(f"{label}: codes must be integers, got {codes.dtype}")
    codes = codes.long()
    if int(codes.min()) < 0 or int(codes.max()) >= codebook_size:
        raise TokenFileError(f"{label}: codes must be in [0, {codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
    return codes
