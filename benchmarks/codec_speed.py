"""Tokenizer speed, memory on a one-hour file, and the cost of chunking, on real speech.

Measures, with the built-in model if installed, else ``--model DIR``, else a randomly
initialised model of the default model's size (``DEFAULT_SIZE`` below: SEANet n_filters=32,
ratios (5, 5, 4, 2), dimension 128, one LSTM layer; SimVQ K=8192, d=128; 16 kHz, 80 Hz frames):

1. encode and decode speed (x real time = audio seconds / wall seconds) on dev speech, batch
   sizes 1 and 8 (``Tokenizer.encode/decode`` on a list; one warm-up call first);
2. peak resident memory of ``Tokenizer.encode_file`` on a one-hour file (dev speech tiled,
   written to /tmp as 16-bit FLAC), in a fresh subprocess; the RSS is also sampled after each
   batch to show it stays flat (``--long-time-limit`` stops after that many wall seconds and
   reports how much of the file was encoded);
3. chunking: tokens of a few minutes of speech encoded in windows (default 30 s, 2 s context)
   against whole-file encoding (mismatch rate overall and within 1 s of a window boundary),
   and chunked against whole decoding (SNR of the difference);
4. backends (``backends.py``): torch, torch with weight norm folded and ONNX Runtime at 1 and 2 threads,
   with Opus and Codec 2, encode and decode x real time in interleaved rounds, the load average, and
   the ONNX tokens and audio against torch's. ``--backends-only`` runs just this part (a few minutes):

    python benchmarks/codec_speed.py --backends-only --append BENCHMARKS.md

Random weights give realistic speed and memory, not realistic mismatch rates (a trained LSTM
may remember longer). Runs unchanged on CUDA (``--device cuda``; peak GPU memory reported).

    python benchmarks/codec_speed.py --threads 2 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from backends import backends_table, compare_backends  # noqa: E402  (benchmarks/ is on sys.path)
from report import append_section, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dev"
LONG_FILE = Path(tempfile.gettempdir()) / "simvq-bench-long-{minutes}min-{rate}.flac"


def default_size_config():
    """The documented default-model size, for runs without a trained model."""
    from simvq_audio.models.codec import CodecConfig
    from simvq_audio.modules.seanet import SEANetConfig
    from simvq_audio.quantization.builder import QuantizerConfig

    return CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=32, ratios=(5, 5, 4, 2), dimension=128, lstm=1),
                       quantizer=QuantizerConfig(codebook_size=8192, dim=128), name="random-default-size")


def load_model(name: str | None):
    """(model, name or None, description); a random default-size model (seed 0) when no model is given
    or installed."""
    import torch

    from simvq_audio.models.codec import SimVQCodec
    from simvq_audio.models.pretrained import CONFIG_NAME, resolve_model_dir

    if name is None and (resolve_model_dir("default") / CONFIG_NAME).is_file():
        name = "default"
    if name is not None:
        return SimVQCodec.from_pretrained(name), name, f"{name}"
    torch.manual_seed(0)
    return SimVQCodec(default_size_config()).eval(), None, "random init, default-model size"


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _status_mb(field: str) -> float:
    """A ``Field: N kB`` line of /proc/self/status in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork + exec, so a child
    # would report its parent's peak.
    return _status_mb("VmHWM")


# -- data ---------------------------------------------------------------------------------------------
def dev_speech(data: Path, sample_rate: int, max_seconds: float) -> list[np.ndarray]:
    """Dev files (sorted) at the model rate, mono [N], until ``max_seconds`` are collected."""
    from simvq_audio.audio.io import find_audio_files, load_audio

    out, total = [], 0.0
    for path in find_audio_files(data):
        samples = load_audio(path, sample_rate, 1).samples[0]
        out.append(samples)
        total += len(samples) / sample_rate
        if total >= max_seconds:
            break
    if not out:
        raise SystemExit(f"no audio under {data}")
    return out


def write_long_file(speech: np.ndarray, sample_rate: int, minutes: float) -> Path:
    """Tile ``speech`` to ``minutes`` and write it as 16-bit FLAC in /tmp (cached between runs)."""
    import soundfile as sf

    path = Path(str(LONG_FILE).format(minutes=f"{minutes:g}", rate=sample_rate))
    n = int(minutes * 60 * sample_rate)
    if path.is_file() and sf.info(str(path)).frames == n:
        return path
    tmp = path.with_name(path.name + ".part.flac")
    with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        written = 0
        while written < n:
            block = speech[: n - written]
            f.write(block)
            written += len(block)
    os.replace(tmp, path)
    return path


