"""Evaluate a SimVQ model and real-codec baselines on the same reference files.

Every system encodes and decodes every reference file; metrics compare the decoded
signal with the reference, both mono at the comparison rate (the model's sample rate,
or ``EvalConfig.sample_rate`` without a model). Outputs, in ``output_dir``:

- ``per_file.csv``: one row per file and system (``CSV_COLUMNS``);
- ``summary.json``: per system mean, std and n of each column, bitrates, delays,
  codebook utilisation and perplexity, the model id and the date;
- ``plots/``: mel spectrograms of the first files and the model's code-usage histogram.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import pitch as pitch_tracking
from ..audio.io import find_audio_files, load_audio
from ..errors import AudioError, SimVQError
from ..fileio import atomic_write_text, check_not_input
from ..metrics import compute_metrics
from ..quantization.tracker import uniform_ceiling
from .baselines import Baseline, BaselineUnavailable, CodecRun, DelayEstimator, parse_baseline, run_baseline, shift
from .plots import plot_code_usage, plot_mel_comparison

logger = logging.getLogger(__name__)

METRICS = ("pesq_wb", "stoi", "mel_distance", "si_sdr", *pitch_tracking.PITCH_METRIC_NAMES)  # pitch: empty if off
CSV_COLUMNS = ("file", "system", "duration_s", *METRICS, "bitrate_nominal", "bitrate_actual", "delay_samples")
SUMMARY_FORMAT = "simvq-audio-eval"
SUMMARY_VERSION = 1
NO_MODEL_RATE = 16000
CALIBRATION_FILES = 8  # files pooled to estimate each baseline's delay


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate.

    Attributes:
        model: model folder or built-in name; ``None`` evaluates baselines only.
        baselines: specs such as ``("opus:6k", "codec2:1200")`` (see ``baselines.parse_baseline``).
        max_files: evaluate only ``max_files`` references, spread evenly over the sorted (or
            manifest) order, so a subset spans the speakers instead of taking the first one's files.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... for the model.
        plots: mel-spectrogram figures for the first ``plots`` files (0: none).
        sample_rate: comparison rate in Hz when there is no model (default 16000).
        pitch: voicing F1, RMS pitch error (cents) and gross pitch error from pYIN F0 at 10 ms
            (``simvq_audio.pitch``); about 0.1 s of CPU per second of audio and system, so it
            can be turned off (the columns are then empty).
    """

    model: str | None = "default"
    baselines: tuple[str, ...] = ()
    max_files: int | None = None
    device: str = "auto"
    plots: int = 3
    sample_rate: int | None = None
    pitch: bool = True


@dataclass
class EvalReport:
    """Result of ``evaluate``: the rows written to the CSV, the summary written as JSON, the paths."""

    rows: list[dict]
    summary: dict
    csv_path: Path
    summary_path: Path
    plot_paths: list[Path] = field(default_factory=list)


