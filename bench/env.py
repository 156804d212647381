"""Where a result came from: code version, torch version, hardware. Carried by every record."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.version import __version__


@functools.cache
def git_commit() -> str | None:
    """The commit of the optbench checkout, with '+dirty' when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def environment(device: str = "cpu") -> dict[str, Any]:
    import torch

    env = {
        "optbench": __version__,
        "commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
    }
    if device.startswith("cuda"):
        env["cuda"] = torch.version.cuda
    return env


def set_threads(n: int | None) -> None:
    """torch.set_num_threads(n), skipped when n is already the count: on torch 2.13's CPU build any call,
    even one that changes nothing, leaves the OpenMP pool slower (measured: SDPA attention 216 -> 325 us,
    a small-preset training step 5% slower). See docs/performance.md."""
    import torch

    if n and n != torch.get_num_threads():
        torch.set_num_threads(n)