# -- measurements ------------------------------------------------------------------------------------
def speed(model, wavs: list[np.ndarray], device: str, batch_size: int) -> dict:
    """Encode and decode x real time for ``wavs`` (list at the model rate), one warm-up call first."""
    from simvq_audio.inference import Tokenizer

    # No cap on padded batch length here, so that "batch 8" means 8 utterances per forward pass.
    tk = Tokenizer(model, device=device, batch_size=batch_size, max_batch_seconds=1e9)
    seconds = sum(len(w) for w in wavs) / tk.sample_rate
    tk.decode(tk.encode(wavs[0][: tk.sample_rate]))  # warm-up (allocators, kernels)
    _sync(device)
    start = time.perf_counter()
    batch = tk.encode_batch(wavs)
    _sync(device)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    tk.decode_batch(batch)
    _sync(device)
    decode_s = time.perf_counter() - start
    return {"batch_size": batch_size, "seconds": seconds, "encode_xrt": seconds / encode_s,
            "decode_xrt": seconds / decode_s}


def chunking(model, speech: np.ndarray, device: str, chunk_seconds: float, contexts: list[float]) -> list[dict]:
    """Chunked vs whole-signal encoding (token mismatch) per context length; for the first context also
    chunked vs whole decoding of the same codes (SNR of the difference)."""
    import torch

    from simvq_audio.inference import Tokenizer

    whole = Tokenizer(model, device=device, chunk_seconds=1e9, max_batch_seconds=1e9)
    codes_whole = whole.encode(speech)
    results = []
    for i, context in enumerate(contexts):
        chunked = Tokenizer(model, device=device, chunk_seconds=chunk_seconds, context_seconds=context)
        differ = (codes_whole != chunked.encode(speech)).any(dim=0).numpy()
        frames = np.arange(differ.size)
        boundaries = np.arange(chunked.chunk_frames, differ.size, chunked.chunk_frames)
        near = np.zeros(differ.size, bool)
        for b in boundaries:
            near |= np.abs(frames - b) < round(chunked.frame_rate)
        result = {
            "context": context, "seconds": len(speech) / whole.sample_rate, "windows": len(boundaries) + 1,
            "mismatch": float(differ.mean()), "mismatch_near": float(differ[near].mean()) if near.any() else 0.0,
            "mismatch_far": float(differ[~near].mean()) if (~near).any() else 0.0,
        }
        if i == 0:
            audio_whole, audio_chunked = whole.decode(codes_whole), chunked.decode(codes_whole)
            err = (audio_whole - audio_chunked).double()
            power = audio_whole.double().pow(2).sum() / err.pow(2).sum().clamp(min=1e-30)
            result.update(decode_snr_db=10 * torch.log10(power).item(), decode_max_abs=float(err.abs().max()))
        results.append(result)
    return results


