"""What every benchmark prints with its figures: the machine, and the append to BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str = "cpu") -> str:
    """CPU, cores, load, torch version and threads, and the GPU when ``device`` is CUDA."""
    import torch

    load = f", load avg {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    text = (f"{cpu_name()} ({os.cpu_count()} cores{load}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, device {device}")
    if torch.device(device).type == "cuda":
        text += f" ({torch.cuda.get_device_name()})"
    return text


def append_section(path: Path, text: str) -> None:
    """Append to a file other benchmarks append to as well (create it with its title if missing)."""
    with open(path, "a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write("# Benchmarks\n")
        f.write("\n" + text.rstrip("\n") + "\n")
