"""Encode and decode speed of the codec's CPU backends side by side, with Opus and Codec 2, in one run.

Used by ``codec_speed.py --backends-only`` (and by its full run): torch as loaded (weight norm
recomputed on every call), torch with weight norm folded (``simvq_audio.onnx.fold_weight_norm``) and
ONNX Runtime (``simvq_audio.onnx.OnnxCodec`` on a fresh ``export_onnx``), each at every thread count
asked for, in interleaved rounds so that a change in the machine's load hits all of them alike; the
load average is read before and after. The neural backends code each utterance alone (batch 1,
what the tokenizer does on a CPU); Opus (``opusenc``/``opusdec``) and Codec 2 (``c2enc``/``c2dec``),
single-threaded command-line tools, code the utterances concatenated into one file per round (so
process start-up is paid once), from and to files in /tmp. One more row puts the same speech,
concatenated and cut into 10 s windows, through the graphs 8 windows per call (how a long file's
windows could go; ONNX Runtime gave every token of 56 such windows equal to the windows alone). The same run checks the backends'
tokens against torch's and the decoded audio's difference.
"""

from __future__ import annotations

import copy
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

WINDOW_SECONDS, WINDOW_BATCH = 10.0, 8  # the batched-windows row: a long file's windows through the graphs together


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _torch_backend(codec, threads: int):
    import torch

    def encode(wav: np.ndarray):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return codec.encode(torch.from_numpy(wav)[None, None])

    def decode(codes, n: int):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return codec.decode(codes, n)

    return encode, decode


def _onnx_backend(runtime):
    def encode(wav: np.ndarray):
        return runtime.encode(wav[None, None])

    def decode(codes, n: int):
        return runtime.decode(codes, n)

    return encode, decode


def _windows(wavs: list[np.ndarray], sample_rate: int, seconds: float) -> list[np.ndarray]:
    """The utterances concatenated and cut into windows of ``seconds`` (the last one shorter)."""
    x = np.concatenate(wavs)
    n = int(seconds * sample_rate)
    return [x[i:i + n] for i in range(0, len(x), n)]


def _onnx_batched_backend(runtime, batch: int):
    """Equal-length windows ``batch`` at a time through the graphs (a long file's windows; a shorter last one alone)."""
    def run(windows: list[np.ndarray]):
        full = [w for w in windows if len(w) == len(windows[0])]
        rest = windows[len(full):]
        stacked = np.stack(full)[:, None]
        codes = [runtime.encode(stacked[i:i + batch]) for i in range(0, len(full), batch)]
        codes += [runtime.encode(w[None, None]) for w in rest]
        return codes

    def decode_all(codes: list[np.ndarray]):
        return [runtime.decode(c) for c in codes]

    return run, decode_all


def _time_batched(encode_all, decode_all, windows: list[np.ndarray]) -> tuple[float, float]:
    start = time.perf_counter()
    codes = encode_all(windows)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decode_all(codes)
    return encode_s, time.perf_counter() - start


def _time_neural(encode, decode, wavs: list[np.ndarray]) -> tuple[float, float]:
    start = time.perf_counter()
    codes = [encode(w) for w in wavs]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for c, w in zip(codes, wavs, strict=True):
        decode(c, len(w))
    return encode_s, time.perf_counter() - start


def _time_tool(encode_cmd: list[str], decode_cmd: list[str], cwd: Path) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run(encode_cmd, cwd=cwd, check=True, capture_output=True)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(decode_cmd, cwd=cwd, check=True, capture_output=True)
    return encode_s, time.perf_counter() - start


def classic_codecs(speech: np.ndarray, sample_rate: int, workdir: Path) -> dict:
    """name -> a no-argument function timing one encode and one decode of ``speech`` (float at ``sample_rate``)."""
    import soundfile as sf
    import soxr

    out = {}
    if shutil.which("opusenc") and shutil.which("opusdec"):
        sf.write(workdir / "in.wav", speech, sample_rate, subtype="PCM_16")
        out["Opus 6 kbit/s (opusenc/opusdec)"] = lambda: _time_tool(
            ["opusenc", "--quiet", "--bitrate", "6", "--speech", "in.wav", "enc.opus"],
            ["opusdec", "--quiet", "--rate", str(sample_rate), "enc.opus", "dec.wav"], workdir)
    if shutil.which("c2enc") and shutil.which("c2dec"):
        x = soxr.resample(speech, sample_rate, 8000)
        (np.clip(x, -1, 32767 / 32768) * 32768).astype("<i2").tofile(workdir / "in.raw")
        out["Codec 2 1200 bit/s (c2enc/c2dec)"] = lambda: _time_tool(
            ["c2enc", "1200", "in.raw", "enc.bit"], ["c2dec", "1200", "enc.bit", "dec.raw"], workdir)
    return out


def parity(codec, runtime, wavs: list[np.ndarray]) -> dict:
    """Tokens of ONNX Runtime (and of torch with weight norm folded) against torch's; decoded audio of torch's
    codes by ONNX Runtime against torch (max abs difference, smallest per-utterance SNR of the difference)."""
    import torch

    from simvq_audio.onnx import fold_weight_norm

    folded = fold_weight_norm(copy.deepcopy(codec))
    tokens = equal = equal_folded = 0
    worst, snrs = 0.0, []
    with torch.inference_mode():
        for w in wavs:
            x = torch.from_numpy(w)[None, None]
            codes = codec.encode(x)
            tokens += codes.numel()
            equal += int((runtime.encode(x.numpy()) == codes.numpy()).sum())
            equal_folded += int((folded.encode(x) == codes).sum())
            ref = codec.decode(codes, len(w)).numpy()
            diff = runtime.decode(codes.numpy(), len(w)) - ref
            worst = max(worst, float(np.abs(diff).max()))
            snrs.append(10 * np.log10(np.square(ref).sum() / max(np.square(diff).sum(), 1e-30)))
    return {"files": len(wavs), "tokens": tokens, "equal": equal, "equal_folded": equal_folded,
            "max_abs": worst, "min_snr_db": float(min(snrs)), "median_snr_db": float(np.median(snrs))}