def child_encode(path: Path, model: str, device: str, threads: int, time_limit: float) -> dict:
    """Runs in a fresh process: ``encode_file``-style streaming of ``path``; RSS sampled per batch."""
    import torch

    from simvq_audio.inference import Tokenizer

    torch.set_num_threads(threads)
    tk = Tokenizer.from_pretrained(model, device=device)
    tk.encode(np.zeros(tk.sample_rate, np.float32))  # same warm-up as the speed runs
    baseline = _peak_rss_mb()
    samples, done, start = [], [0.0], time.perf_counter()

    class Stop(Exception):
        pass

    def on_progress(seconds: float) -> None:
        done[0] += seconds
        samples.append((round(done[0] / 60, 2), round(_rss_mb())))
        if time_limit and time.perf_counter() - start > time_limit:
            raise Stop

    frames = 0
    try:
        for _, result in tk.encode_files([path], on_progress=on_progress):
            if isinstance(result, Exception):
                raise result
            frames = result.header.n_frames
    except Stop:
        pass
    wall = time.perf_counter() - start
    out = {"baseline_mb": baseline, "peak_mb": _peak_rss_mb(), "minutes_done": done[0] / 60, "frames": frames,
           "xrt": done[0] / wall, "rss_trace": samples[:: max(1, len(samples) // 8)] + samples[-1:]}
    if torch.device(device).type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def long_file_memory(path: Path, model_dir: str, device: str, threads: int, time_limit: float) -> dict:
    cmd = [sys.executable, __file__, "--child-encode", str(path), "--model", model_dir, "--device", device,
           "--threads", str(threads), "--long-time-limit", str(time_limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"long-file child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


# -- report ------------------------------------------------------------------------------------------

def report(desc: str, tk, speeds: list[dict], chunk: dict | None, long: dict | None, args,
           backends: dict | None = None) -> str:
    title = "Codec backends' speed" if args.backends_only else "Tokenizer speed and memory"
    lines = [
        f"## {title} (benchmarks/codec_speed.py), "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"Machine: {machine(args.device)}.",
        f"Model: {desc} ({tk.sample_rate} Hz, hop {tk.hop_length}, {tk.frame_rate:g} frames/s, "
        f"{tk.n_codebooks}x{tk.codebook_size} codes, {tk.bitrate:.0f} bit/s, "
        f"{sum(p.numel() for p in tk.model.parameters()) / 1e6:.1f} M parameters, id {tk.model_id}).",
        "",
        "| measure | value |",
        "|---|---:|",
    ]
    for s in speeds:
        lines.append(f"| encode, batch {s['batch_size']} ({s['seconds']:.0f} s of dev speech) | "
                     f"{s['encode_xrt']:.1f}x real time |")
        lines.append(f"| decode, batch {s['batch_size']} | {s['decode_xrt']:.1f}x real time |")
    if long:
        part = ("" if long["minutes_done"] >= args.long_minutes - 0.01
                else f", stopped after {long['minutes_done']:.1f} min by --long-time-limit")
        lines.append(f"| peak RSS, `encode_file` on a {args.long_minutes:g}-min file (streamed{part}) | "
                     f"{long['peak_mb']:.0f} MB (after model load: {long['baseline_mb']:.0f} MB) |")
        lines.append(f"| RSS after each batch, (minutes encoded, MB), sampled | "
                     f"{' '.join(f'({m:g}, {r})' for m, r in long['rss_trace'])} |")
        lines.append(f"| encode speed on that file | {long['xrt']:.1f}x real time |")
        if "gpu_peak_mb" in long:
            lines.append(f"| peak GPU memory on that file | {long['gpu_peak_mb']:.0f} MB |")
    for c in chunk or ():
        setting = f"{args.chunk_seconds:g} s windows, {c['context']:g} s context, {c['seconds']:.0f} s speech"
        lines.append(f"| chunked vs whole-file tokens: frames that differ ({setting}) | {100 * c['mismatch']:.3f} % |")
        lines.append(f"| ... within 1 s of a window boundary / elsewhere | {100 * c['mismatch_near']:.3f} % / "
                     f"{100 * c['mismatch_far']:.3f} % |")
        if "decode_snr_db" in c:
            lines.append(f"| chunked vs whole decode, same codes ({c['context']:g} s context): SNR of the "
                         f"difference, max abs | {c['decode_snr_db']:.1f} dB, {c['decode_max_abs']:.2e} |")
    if backends:
        lines = (lines[:4] if args.backends_only else lines + [""]) + backends_table(backends)
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: built-in, else random default-size)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of speech (default shared dev set)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--speed-seconds", type=float, default=60.0, help="seconds of speech for the speed runs")
    parser.add_argument("--chunk-audio-seconds", type=float, default=120.0, help="speech for the chunking test")
    parser.add_argument("--chunk-seconds", type=float, default=30.0)
    parser.add_argument("--context-seconds", type=float, nargs="+", default=[2.0, 0.0],
                        help="context lengths to compare (the first is also used for the decode comparison)")
    parser.add_argument("--long-minutes", type=float, default=60.0, help="length of the long file (0: skip)")
    parser.add_argument("--long-time-limit", type=float, default=0.0,
                        help="stop the long-file run after this many wall seconds (0: encode it all)")
    parser.add_argument("--backends-only", action="store_true",
                        help="only the backends' comparison (torch, folded, ONNX Runtime, Opus, Codec 2)")
    parser.add_argument("--no-backends", action="store_true", help="skip the backends' comparison")
    parser.add_argument("--backend-threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts for the backends' comparison (default 1 2)")
    parser.add_argument("--backend-rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--append", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--child-encode", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_encode:
        print(json.dumps(child_encode(args.child_encode, args.model, args.device, args.threads,
                                      args.long_time_limit)))
        return 0
    import torch

    from simvq_audio.inference import Tokenizer

    torch.set_num_threads(args.threads)
    model, name, desc = load_model(args.model)
    tk = Tokenizer(model, device=args.device)
    if args.backends_only:
        args.batch_sizes, args.chunk_audio_seconds, args.long_minutes = [], 0, 0
    needed = max(args.speed_seconds, args.chunk_audio_seconds, 600.0 if args.long_minutes else 0.0)
    wavs = dev_speech(args.data, tk.sample_rate, needed)
    speech = np.concatenate(wavs)
    speeds, chunk, long = [], None, None
    speed_wavs, total = [], 0.0
    for w in wavs:
        if total >= args.speed_seconds:
            break
        speed_wavs.append(w)
        total += len(w) / tk.sample_rate
    for bs in args.batch_sizes:
        speeds.append(speed(model, speed_wavs, args.device, bs))
        print(f"batch {bs}: encode {speeds[-1]['encode_xrt']:.1f}x, decode {speeds[-1]['decode_xrt']:.1f}x",
              flush=True)
    if args.chunk_audio_seconds > 0:
        chunk = chunking(model, speech[: int(args.chunk_audio_seconds * tk.sample_rate)], args.device,
                         args.chunk_seconds, args.context_seconds)
        print(f"chunking: {chunk}", flush=True)
    if args.long_minutes > 0:
        path = write_long_file(speech, tk.sample_rate, args.long_minutes)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = name or tmp
            if name is None:
                model.save_pretrained(tmp)
            long = long_file_memory(path, model_dir, args.device, args.threads, args.long_time_limit)
        print(f"long file: {long}", flush=True)
    backends = None
    if not args.no_backends:
        from simvq_audio.models.pretrained import model_folder

        backends = compare_backends(model, None if name is None else str(model_folder(name)), speed_wavs,
                                    args.backend_threads, args.backend_rounds)
        torch.set_num_threads(args.threads)
    text = report(desc, tk, speeds, chunk, long, args, backends)
    print(text)
    if args.append:
        append_section(args.append, text)
        print(f"appended to {args.append}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
