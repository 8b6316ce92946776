"""Forward+backward time and peak memory: our SimVQ against vector-quantize-pytorch's SimVQ.

Both quantize the same ``N`` vectors (seeded; ours channels-first ``[1, d, N]`` as a codec's
encoder gives them, theirs ``[1, N, d]``, each contiguous) in training mode, then back-propagate ``quantizer loss + mean(out^2)``
to the input and the linear map. Theirs runs with ``rotation_trick=False``, so both do the
same algorithm (nearest neighbour in ``W(C)``, straight-through estimator).

Each (implementation, K, d) runs in a fresh subprocess. Peak memory is the growth over a
baseline taken after imports, model construction and input creation: on CUDA
``torch.cuda.max_memory_allocated``; on the CPU the resident-set high-water mark (VmHWM,
reset through /proc/self/clear_refs where allowed). Times are medians after a warm-up; big
configurations skip the warm-up and run fewer repeats. A configuration whose estimated
memory exceeds what is free is reported as skipped rather than run into the OOM killer.

    python benchmarks/quantizer.py                       # the full grid, N = 24000
    python benchmarks/quantizer.py --n 2400 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import append_section, machine  # noqa: E402  (benchmarks/ is on sys.path)

IMPLS = ("ours", "theirs")
SMALL = 4096 * 512  # K * d up to which a warm-up and the full repeat count are affordable


# -- memory -----------------------------------------------------------------------------
def _read_kb(path: str, field: str) -> int | None:
    """A ``Field:   123 kB`` value of /proc/self/status or /proc/meminfo (None where absent)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_cpu_peak() -> int:
    """Start a new resident-set high-water mark; returns the baseline in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return (_read_kb("/proc/self/status", "VmRSS") or 0) * 1024
    except OSError:  # no permission: the old mark stays, so the growth is a lower bound
        return (_read_kb("/proc/self/status", "VmHWM") or 0) * 1024


def _cpu_peak() -> int:
    hwm = _read_kb("/proc/self/status", "VmHWM")
    if hwm is not None:
        return hwm * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _free_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    avail = _read_kb("/proc/meminfo", "MemAvailable")
    return avail * 1024 if avail else 1 << 62


def estimate_bytes(impl: str, n: int, k: int, d: int) -> int:
    """Rough working memory of one forward+backward, used only to refuse hopeless runs."""
    codebook = k * d * 4
    if impl == "theirs":  # cdist materialises the whole [N, K] float32 distance matrix
        return n * k * 4 + 4 * codebook + 8 * n * d * 4
    return 2 * (1 << 24) * 4 + 3 * codebook + 8 * n * d * 4  # distance blocks of 2**24 values


# -- one configuration (runs in its own process) ------------------------------------------
def _build(impl: str, k: int, d: int, device):
    import torch

    if impl == "ours":
        from simvq_audio.quantization import SimVQ

        model = SimVQ(d, k, seed=0).to(device).train()

        def step(x: torch.Tensor) -> torch.Tensor:
            out = model(x)
            return out.loss + out.quantized.square().mean()
    else:
        from vector_quantize_pytorch import SimVQ as TheirSimVQ

        torch.manual_seed(0)
        model = TheirSimVQ(dim=d, codebook_size=k, rotation_trick=False).to(device).train()

        def step(x: torch.Tensor) -> torch.Tensor:
            quantized, _, commit_loss = model(x)
            return commit_loss + quantized.square().mean()

    return model, step


def run_one(impl: str, n: int, k: int, d: int, device_name: str, repeats: int, warmup: int) -> dict:
    import torch

    device = torch.device(device_name)
    result = {"impl": impl, "K": k, "d": d, "n": n, "device": device.type}
    free, need = _free_bytes(device), estimate_bytes(impl, n, k, d)
    if need > 0.8 * free:
        result.update(status="skipped", note=f"needs about {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
        return result
    model, step = _build(impl, k, d, device)
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(1, n, d, generator=gen)
    if impl == "ours":  # the same values in each one's own layout: ours [B, d, T], theirs [B, T, d]
        x = x.transpose(1, 2).contiguous()
    x = x.to(device).requires_grad_(True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = _reset_cpu_peak()
    times = []
    for i in range(warmup + repeats):
        model.zero_grad(set_to_none=True)
        x.grad = None
        sync()
        start = time.perf_counter()
        step(x).backward()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _cpu_peak()
    result.update(status="ok", time_s=statistics.median(times), times=times, peak_mb=(peak - base) / 2**20)
    return result


# -- driver --------------------------------------------------------------------------------

def _their_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vector-quantize-pytorch")
    except PackageNotFoundError:
        return "not installed"


def run_isolated(impl: str, args, k: int, d: int) -> dict:
    big = k * d > SMALL
    cmd = [sys.executable, __file__, "--worker", impl, str(k), str(d), "--n", str(args.n), "--device", args.device,
           "--repeats", str(args.large_repeats if big else args.repeats), "--warmup", str(0 if big else 1)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "K": k, "d": d, "status": "timeout", "note": f"over {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = "killed (out of memory?)" if proc.returncode in (-9, 137) else (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"impl": impl, "K": k, "d": d, "status": "failed", "note": why[:120]}
    return json.loads(lines[-1])


def _cell_time(r: dict) -> str:
    return f"{r['time_s']:.3f}" if r.get("status") == "ok" else r.get("status", "?")


def _cell_mem(r: dict) -> str:
    return f"{r['peak_mb']:.0f}" if r.get("status") == "ok" else r.get("status", "?")


def _ratio(a: dict, b: dict, key: str) -> str:
    if a.get("status") == "ok" and b.get("status") == "ok" and a[key] > 0:
        return f"{b[key] / a[key]:.2f}x"
    return "-"


def table(rows: list[tuple[dict, dict]], n: int) -> str:
    lines = [
        "| K | d | N | ours time (s) | theirs time (s) | theirs/ours time | ours peak (MB) | theirs peak (MB) "
        "| theirs/ours memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours, theirs in rows:
        lines.append(
            f"| {ours['K']} | {ours['d']} | {n} | {_cell_time(ours)} | {_cell_time(theirs)} | "
            f"{_ratio(ours, theirs, 'time_s')} | {_cell_mem(ours)} | {_cell_mem(theirs)} | "
            f"{_ratio(ours, theirs, 'peak_mb')} |"
        )
    notes = []
    for pair in rows:
        noted = [r for r in pair if r.get("note")]
        if len(noted) == len(pair) and len({r["note"] for r in noted}) == 1:
            notes.append(f"- K={pair[0]['K']} d={pair[0]['d']}: {noted[0]['note']}")
        else:
            notes += [f"- {r['impl']} K={r['K']} d={r['d']}: {r['status']}: {r['note']}" for r in noted]
    return "\n".join(lines + ([""] + notes if notes else []))



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 65536, 262144], help="codebook sizes K")
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512], help="code dimensions d")
    parser.add_argument("--n", type=int, default=24000, help="vectors per forward pass")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats for small K * d")
    parser.add_argument("--large-repeats", type=int, default=1, help="timed repeats (no warm-up) for large K * d")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per configuration")
    parser.add_argument("--max-kd", type=int, help="list configurations with K * d above this as not run (time)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); 1 is steadier "
                        "on a shared machine")
    parser.add_argument("--append", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "K", "D"), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        impl, k, d = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(run_one(impl, args.n, k, d, args.device, args.repeats, args.warmup)), flush=True)
        return 0
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.time()
    rows = []
    for k in args.sizes:
        for d in args.dims:
            if args.max_kd is not None and k * d > args.max_kd:
                note = f"not run: K*d > --max-kd {args.max_kd} (time on this machine)"
                pair = tuple({"impl": impl, "K": k, "d": d, "status": "not run", "note": note} for impl in IMPLS)
            else:
                pair = tuple(run_isolated(impl, args, k, d) for impl in IMPLS)
            rows.append(pair)
            print(f"K={k} d={d}: " + ", ".join(f"{r['impl']} {_cell_time(r)} s {_cell_mem(r)} MB" for r in pair),
                  flush=True)
    body = table(rows, args.n)
    header = (
        f"## Quantizer: SimVQ forward+backward, ours vs vector-quantize-pytorch {_their_version()} "
        f"({args.device})\n\n"
        f"{datetime.date.today().isoformat()}; {machine()}. Training mode, {args.n} vectors, loss = quantizer "
        f"loss + mean(out^2), backward to input and W; theirs with rotation_trick=False. Median of {args.repeats} "
        f"after 1 warm-up when K*d <= {SMALL}, else {args.large_repeats} run(s) without warm-up. Peak = growth "
        f"over the baseline after model and input creation ({'max_memory_allocated' if args.device.startswith('cuda') else 'VmHWM, fresh process per row'}). "
        f"Wall time of the run: {time.time() - started:.0f} s.\n"
    )
    print("\n" + header + "\n" + body)
    if args.append:
        append_section(args.append, header + "\n" + body)
        print(f"appended to {args.append}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