def compare_backends(codec, model_dir: str | None, wavs: list[np.ndarray], threads: list[int], rounds: int,
                     log=print) -> dict:
    """Interleaved timing of every backend at every thread count, plus ``parity``; see the module docstring."""
    from simvq_audio.onnx import OnnxCodec, export_onnx, fold_weight_norm

    sample_rate = codec.sample_rate
    seconds = sum(len(w) for w in wavs) / sample_rate
    folded = fold_weight_norm(copy.deepcopy(codec))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        export_onnx(codec, tmp / "onnx", model_dir=model_dir)
        export_s = time.perf_counter() - start
        runtimes = {t: OnnxCodec(tmp / "onnx", threads=t) for t in threads}
        backends = {}
        for t in threads:
            backends[("torch", t)] = _torch_backend(codec, t)
            backends[("torch, weight norm folded", t)] = _torch_backend(folded, t)
            backends[("ONNX Runtime", t)] = _onnx_backend(runtimes[t])
        windows = _windows(wavs, sample_rate, WINDOW_SECONDS)
        batched = {(f"ONNX Runtime, {WINDOW_SECONDS:g} s windows {WINDOW_BATCH} per call", t):
                   _onnx_batched_backend(runtimes[t], WINDOW_BATCH) for t in threads}
        tools = classic_codecs(np.concatenate(wavs), sample_rate, tmp)
        check = parity(codec, runtimes[threads[0]], wavs)
        log(f"parity: {check}")
        for encode, decode in backends.values():  # warm-up: allocators, kernels, ORT's first-run planning
            _time_neural(encode, decode, wavs[:1])
        times: dict = {key: [] for key in [*backends, *batched, *((name, 1) for name in tools)]}
        load_before = _load()
        for r in range(rounds):
            for key, (encode, decode) in backends.items():
                times[key].append(_time_neural(encode, decode, wavs))
            for key, (encode_all, decode_all) in batched.items():
                times[key].append(_time_batched(encode_all, decode_all, windows))
            for name, run in tools.items():
                times[(name, 1)].append(run())
            log(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{k[0]} x{k[1]}: {seconds / v[-1][0]:.1f}/{seconds / v[-1][1]:.1f}" for k, v in times.items()))
        load_after = _load()
    rows = []
    for (name, t), runs in times.items():
        enc = [seconds / e for e, _ in runs]
        dec = [seconds / d for _, d in runs]
        rows.append({"backend": name, "threads": t, "encode_xrt": statistics.median(enc),
                     "decode_xrt": statistics.median(dec), "encode_range": (min(enc), max(enc)),
                     "decode_range": (min(dec), max(dec))})
    return {"seconds": seconds, "files": len(wavs), "rounds": rounds, "rows": rows, "parity": check,
            "load": (load_before, load_after), "export_seconds": export_s}


def backends_table(result: dict) -> list[str]:
    """Markdown lines: x real time per backend and thread count, the ratio to torch at the same threads."""
    torch_rows = {r["threads"]: r for r in result["rows"] if r["backend"] == "torch"}
    # The batched-windows row codes the same speech, concatenated and cut into windows (no context here).
    lines = [f"Backends on {result['seconds']:.0f} s of dev speech ({result['files']} utterances, each alone), median "
             f"of {result['rounds']} interleaved rounds (min-max in brackets); load average "
             f"{result['load'][0]:.1f} before, {result['load'][1]:.1f} after.", "",
             "| backend | threads | encode x real time | decode x real time | encode / torch | decode / torch |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        base = torch_rows.get(r["threads"]) if "(" not in r["backend"] else None
        ratio = (f"{r['encode_xrt'] / base['encode_xrt']:.2f} | {r['decode_xrt'] / base['decode_xrt']:.2f}"
                 if base else "- | -")
        threads = r["threads"] if "(" not in r["backend"] else "1 (tool)"
        lines.append(f"| {r['backend']} | {threads} | {r['encode_xrt']:.1f} ({r['encode_range'][0]:.1f}-"
                     f"{r['encode_range'][1]:.1f}) | {r['decode_xrt']:.1f} ({r['decode_range'][0]:.1f}-"
                     f"{r['decode_range'][1]:.1f}) | {ratio} |")
    p = result["parity"]
    lines += ["", f"Tokens: ONNX Runtime {p['equal']:,} of {p['tokens']:,} equal to torch's "
              f"({p['files']} utterances), torch with weight norm folded {p['equal_folded']:,} of {p['tokens']:,}. "
              f"Decoded audio (torch's codes), ONNX Runtime against torch: max abs difference {p['max_abs']:.1e}, "
              f"SNR of the difference {p['min_snr_db']:.1f} dB at worst, {p['median_snr_db']:.1f} dB median. "
              f"Export (torchscript exporter) took {result['export_seconds']:.0f} s."]
    return lines
