"""This machine as optbench has measured it, read back: the calibration cache (which optimizer kernels
`impl = "auto"` takes, how a suite splits the cores into workers and threads, how many threads one run
takes), which torch.optim classes
have fused kernels here, and where caches live.

bench.calibrate measures and writes the verdicts; everything else only reads them through this module,
which imports nothing of optbench's but the environment probe, so any layer may ask.

The cache is `$OPTBENCH_CALIBRATION` or `<cache dir>/calibration.json`; `OPTBENCH_CALIBRATION=off` keeps
torch's own rule (fused where torch has it), as the tests do so their numbers never hinge on a cache.
A choice that changes kernels may change the last bits of a run's numbers (fused AdamW rounds differently
from foreach), so every record names the kernels it ran; set `impl` to pin them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import settings
from bench.env import cpu_model
from bench.files import atomic_path


def cache_dir() -> Path:
    root = settings.get("OPTBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "optbench"
    )
    return Path(root)


# torch.optim classes that have fused kernels in this project's torch range (see torch.optim docs); on a
# given device `fused_available` asks torch itself: fused Adagrad on CUDA is missing from older builds.
FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}


@functools.cache
def fused_available(cls_name: str, device_type: str) -> bool:
    """Whether torch.optim.<cls_name>(fused=True) steps on `device_type` in this torch build: one step of a
    one-element parameter, since torch checks the device only at the first step."""
    import torch

    if cls_name not in FUSED:
        return False
    try:
        p = torch.zeros(1, device=device_type, requires_grad=True)
        p.grad = torch.zeros_like(p)
        getattr(torch.optim, cls_name)([p], lr=0.1, fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str


def cache_path() -> Path | None:
    """Where the verdicts live; None when calibration is switched off."""
    setting = settings.get("OPTBENCH_CALIBRATION")
    if setting == "off":
        return None
    if setting:
        return Path(setting).expanduser()
    return cache_dir() / "calibration.json"


def machine_key() -> str:
    import torch

    return f"{cpu_model()} | torch {torch.__version__} | {os.cpu_count()} cores"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: measured again and rewritten whole
    return data if isinstance(data, dict) else {}


def load() -> dict[str, Any]:
    """This machine's cached verdicts: {"impl": {key: {...}}, "split": {key: {...}}}."""
    path = cache_path()
    return _read(path).get(machine_key(), {}) if path else {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def save(kind: str, key: str, verdict: dict[str, Any]) -> None:
    """Add one verdict to the cache file (locked, written whole, other machines' entries kept)."""
    path = cache_path()
    if path is None:
        return
    with _locked(path):
        data = _read(path)
        data.setdefault(machine_key(), {}).setdefault(kind, {})[key] = verdict
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def torch_default(cls_name: str) -> str:
    return "fused" if cls_name in FUSED else "foreach"


def impl_key(cls_name: str, n_params: int, threads: int) -> str:
    return f"{cls_name}, {n_params} params, {threads} threads"


def impl_choice(cls_name: str, impl: str, device: str, n_params: int, threads: int) -> Choice:
    """The kernels a torch.optim class runs with for the `impl` a config asks for, and why."""
    if impl != "auto":
        return Choice(impl, "set in the config")
    if not device.startswith("cpu"):
        return Choice(torch_default(cls_name), "torch's default on this device")
    if cache_path() is None:
        return Choice(torch_default(cls_name), "torch's default; calibration off")
    verdict = load().get("impl", {}).get(impl_key(cls_name, n_params, threads))
    if verdict:
        return Choice(verdict["impl"], verdict["reason"])
    return Choice(torch_default(cls_name), "torch's default; no calibration for this machine and model")


def kernels_used(cfg: Any, optimizers: list, n_params: int, device: str) -> dict[str, dict[str, str]]:
    """For the record's environment: the kernels each torch.optim optimizer of a run was built with and why."""
    import torch

    used = {}
    for opt in optimizers:
        cls_name = type(opt).__name__
        if not type(opt).__module__.startswith("torch.optim") or "foreach" not in opt.defaults:
            continue  # Lion, schedule-free AdamW, Muon's own update: one implementation each
        impl = "fused" if opt.defaults.get("fused") else "foreach" if opt.defaults.get("foreach") else "forloop"
        requested = cfg.optimizer.get("impl", "set in the config")  # a class_path optimizer takes its own kwargs
        reason = impl_choice(cls_name, requested, device, n_params, torch.get_num_threads()).reason
        used[cls_name] = {"impl": impl, "reason": reason}
    return used


def split_key(cfg: Any, cores: int) -> str:
    m = cfg.model
    return f"{m['n_layer']}x{m['n_embd']} context {m['block_size']}, batch {cfg.batch_size}, {cores} cores"


def split_choice(cfg: Any, cores: int) -> Choice | None:
    """The cached (workers, threads) verdict for runs shaped like `cfg`, or None."""
    verdict = load().get("split", {}).get(split_key(cfg, cores))
    return Choice(tuple(verdict["split"]), verdict["reason"]) if verdict else None


def threads_choice(cfg: Any, cores: int) -> Choice | None:
    """The cached thread count of one run shaped like `cfg` (`optbench train`), or None."""
    verdict = load().get("threads", {}).get(split_key(cfg, cores))
    return Choice(int(verdict["threads"]), verdict["reason"]) if verdict else None
