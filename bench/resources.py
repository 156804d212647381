"""Will a run fit? Memory estimated from the config alone, before any training starts.

The estimate is deliberately simple and errs high: float32 weights, gradients, two optimizer state
slots (Adam's moments) and one averaged copy (EMA/SWA) per parameter, plus the activations autograd
keeps for one micro-batch (per layer about 16 x width values per token for the projections, MLP and
norms, and the attention matrix per head; the logits twice). A run whose estimate exceeds the memory
the machine can give is refused as bad input (exit 2), instead of being killed by the OOM killer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import settings
from bench.registry import ConfigError

FLOAT_BYTES = 4
COPIES_PER_PARAM = 5  # weights, gradients, two optimizer moments, one averaged copy


def vocab_bound(cfg: Any) -> int:
    """An upper bound of the vocabulary size, known before the corpus is read."""
    p = cfg.data.params
    return int(p.get("vocab_size") or p.get("alphabet") or 256) if cfg.data.name != "tinyshakespeare" else 256


def parameter_count(cfg: Any) -> int:
    m = cfg.model
    width, layers, context = m["n_embd"], m["n_layer"], m["block_size"]
    return layers * 12 * width * width + (vocab_bound(cfg) + context) * width


def estimate_bytes(cfg: Any) -> int:
    """Peak memory of training `cfg` on the CPU, estimated (see the module docstring)."""
    m = cfg.model
    width, layers, heads, context = m["n_embd"], m["n_layer"], m["n_head"], m["block_size"]
    tokens = max(cfg.batch_size, cfg.eval_batch_size) * context
    per_token = layers * (16 * width + 2 * heads * context) + 2 * vocab_bound(cfg)
    return FLOAT_BYTES * (COPIES_PER_PARAM * parameter_count(cfg) + tokens * per_token)


def memory_limit() -> tuple[int, str]:
    """(bytes a run may use, where that figure comes from): OPTBENCH_MEMORY_LIMIT if set, else the
    smaller of the memory available now and the cgroup's limit."""
    override = settings.get("OPTBENCH_MEMORY_LIMIT")
    if override:
        return override, "OPTBENCH_MEMORY_LIMIT"
    limit, source = None, "available memory"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limit = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cgroup != "max" and (limit is None or int(cgroup) < limit):
            limit, source = int(cgroup), "the cgroup's memory limit"
    except (OSError, ValueError):
        pass
    if limit is None:  # not Linux: ask the OS for physical memory
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        source = "physical memory"
    return limit, source


def check_fits(configs: list[Any], workers: int = 1, source: str | None = None) -> None:
    """ConfigError (exit 2) when the largest CPU run, times the workers running side by side, cannot fit."""
    cpu = [c for c in configs if c.device == "cpu"]  # accelerator memory is the device's business
    if not cpu:
        return
    biggest = max(cpu, key=estimate_bytes)
    need = estimate_bytes(biggest) * min(workers, len(cpu))
    limit, where = memory_limit()
    if need > limit:
        per = f" ({workers} workers side by side)" if workers > 1 and len(cpu) > 1 else ""
        raise ConfigError(
            "batch_size",
            f"a run (batch_size {biggest.batch_size}, model width {biggest.model['n_embd']}) needs about "
            f"{need / 2**30:.1f} GiB{per}, over the {limit / 2**30:.1f} GiB of {where}; "
            "lower batch_size, the model or --workers",
            source,
        )
