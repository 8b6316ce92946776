"""Codebook usage inside the codec: which setting keeps a large SimVQ codebook in use (issue 11).

Each run trains a small codec (recipes/tiny: SEANet 16 filters, 64-d latent, 100 frames/s)
with the project's own trainer on ``shared/data/train`` for a fixed number of steps,
reconstruction losses only (mel + quantizer), batch 8 x 0.5 s = 400 frames a step. One
factor is changed at a time from the base (the project's defaults):

    base      SimVQ, 8-d lookup, data-dependent init, AdamW 5e-4 betas (0.8, 0.99), beta 0.25,
              quantizer loss weight 1000, Euclidean search
    dim4 / dim32 / dim64 / dim128      lookup dimension (64 = the latent size; 4: about the 1-3 dimensions
              the 8-d lookup's latents use)
    paper-opt Adam at 1e-4, betas (0.5, 0.9) (the SimVQ paper's audio setting)
    paper-init no data-dependent init: the codebook starts from its own Gaussian
    cosine    l2-normalised (cosine) search
    beta1     commitment weight 1.0 instead of 0.25
    qloss1    quantizer loss weight 1 instead of 1000
    spread01 / spread / spread10   loss.spread at 0.1 / 1 / 10: the latents' covariance pushed towards isotropic
              (losses/spread.py), against the one dominant direction every other arm's latents have
    match01 / match / match10 / match30 / match100      loss.match at 0.1 / 1 / 10 / 30 / 100: the sliced
              Wasserstein distance from the latents to the codebook (losses/match.py): their whole
              distribution, not only its covariance
    match-dim32 / match10-dim4 / match-dim4      the term with another lookup dimension
    boost6 / match-boost6 / match10-boost6      crops boosted by at most 6 dB (data.max_boost_db; default 40) on their way to
              the random training level: near-silent crops stay quiet, as they are when a file is encoded
    crop2 / match10-crop2      2 s crops, batch 2 (the same 400 frames a step): more context per crop, fewer crop edges
    match10-crop2-b8      2 s crops at batch 8: as many crops a step as the base, 4x its frames (and cost)
    natural / match10-natural      no random training level (data.loudness_db=null): every crop at its file's
              recorded level, as ``simvq-audio encode`` sees it

each at every ``--sizes`` (default K = 8,192 and 65,536) and for every ``--kinds`` (SimVQ and
plain VQ at the same settings). Per run: codes used over the trainer's last window of 3 K
training frames (``codebook/utilization``) with the uniform ceiling for that many frames,
perplexity, dead codes (unused in the last 1,000 steps), the mean training mel loss over the
last 100 steps; then on ``--dev-files`` files of ``shared/data/dev``: codes used, the uniform
ceiling for that many frames, perplexity and the mel distance of the reconstruction. A run
"collapsed" when its window used under 1% of the codes. Curves (usage against steps) go to
``--json``.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/codebook_usage.py --threads 1 --steps 1000 \\
        --json /tmp/usage.json --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "recipes" / "tiny" / "config.yaml"
DEFAULT_DATA = REPO.parent / "shared" / "data"
ARMS: dict[str, list[str]] = {
    "base": [],
    "dim4": ["model.quantizer.dim=4"],
    "dim32": ["model.quantizer.dim=32"],
    "dim64": ["model.quantizer.dim=64"],
    "dim128": ["model.quantizer.dim=128"],
    "paper-opt": ["optimizer.generator.lr=0.0001", "optimizer.generator.betas=[0.5,0.9]"],
    "paper-init": ["model.quantizer.data_init=false"],
    "cosine": ["model.quantizer.l2_norm=true"],
    "beta1": ["model.quantizer.beta=1.0"],
    "qloss1": ["loss.quantizer=1.0"],
    "spread01": ["loss.spread=0.1"],
    "spread": ["loss.spread=1.0"],
    "spread10": ["loss.spread=10.0"],
    "spread01-dim32": ["loss.spread=0.1", "model.quantizer.dim=32"],
    "match01": ["loss.match=0.1"],
    "match": ["loss.match=1.0"],
    "match10": ["loss.match=10.0"],
    "match30": ["loss.match=30.0"],
    "match100": ["loss.match=100.0"],
    "match-dim32": ["loss.match=1.0", "model.quantizer.dim=32"],
    "match-dim4": ["loss.match=1.0", "model.quantizer.dim=4"],
    "match10-dim4": ["loss.match=10.0", "model.quantizer.dim=4"],
    "boost6": ["data.max_boost_db=6"],
    "match-boost6": ["loss.match=1.0", "data.max_boost_db=6"],
    "match10-boost6": ["loss.match=10.0", "data.max_boost_db=6"],
    "crop2": ["data.segment_seconds=2.0", "data.batch_size=2"],
    "match10-crop2": ["loss.match=10.0", "data.segment_seconds=2.0", "data.batch_size=2"],
    "match10-crop2-b8": ["loss.match=10.0", "data.segment_seconds=2.0", "data.batch_size=8"],
    "natural": ["data.loudness_db=null"],
    "match10-natural": ["loss.match=10.0", "data.loudness_db=null"],
    # The best single factors together: the spread term at 0.1, a 32-d lookup and the paper's optimiser.
    "combo": ["loss.spread=0.1", "model.quantizer.dim=32", "optimizer.generator.lr=0.0001",
              "optimizer.generator.betas=[0.5,0.9]"],
}
BASE = ["model.quantizer.dim=8", "loss.adversarial=0", "loss.feature_matching=0",
        "training.discriminator_start_step=1000000000", "schedule.kind=constant", "data.batch_size=8",
        "data.segment_seconds=0.5", "data.num_workers=0", "validation.every=0", "checkpoint.every=1000000000",
        "checkpoint.resume=none", "logging.progress_bar=false", "logging.audio_every=1000000000",
        "logging.dead_code_steps=1000"]


def build(run_dir: Path, overrides: list[str], data: Path):
    from accelerate.state import AcceleratorState, GradientState

    from simvq_audio.training.config import load_config
    from simvq_audio.training.trainer import Trainer

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    paths = [f"data.train_manifest={data / 'train.jsonl'}", f"data.valid_manifest={data / 'dev.jsonl'}"]
    return Trainer(load_config(CONFIG, [*BASE, *paths, f"logging.dir={run_dir}", *overrides]))


def dev_usage(model, data: Path, n_files: int, max_seconds: float) -> dict:
    """Codes used, ceiling, perplexity and mel distance of ``model`` on ``n_files`` dev files spread over the list."""
    import numpy as np
    import torch

    from simvq_audio.audio.io import load_audio
    from simvq_audio.data.manifest import read_manifest
    from simvq_audio.evaluation.evaluate import codebook_stats
    from simvq_audio.metrics import mel_distance
    from usage_ceiling import variance_spectrum

    entries = read_manifest(data / "dev.jsonl")
    picks = np.linspace(0, len(entries) - 1, min(n_files, len(entries))).round().astype(int)
    k = model.codebook_size
    counts = np.zeros((model.n_codebooks, k), dtype=np.int64)
    mels, latents = [], []
    model.eval()
    with torch.inference_mode():
        for i in picks:
            wav = load_audio(entries[int(i)].path, model.sample_rate).samples[0]
            wav = wav[: int(max_seconds * model.sample_rate)]
            x = torch.as_tensor(wav, dtype=torch.float32).view(1, 1, -1)
            z = model._latents(x, None)  # what model.encode searches: kept for the dimensions it uses
            codes = model.quantizer.encode(z)
            latents.append(z[0].T)
            for q in range(model.n_codebooks):
                counts[q] += np.bincount(codes[0, q].numpy().ravel(), minlength=k)
            y = model.decode(codes, length=x.shape[-1])
            mels.append(mel_distance(wav, y[0, 0].numpy(), model.sample_rate))
    stats = codebook_stats(counts)
    _, effective = variance_spectrum(torch.cat(latents))
    return {"dev_dims": effective, "dev_used": stats["codebook_utilisation"], "dev_ceiling": stats["uniform_ceiling"],
            "dev_ppl": stats["perplexity"], "dev_mel": float(np.mean(mels)), "dev_frames": int(counts[0].sum())}


def snapshot_overrides(steps: int, every: int | None, extend: bool = False) -> list[str]:
    """Keep a checkpoint every ``every`` steps (all of them), for usage_frames.py on weights along the run.

    ``extend``: go on from the run folder's latest checkpoint to ``steps`` (the study's schedule is
    constant, so a run extended from 2,000 to 4,000 steps is the 4,000-step run).
    """
    if every is None:
        if extend:
            raise ValueError("--extend needs --snapshot-every (the checkpoints to extend from)")
        return []
    if every < 1:
        raise ValueError("--snapshot-every must be >= 1")
    return [f"checkpoint.every={every}", f"checkpoint.keep_last={steps // every + 1}",
            *(["checkpoint.resume=auto"] if extend else [])]


def run_one(work: Path, kind: str, size: int, arm: str, steps: int, data: Path, dev_files: int,
            dev_seconds: float, seed: int = 0, snapshot_every: int | None = None, extend: bool = False) -> dict:
    run_dir = work / f"{kind}-{size}-{arm}" if seed == 0 else work / f"{kind}-{size}-{arm}-seed{seed}"
    # The seed draws the codec's initial weights, the crops and SimVQ's frozen codebook C.
    overrides = [f"model.quantizer.kind={kind}", f"model.quantizer.codebook_size={size}",
                 f"training.max_steps={steps}", "logging.every=50", f"training.seed={seed}",
                 f"model.quantizer.seed={seed}", *ARMS[arm], *snapshot_overrides(steps, snapshot_every, extend)]
    t0 = time.perf_counter()
    trainer = build(run_dir, overrides, data)
    try:
        trainer.train()
        tracker = trainer.trackers[0]
        window = {"used": tracker.utilization(), "ceiling": tracker.uniform_ceiling(),
                  "ppl": tracker.perplexity(), "dead": tracker.dead_codes(1000), "frames": tracker.total()}
        model = trainer.accelerator.unwrap_model(trainer.generator)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        train_rows = [r for r in rows if "loss/mel" in r]
        tail = [r["loss/mel"] for r in train_rows if r["step"] > steps - 100] or [train_rows[-1]["loss/mel"]]
        curve = [(r["step"], r["codebook/utilization"], r["codebook/uniform_ceiling"]) for r in train_rows]
        result = {"kind": kind, "K": size, "arm": arm if seed == 0 else f"{arm}, seed {seed}", "seed": seed,
                  "dim": model.quantizer.stages[0].dim, "steps": steps,
                  **{f"window_{k}": v for k, v in window.items()},
                  "train_mel": float(sum(tail) / len(tail)), "collapsed": window["used"] < 0.01, "curve": curve}
        result.update(dev_usage(model, data, dev_files, dev_seconds))
    finally:
        trainer.close()
    result["seconds"] = time.perf_counter() - t0
    return result


def table(results: list[dict]) -> str:
    lines = ["| K | arm | kind | window used (ceiling) | ppl | dead | dev used (ceiling) | dev ppl | train mel | dev mel | lookup dims used | collapsed |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['K']:,} | {r['arm']} | {r['kind']} | {r['window_used']:.1%} ({r['window_ceiling']:.0%}) | "
                     f"{r['window_ppl']:.0f} | {r['window_dead']:,} | {r['dev_used']:.1%} ({r['dev_ceiling']:.0%}) | "
                     f"{r['dev_ppl']:.0f} | {r['train_mel']:.3f} | {r['dev_mel']:.3f} | {r['dev_dims']:.1f} of {r['dim']} | "
                     f"{'yes' if r['collapsed'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run (default 1000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 65536])
    parser.add_argument("--kinds", nargs="+", default=["simvq", "vq"], choices=["simvq", "vq", "ema"])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.jsonl and dev.jsonl")
    parser.add_argument("--dev-files", type=int, default=40)
    parser.add_argument("--dev-seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds of the codec's weights, crops and codebook; each arm runs once per seed (default 0)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/simvq-bench-codebook-usage"))
    parser.add_argument("--snapshot-every", type=int, metavar="N",
                        help="keep the run's checkpoint every N steps (export one with `simvq-audio export "
                             "RUN/checkpoints/step-...` and count it with usage_frames.py)")
    parser.add_argument("--extend", action="store_true",
                        help="go on from each run's latest kept checkpoint to --steps instead of starting afresh")
    parser.add_argument("--json", type=Path, help="write every run's figures and curve here (updated after each run)")
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = datetime.datetime.now()
    results = []
    for size in args.sizes:
        for arm in args.arms:
            for kind in args.kinds:
                for seed in args.seeds:
                    r = run_one(args.work, kind, size, arm, args.steps, args.data, args.dev_files, args.dev_seconds,
                                seed, args.snapshot_every, args.extend)
                    results.append(r)
                    print(table([r]).splitlines()[-1], f"{r['seconds']:.0f} s", flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=1))
    head = (f"## Codebook usage in the codec ({started.date()})\n\n{machine('cpu')}. recipes/tiny codec, "
            f"{args.steps} steps of 8 x 0.5 s (400 frames), reconstruction only; the window is the trainer's last "
            f"3 K training frames; dev: {args.dev_files} files x <= {args.dev_seconds:g} s. One factor changed at a "
            f"time from `base` (benchmarks/codebook_usage.py). Ceiling: what a uniform code distribution would use "
            f"over as many frames. Wall time {math.ceil((datetime.datetime.now() - started).total_seconds() / 60)} "
            f"min.\n\n")
    text = head + table(results)
    print(text)
    if args.append:
        append_section(args.append, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