def spread(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (all of them when ``n >= len(items)``), in order."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def reference_files(reference: str | os.PathLike) -> tuple[list[Path], Path]:
    """Audio files of a folder, or of a ``.jsonl`` manifest, and the folder names are relative to."""
    reference = Path(reference)
    if not reference.exists():
        raise SimVQError(f"{reference}: reference not found (expected a folder of audio or a .jsonl manifest)")
    if reference.is_file() and reference.suffix.lower() == ".jsonl":
        from ..data.manifest import read_manifest

        files, base = [e.path for e in read_manifest(reference)], reference.parent
    else:
        files, base = find_audio_files(reference), reference if reference.is_dir() else reference.parent
    if not files:
        raise SimVQError(f"{reference}: no audio files to evaluate")
    return files, base


def _display_name(path: Path, base: Path) -> str:
    try:
        return str(Path(os.path.abspath(path)).relative_to(os.path.abspath(base)))
    except ValueError:
        return str(path)


def codebook_stats(counts: np.ndarray) -> dict:
    """Utilisation (fraction of codes used) and perplexity (``exp`` of the code entropy) from ``counts [n_q, K]``.

    Both are per codebook, and averaged over codebooks in ``codebook_utilisation`` / ``perplexity``.
    ``dead_codes``: codes no frame of the set used (all codebooks); ``uniform_ceiling``: the utilisation
    a uniform code distribution would reach over the set's frames, ``1 - (1 - 1/K) ** frames``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    used = (counts > 0).mean(axis=1)
    ceiling = np.array([uniform_ceiling(int(n), counts.shape[1]) for n in counts.sum(axis=1)])
    p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    ppl = np.exp(entropy)
    return {
        "codebook_utilisation": float(used.mean()),
        "perplexity": float(ppl.mean()),
        "codebook_utilisation_per_codebook": used.tolist(),
        "perplexity_per_codebook": ppl.tolist(),
        "codes_used": int((counts > 0).sum()),
        "dead_codes": int((counts == 0).sum()),
        "uniform_ceiling": float(ceiling.mean()),
        "codebook_size": int(counts.shape[1]),
    }


def column_stats(values) -> dict:
    """Mean, sample std (ddof=1; 0 for one value) and n over the finite ``values`` (NaN: metric failed)."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "n": int(len(x))}


class _ModelSystem:
    """The SimVQ model seen as one more system: encode, count codes, decode."""

    def __init__(self, model: str, device: str, tokenizer=None):
        from ..inference import Tokenizer
        from ..models.pretrained import resolve_model_dir

        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer.from_pretrained(model, device=device)
        self.name = self.tokenizer.model_name
        self.nominal_bitrate = self.tokenizer.bitrate
        self.spec = f"model:{model}"
        self.path = str(resolve_model_dir(model))
        self.counts = np.zeros((self.tokenizer.n_codebooks, self.tokenizer.codebook_size), dtype=np.int64)

    def run(self, wav: np.ndarray, sample_rate: int) -> CodecRun:
        tok = self.tokenizer
        codes = tok.encode(wav, sample_rate)  # [n_q, T]
        flat = codes.detach().cpu().numpy().astype(np.int64)
        for q in range(flat.shape[0]):
            self.counts[q] += np.bincount(flat[q], minlength=tok.codebook_size)
        audio = tok.decode(codes, length=len(wav)).detach().cpu().numpy()  # [C, N]
        bits = flat.size * math.log2(tok.codebook_size)
        return CodecRun(audio.mean(axis=0).astype(np.float32), round(bits))

    def describe(self) -> dict:
        tok = self.tokenizer
        return {
            "id": tok.model_id, "name": tok.model_name, "path": self.path, "sample_rate": tok.sample_rate,
            "frame_rate": tok.frame_rate, "codebook_size": tok.codebook_size, "n_codebooks": tok.n_codebooks,
            "bitrate": tok.bitrate,
        }


def _row(file: str, system, ref: np.ndarray, audio: np.ndarray, rate: int, bits: int | None, delay: int,
         ref_f0: np.ndarray | None) -> dict:
    """One CSV row: ``audio`` (aligned, same length as ``ref``) scored against ``ref``.

    ``ref_f0``: the reference's F0 track (``pitch.track_pitch``), or ``None`` for no pitch metrics.
    """
    scores = compute_metrics(ref, audio, rate, pitch=ref_f0 is not None, ref_f0=ref_f0)
    seconds = len(ref) / rate
    return {"file": file, "system": system.name, "duration_s": seconds,
            **{m: float(scores[m]) if m in scores else None for m in METRICS},
            "bitrate_nominal": float(system.nominal_bitrate),
            "bitrate_actual": None if bits is None else bits / seconds, "delay_samples": delay}


def _load_reference(path: Path, rate: int, skipped: list[dict]) -> np.ndarray | None:
    try:
        return load_audio(path, sample_rate=rate, channels=1).samples[0]
    except AudioError as exc:
        logger.warning("skipping %s", exc)
        skipped.append({"file": str(path), "error": str(exc)})
        return None


def _check_baselines(specs: tuple[str, ...]) -> tuple[list[Baseline], dict[str, str]]:
    baselines = [parse_baseline(s) for s in dict.fromkeys(specs)]  # an unknown spec fails before any work
    ready, unavailable = [], {}
    for b in baselines:
        try:
            b.check()  # a missing tool raises BaselineError: the user asked for it
            ready.append(b)
        except BaselineUnavailable as exc:
            logger.warning("%s", exc)
            unavailable[b.spec] = str(exc)
    return ready, unavailable


def _calibrate(baselines, refs, rate, workdir, unavailable) -> tuple[list[Baseline], dict, dict]:
    """Run each baseline on the first references; its delay and those runs (reused later)."""
    kept, delays, cache = [], {}, {}
    for b in baselines:
        est = DelayEstimator(rate)
        try:
            for i, ref in refs.items():
                cache[b.spec, i] = run_baseline(b, ref, rate, workdir)
                est.add(ref, cache[b.spec, i].audio)
        except BaselineUnavailable as exc:
            logger.warning("%s", exc)
            unavailable[b.spec] = str(exc)
            continue
        kept.append(b)
        delays[b.spec] = est.delay()
    return kept, delays, cache


def evaluate(reference: str | os.PathLike, output_dir: str | os.PathLike, config: EvalConfig,
             progress: bool = False, tokenizer=None) -> EvalReport:
    """Evaluate ``config``'s model and baselines on ``reference`` (folder or manifest); write outputs.

    ``tokenizer``: an already loaded ``Tokenizer`` for ``config.model`` (then ``config.device``
    is not used); by default ``Tokenizer.from_pretrained(config.model, config.device)``.

    Raises ``SimVQError`` for a missing reference, no audio, an unknown baseline spec, a missing
    codec tool or an unloadable model. Unreadable reference files are skipped (listed in the
    summary); optional baselines that cannot run here are reported as unavailable.
    """
    if config.model is None and not config.baselines:
        raise SimVQError("nothing to evaluate: no model and no baselines")
    if config.max_files is not None and config.max_files < 1:
        raise SimVQError(f"max_files must be at least 1, got {config.max_files}")
    if config.plots < 0:
        raise SimVQError(f"plots must be 0 or more, got {config.plots}")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SimVQError(f"{out}: output path exists and is not a folder")
    files, base = reference_files(reference)
    files = spread(files, config.max_files) if config.max_files is not None else files
    baselines, unavailable = _check_baselines(tuple(config.baselines))
    model = _ModelSystem(config.model, config.device, tokenizer) if config.model is not None else None
    if model is not None and config.sample_rate not in (None, model.tokenizer.sample_rate):
        raise SimVQError(f"sample_rate {config.sample_rate} given with a model: metrics use the model's rate")
    rate = model.tokenizer.sample_rate if model is not None else (config.sample_rate or NO_MODEL_RATE)
    csv_path, summary_path, plot_dir = out / "per_file.csv", out / "summary.json", out / "plots"
    check_not_input(csv_path, files)
    check_not_input(summary_path, files)
    out.mkdir(parents=True, exist_ok=True)
    if config.plots > 0:
        plot_dir.mkdir(exist_ok=True)

    rows, skipped, plot_paths, refs = [], [], [], {}
    for i, path in enumerate(files[:CALIBRATION_FILES]):
        ref = _load_reference(path, rate, skipped)
        if ref is not None:
            refs[i] = ref
    with tempfile.TemporaryDirectory(prefix="simvq-eval-") as tmp:
        workdir = Path(tmp)
        baselines, delays, cache = _calibrate(baselines, refs, rate, workdir, unavailable)
        evaluated = 0
        for i, path in enumerate(tqdm(files, desc="eval", unit="file", disable=not progress)):
            ref = refs.pop(i, None) if i < CALIBRATION_FILES else _load_reference(path, rate, skipped)
            if ref is None:
                continue
            name, outputs = _display_name(path, base), {}
            ref_f0 = pitch_tracking.track_pitch(ref, rate) if config.pitch else None  # once per file
            for system in ([model] if model else []) + baselines:
                if system is model:
                    run, delay = model.run(ref, rate), 0
                else:
                    run = cache.pop((system.spec, i), None) or run_baseline(system, ref, rate, workdir)
                    delay = delays[system.spec]
                outputs[system.name] = shift(run.audio, delay, len(ref))
                rows.append(_row(name, system, ref, outputs[system.name], rate, run.bits, delay, ref_f0))
            if evaluated < config.plots:
                png = plot_dir / f"mel_{evaluated:03d}_{Path(name).stem}.png"
                plot_mel_comparison(png, ref, outputs, rate, title=name)
                plot_paths.append(png)
            evaluated += 1
    if evaluated == 0:
        raise SimVQError(f"{reference}: none of the {len(files)} audio files could be read")

    summary = _summary(reference, rate, evaluated, skipped, model, baselines, delays, unavailable, rows)
    if model is not None and config.plots > 0:
        png = plot_dir / "code_usage.png"
        stats = summary["systems"][0]
        plot_code_usage(png, model.counts, stats["codebook_utilisation"], stats["perplexity"], title=model.name)
        plot_paths.append(png)
    summary["outputs"] = {"csv": csv_path.name, "plots": [str(p.relative_to(out)) for p in plot_paths]}
    atomic_write_text(csv_path, rows_to_csv(rows))
    atomic_write_text(summary_path, json.dumps(_json_safe(summary), indent=2) + "\n")
    return EvalReport(rows, summary, csv_path, summary_path, plot_paths)


def _summary(reference, rate, evaluated, skipped, model, baselines, delays, unavailable, rows) -> dict:
    def system_stats(name: str) -> dict:
        mine = [r for r in rows if r["system"] == name]
        cols = (*METRICS, "bitrate_actual")
        return {"n": len(mine), "metrics": {c: column_stats(r[c] for r in mine) for c in cols}}

    systems = []
    if model is not None:
        systems.append({"name": model.name, "kind": "model", "spec": model.spec, "available": True,
                        "bitrate_nominal": model.tokenizer.bitrate, "delay_samples": 0,
                        **system_stats(model.name), **codebook_stats(model.counts)})
    for b in baselines:
        systems.append({"name": b.spec, "kind": "baseline", "spec": b.spec, "available": True,
                        "bitrate_nominal": b.nominal_bitrate, "delay_samples": delays[b.spec],
                        **system_stats(b.spec)})
    for spec, reason in unavailable.items():
        systems.append({"name": spec, "kind": "baseline", "spec": spec, "available": False, "reason": reason})
    return {
        "format": SUMMARY_FORMAT, "format_version": SUMMARY_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference": str(reference), "sample_rate": rate, "n_files": evaluated, "skipped": skipped,
        "model_id": model.tokenizer.model_id if model is not None else None,
        "model": model.describe() if model is not None else None,
        "metrics": {"pesq_wb": "wideband PESQ at 16 kHz", "stoi": "STOI", "mel_distance": "log-mel L1",
                    "si_sdr": "SI-SDR (dB)", "voicing_f1": "F1 of voiced frames (pYIN, 10 ms) vs the reference's",
                    "pitch_rmse_cents": "RMS F0 error (cents) over frames voiced in both",
                    "gross_pitch_error": "share of frames voiced in both with F0 error > 100 cents",
                    "bitrate_actual": "bits/s from the encoded size"},
        "systems": systems,
    }


def _json_safe(obj):
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def rows_to_csv(rows: list[dict]) -> str:
    """CSV text with ``CSV_COLUMNS``; floats written exactly (``repr``), missing values empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return buf.getvalue()


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(summary: dict) -> str:
    """The console table: one row per system (means), then one line per unavailable system."""
    head = ("system", "kbps", "n", "PESQ-WB", "STOI", "mel", "SI-SDR", "V-F1", "cents", "GPE", "util", "ppl")
    lines, notes = [], []
    for s in summary["systems"]:
        if not s["available"]:
            notes.append(f"unavailable: {s['reason']}")
            continue
        means = {k: v["mean"] for k, v in s["metrics"].items()}
        means.update(util=s.get("codebook_utilisation"), ppl=s.get("perplexity"))
        cells = [_fmt(means.get(k), d) for k, d in (("pesq_wb", 3), ("stoi", 3), ("mel_distance", 3), ("si_sdr", 2),
                                                   ("voicing_f1", 3), ("pitch_rmse_cents", 1),
                                                   ("gross_pitch_error", 3), ("util", 3), ("ppl", 1))]
        lines.append((s["name"], f"{s['bitrate_nominal'] / 1000:.2f}", str(s["n"]), *cells))
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in [head, *lines]]
    return "\n".join(text + notes)
