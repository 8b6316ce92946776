"""Cost of a training step on this machine: reconstruction-only vs each adversarial set.

Builds the default-16k recipe's trainer once per setting (real speech from
``../shared/data``, batch 8 x 0.8 s unless overridden) and times optimiser steps after a
warm-up, in interleaved rounds (setting A, B, C, A, B, C, ...) so that a machine whose
load changes during the run affects every setting alike. Reports seconds per step (median
over rounds) and the ratio to the reconstruction-only step of the same decoder.

Settings (each a list of ``key=value`` overrides of recipes/default-16k/config.yaml, the v2
model with its pitch parts): ``recon`` (mel + quantizer + pitch losses), ``mpd4`` (MPD, 4
channels), ``mrd8`` (MRD, 8 channels), ``mpd4+mrd8`` (the CPU-cheap set the recipe uses),
``mpd8+mrd16``, and ``mpd16+msstft32`` (v1's recipe), each with the SEANet decoder and with the
Vocos decoder (``--decoders``), the latter also with its encoder and quantizer frozen.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step_cost.py --rounds 3 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "recipes" / "default-16k" / "config.yaml"
MPD = ["discriminator.use_mpd=true", "discriminator.use_stft=false", "discriminator.use_mrd=false"]
DISCRIMINATORS = {
    "recon": None,
    "mpd4": [*MPD, "discriminator.mpd_channels=4"],
    "mrd8": [*MPD, "discriminator.use_mpd=false", "discriminator.use_mrd=true", "discriminator.mrd_channels=8"],
    "mpd4+mrd8": [*MPD, "discriminator.mpd_channels=4", "discriminator.use_mrd=true", "discriminator.mrd_channels=8"],
    "mpd8+mrd16": [*MPD, "discriminator.mpd_channels=8", "discriminator.use_mrd=true",
                   "discriminator.mrd_channels=16"],
    # v1's recipe: MPD 16 + MS-STFT 32 at three resolutions
    "mpd16+msstft32": [*MPD, "discriminator.mpd_channels=16", "discriminator.use_stft=true",
                       "discriminator.stft_filters=32", "discriminator.stft_n_ffts=[1024,512,256]",
                       "discriminator.stft_hop_lengths=[256,128,64]", "discriminator.stft_win_lengths=[1024,512,256]"],
}
VOCOS = ["model.decoder.kind=vocos", "model.decoder.dim=384", "model.decoder.intermediate_dim=1024",
         "model.decoder.n_layers=6", "model.excitation_harmonics=0"]
DECODERS = {
    "seanet": [],
    "vocos": VOCOS,
    "vocos-frozen": [*VOCOS, "training.freeze=[encoder,quantizer]"],
}


def build(run_dir: Path, overrides: list[str]):
    from accelerate.state import AcceleratorState, GradientState

    from simvq_audio.training.config import load_config
    from simvq_audio.training.trainer import Trainer

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    common = [f"logging.dir={run_dir}", "checkpoint.resume=none", "checkpoint.every=1000000",
              "validation.every=0", "logging.every=1000000", "logging.progress_bar=false", "data.num_workers=0"]
    return Trainer(load_config(CONFIG, [*common, *overrides]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per setting and round (default 4)")
    parser.add_argument("--decoders", nargs="+", default=["seanet"], choices=list(DECODERS),
                        help="decoders to time (default: seanet)")
    parser.add_argument("--sets", nargs="+", default=list(DISCRIMINATORS), choices=list(DISCRIMINATORS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/simvq-bench-step-cost"))
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()

    trainers = {}
    for dec in args.decoders:
        for name in args.sets:
            ov = DISCRIMINATORS[name]
            start = 10**9 if ov is None else 0
            t = build(args.work / f"{dec}-{name}", [*DECODERS[dec], *(ov or []),
                                                     f"training.discriminator_start_step={start}"])
            t.train(until_step=1)  # warm-up: allocations, first data batch
            trainers[(dec, name)] = t
    times: dict = {key: [] for key in trainers}
    load_before = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    for _ in range(args.rounds):
        for key, t in trainers.items():
            start = t.state.step
            t0 = time.perf_counter()
            t.train(until_step=start + args.steps)
            times[key].append((time.perf_counter() - t0) / args.steps)
    for t in trainers.values():
        t.close()
    lines = ["| decoder | discriminators | s/step | x recon |", "|---|---|---:|---:|"]
    for (dec, name), values in times.items():
        sec = statistics.median(values)
        ref = statistics.median(times[(dec, "recon")]) if (dec, "recon") in times else float("nan")
        lines.append(f"| {dec} | {name} | {sec:.2f} | {sec / ref:.2f} |")
    table = "\n".join(lines)
    head = (f"## Training step cost ({datetime.date.today()})\n\n{machine('cpu')}; load avg before the timed "
            f"rounds {load_before}. Batch 8 x 0.8 s of 16 kHz speech, {args.rounds} interleaved rounds of "
            f"{args.steps} steps, median s/step.\n\n")
    print(head + table)
    if args.append:
        append_section(args.append, head + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
