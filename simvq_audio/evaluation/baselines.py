"""Real-codec baselines: Opus, Codec 2 and (optionally) EnCodec, run through their own tools.

A spec names a codec and its bitrate: ``opus:6k``, ``codec2:1200``, ``codec2:3200``,
``encodec:1.5``. Each baseline encodes and decodes one mono signal in a scratch folder
via subprocess, resampling to the rate its codec takes and back to the caller's rate:

- Opus: 16 kHz mono float WAV -> ``ffmpeg -c:a libopus -b:a 6k -application voip`` -> Ogg/Opus
  -> ``ffmpeg`` decode (48 kHz float) -> caller's rate. Falls back to ``opusenc``/``opusdec``
  (opus-tools) when ffmpeg or its libopus encoder is missing.
- Codec 2: 8 kHz raw signed 16-bit -> ``c2enc MODE`` / ``c2dec MODE`` (Debian package codec2).
- EnCodec 24 kHz: only when the ``encodec`` package and its cached weights are present; it
  runs in a child Python so that its torchaudio import cannot break this process.

Codecs add algorithmic delay that their decoders do not remove (Codec 2 about 25 ms), which
would weigh on frame-wise metrics (STOI, mel distance) and SI-SDR. ``DelayEstimator`` finds
each codec's constant delay (within +-50 ms) pooled over several files; the evaluation
removes it from every output and reports it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio.io import resample
from ..errors import SimVQError

MAX_DELAY_SECONDS = 0.05
CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")
ENCODEC_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)
ENCODEC_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
SPEC_HELP = "opus:<kbps>k (6k-510k), codec2:<mode> (" + "|".join(CODEC2_MODES) + "), encodec:<kbps> (1.5|3|6|12|24)"


class BaselineError(SimVQError):
    """A baseline spec is unknown, its tool is missing, or the tool failed."""


class BaselineUnavailable(SimVQError):
    """An optional baseline cannot run here (package or weights missing); evaluation goes on without it."""


@dataclass
class CodecRun:
    """What a codec returned for one signal.

    Attributes:
        audio: ``[N']`` float32 decoded signal at the caller's rate (length not yet matched).
        bits: size of the encoded stream in bits, or ``None`` where it is not meaningful.
    """

    audio: np.ndarray
    bits: int | None


class Baseline(ABC):
    """One codec at one bitrate. ``check()`` before ``encode_decode``."""

    spec: str
    nominal_bitrate: float  # bits per second the codec is configured for

    @property
    def name(self) -> str:
        return self.spec

    @abstractmethod
    def check(self) -> None:
        """Raise ``BaselineError`` (missing tool) or ``BaselineUnavailable`` (optional codec missing)."""

    @abstractmethod
    def encode_decode(self, wav: np.ndarray, sample_rate: int, workdir: Path) -> CodecRun:
        """Encode and decode ``wav [N]`` (float, at ``sample_rate``) using files in ``workdir``."""


def _which(*tools: str) -> bool:
    return all(shutil.which(t) is not None for t in tools)


def _run(cmd: list[str], spec: str, cwd: Path, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BaselineError(f"{spec}: {cmd[0]} failed: {last}")


def _ffmpeg_has_encoder(name: str) -> bool:
    if not _which("ffmpeg"):
        return False
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return proc.returncode == 0 and re.search(rf"\s{re.escape(name)}\s", proc.stdout) is not None


def _resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x if orig_sr == target_sr else np.asarray(resample(x, orig_sr, target_sr), dtype=np.float32).reshape(-1)


class OpusBaseline(Baseline):
    """Opus in VoIP mode at ``kbps`` kbit/s, 16 kHz mono input, Ogg container."""

    input_rate = 16000
    decode_rate = 48000  # Opus always decodes at 48 kHz internally

    def __init__(self, kbps: float, spec: str):
        self.kbps = kbps
        self.spec = spec
        self.nominal_bitrate = kbps * 1000.0
        self._tool: str | None = None

    def check(self) -> None:
        if _ffmpeg_has_encoder("libopus"):
            self._tool = "ffmpeg"
        elif _which("opusenc", "opusdec"):
            self._tool = "opus-tools"
        else:
            raise BaselineError(
                f"{self.spec} needs ffmpeg with libopus (Debian package ffmpeg) or opusenc/opusdec "
                "(Debian package opus-tools); neither was found"
            )

    def encode_decode(self, wav: np.ndarray, sample_rate: int, workdir: Path) -> CodecRun:
        if self._tool is None:
            self.check()
        src, enc, dec = workdir / "input.wav", workdir / "encoded.ogg", workdir / "decoded.wav"
        sf.write(src, _resample(wav, sample_rate, self.input_rate), self.input_rate, subtype="FLOAT")
        rate = f"{self.kbps:g}k"
        if self._tool == "ffmpeg":
            quiet = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
            _run(quiet + ["-i", src.name, "-c:a", "libopus", "-b:a", rate, "-application", "voip", enc.name],
                 self.spec, workdir)
            _run(quiet + ["-i", enc.name, "-ar", str(self.decode_rate), "-ac", "1", "-c:a", "pcm_f32le", dec.name],
                 self.spec, workdir)
        else:
            _run(["opusenc", "--quiet", "--bitrate", f"{self.kbps:g}", "--speech", src.name, enc.name],
                 self.spec, workdir)
            _run(["opusdec", "--quiet", "--rate", str(self.decode_rate), "--float", enc.name, dec.name],
                 self.spec, workdir)
        out, sr = sf.read(dec, dtype="float32", always_2d=True)
        # Ogg pages and headers are part of what would be stored or sent, so they count.
        return CodecRun(_resample(out.mean(axis=1), sr, sample_rate), enc.stat().st_size * 8)


class Codec2Baseline(Baseline):
    """Codec 2 at one mode through ``c2enc``/``c2dec`` (8 kHz raw signed 16-bit little-endian)."""

    input_rate = 8000
    frame = 320  # 40 ms at 8 kHz: a whole number of frames for every mode

    def __init__(self, mode: str, spec: str):
        self.mode = mode
        self.spec = spec
        self.nominal_bitrate = float(mode.rstrip("C"))

    def check(self) -> None:
        if not _which("c2enc", "c2dec"):
            raise BaselineError(f"{self.spec} needs c2enc and c2dec (Debian package codec2); not found on PATH")

    def encode_decode(self, wav: np.ndarray, sample_rate: int, workdir: Path) -> CodecRun:
        x = _resample(wav, sample_rate, self.input_rate)
        n = len(x)
        x = np.pad(x, (0, -n % self.frame))  # c2enc drops a trailing partial frame
        pcm = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype("<i2")
        src, enc, dec = workdir / "input.raw", workdir / "encoded.bit", workdir / "decoded.raw"
        pcm.tofile(src)
        # A ".bit" name keeps c2enc headerless, so the file size is the payload alone.
        _run(["c2enc", self.mode, src.name, enc.name], self.spec, workdir)
        _run(["c2dec", self.mode, enc.name, dec.name], self.spec, workdir)
        out = np.fromfile(dec, dtype="<i2").astype(np.float32) / 32768.0
        return CodecRun(_resample(out[:n], self.input_rate, sample_rate), enc.stat().st_size * 8)


_ENCODEC_WORKER = r"""
import sys, numpy as np, soundfile as sf, torch
from pathlib import Path
from encodec import EncodecModel
src, dst, bandwidth, repo = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
model = EncodecModel.encodec_model_24khz(repository=repo)
model.set_target_bandwidth(bandwidth)
wav, sr = sf.read(src, dtype="float32")
with torch.no_grad():
    frames = model.encode(torch.from_numpy(wav)[None, None])
    out = model.decode(frames)[0, 0, : len(wav)].numpy()
sf.write(dst, out, sr, subtype="FLOAT")
print(sum(int(codes.numel()) for codes, _ in frames) * 10)
"""


def encodec_checkpoint_dir() -> Path:
    """Where ``torch.hub`` caches EnCodec weights (``$TORCH_HOME/hub/checkpoints``)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


class EncodecBaseline(Baseline):
    """EnCodec 24 kHz at ``bandwidth`` kbit/s, from locally cached weights only (never downloads)."""

    input_rate = 24000

    def __init__(self, bandwidth: float, spec: str):
        self.bandwidth = bandwidth
        self.spec = spec
        self.nominal_bitrate = bandwidth * 1000.0

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("encodec") is None:
            raise BaselineUnavailable(f"{self.spec}: the optional package 'encodec' is not installed")
        ckpt = encodec_checkpoint_dir() / ENCODEC_CHECKPOINT
        if not ckpt.is_file():
            raise BaselineUnavailable(f"{self.spec}: EnCodec weights are not cached at {ckpt} (no download at run time)")

    def encode_decode(self, wav: np.ndarray, sample_rate: int, workdir: Path) -> CodecRun:
        src, dst = workdir / "input.wav", workdir / "decoded.wav"
        sf.write(src, _resample(wav, sample_rate, self.input_rate), self.input_rate, subtype="FLOAT")
        cmd = [sys.executable, "-c", _ENCODEC_WORKER, src.name, dst.name, str(self.bandwidth),
               str(encodec_checkpoint_dir())]
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise BaselineUnavailable(f"{self.spec}: EnCodec failed to run: {lines[-1] if lines else proc.returncode}")
        out, sr = sf.read(dst, dtype="float32")
        return CodecRun(_resample(out, sr, sample_rate), int(proc.stdout.strip().splitlines()[-1]))


def parse_baseline(spec: str) -> Baseline:
    """A ``Baseline`` from a spec such as ``opus:6k``; ``BaselineError`` for an unknown spec."""
    name, _, arg = spec.strip().partition(":")
    name = name.lower()
    if name == "opus":
        m = re.fullmatch(r"(\d+(?:\.\d+)?)k?", arg.lower())
        if m and 6 <= float(m.group(1)) <= 510:
            return OpusBaseline(float(m.group(1)), spec)
    elif name == "codec2":
        if arg.upper() in CODEC2_MODES:
            return Codec2Baseline(arg.upper(), spec)
    elif name == "encodec":
        try:
            bandwidth = float(arg.lower().rstrip("k"))
        except ValueError:
            bandwidth = math.nan
        if bandwidth in ENCODEC_BANDWIDTHS:
            return EncodecBaseline(bandwidth, spec)
    raise BaselineError(f"unknown baseline {spec!r}; expected {SPEC_HELP}")


def xcorr(reference: np.ndarray, output: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised ``c[lag] = sum_n reference[n] * output[n + lag]`` for ``lag`` in ``[-max_lag, max_lag]``.

    Returns ``[2 * max_lag + 1]`` (index ``i`` is lag ``i - max_lag``); zeros when either signal is silent.
    """
    n = min(len(reference), len(output))
    a, b = np.asarray(reference[:n], np.float64), np.asarray(output[:n], np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if n == 0 or norm == 0:
        return np.zeros(2 * max_lag + 1)
    size = 1 << (n + max_lag).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    return corr[np.arange(-max_lag, max_lag + 1) % size] / norm


def _envelope(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop * hop
    env = np.sqrt(np.mean(np.square(x[:n], dtype=np.float64).reshape(-1, hop), axis=1))
    return env - env.mean() if len(env) else env


class DelayEstimator:
    """A codec's constant delay, pooled over several (reference, output) pairs.

    Coarse step: cross-correlation of 1 ms RMS envelopes, which follows parametric codecs
    (Codec 2 keeps the envelope, not the waveform's phase). Fine step: waveform
    cross-correlation within one envelope hop of the coarse lag, which finds the exact
    sample for waveform codecs (Opus, EnCodec) and is harmless for the others.
    """

    def __init__(self, sample_rate: int, max_delay_seconds: float = MAX_DELAY_SECONDS):
        self.hop = max(1, sample_rate // 1000)
        self.max_hops = max(1, round(max_delay_seconds * sample_rate / self.hop))
        self.max_lag = self.max_hops * self.hop
        self._env = np.zeros(2 * self.max_hops + 1)
        self._wave = np.zeros(2 * self.max_lag + 1)
        self.count = 0

    def add(self, reference: np.ndarray, output: np.ndarray) -> None:
        """Pool one pair: ``reference [N]`` and the codec's raw ``output [N']`` at the same rate."""
        self._env += xcorr(_envelope(reference, self.hop), _envelope(output, self.hop), self.max_hops)
        self._wave += xcorr(reference, output, self.max_lag)
        self.count += 1

    def delay(self) -> int:
        """Estimated delay in samples (positive: the output is late); 0 before any pair."""
        if self.count == 0 or not np.any(self._env):
            return 0
        coarse = (int(np.argmax(self._env)) - self.max_hops) * self.hop
        lo, hi = max(-self.max_lag, coarse - self.hop), min(self.max_lag, coarse + self.hop)
        window = self._wave[lo + self.max_lag:hi + self.max_lag + 1]
        return lo + int(np.argmax(window))


def shift(x: np.ndarray, lag: int, length: int) -> np.ndarray:
    """``y[n] = x[n + lag]`` for ``n < length``, zero where ``x`` has no sample."""
    y = np.zeros(length, dtype=np.float32)
    start, stop = max(0, -lag), min(length, len(x) - lag)
    if stop > start:
        y[start:stop] = x[start + lag:stop + lag]
    return y


def run_baseline(baseline: Baseline, wav: np.ndarray, sample_rate: int, workdir: Path) -> CodecRun:
    """Encode and decode ``wav [N]`` (float, at ``sample_rate``) with ``baseline`` in a fresh
    sub-folder of ``workdir`` (removed afterwards). The output is not yet aligned or trimmed."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        return baseline.encode_decode(wav, sample_rate, Path(scratch))
