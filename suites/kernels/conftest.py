from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from bench.devices import check_available
from bench.kernels import (
    Kernel,
    copies_to_leave_l2,
    event_clock,
    l2_bytes,
    launches_per_round,
    peak,
    peak_entry,
    rotating,
)
from bench.registry import ConfigError

WARMUP_ROUNDS = 2


@pytest.fixture
def run_kernel(benchmark, request, device):
    """Check a kernel against its reference, then time it and record its derived rates.

    On a GPU: one round is many launches between two CUDA events (bench.kernels.event_clock), and kernels
    built with `leave_l2=True` cycle through enough copies of their inputs to read them from memory, not
    L2; a bandwidth figure is recorded only where the working set is at least twice the L2 cache."""
    try:
        check_available(device, "--device")
    except ConfigError as e:  # said, never silent: `pytest -rs` and `optbench kernels` show the reason
        pytest.skip(e.format())
    rounds = request.config.getoption("--kernel-rounds")
    on_gpu = device.startswith("cuda")

    def run(build: Callable[[], Kernel], dtype: torch.dtype | None = None, leave_l2: bool = False) -> None:
        kernel = build()
        kernel.check()
        l2 = l2_bytes(device)
        if on_gpu and leave_l2:
            kernel = rotating(build, copies_to_leave_l2(kernel.bytes, l2))
        working_set = kernel.bytes * kernel.info.get("input_copies", 1)
        benchmark.extra_info.update({"flops": kernel.flops, "bytes": kernel.bytes, "device": device, **kernel.info})
        if dtype is not None:
            benchmark.extra_info["dtype"] = str(dtype).removeprefix("torch.")
        iterations = 1
        if on_gpu and benchmark.enabled:
            clock = event_clock(device)
            clock.__name__ = "cuda_event_clock"  # pytest-benchmark names its timer in the JSON
            benchmark._timer = clock  # no public per-test timer in pytest-benchmark; --benchmark-timer sets this
            iterations = launches_per_round(kernel.fn, clock)
            benchmark.extra_info.update({"timer": "cuda events", "launches_per_round": iterations, "l2_bytes": l2})
        benchmark.pedantic(kernel.fn, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=iterations)
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: the check above is the test
            return
        median = stats.stats.median
        bandwidth_shown = bool(kernel.bytes) and (not on_gpu or working_set >= 2 * l2)
        benchmark.extra_info["gflops_per_s"] = kernel.flops / median / 1e9 if kernel.flops else None
        benchmark.extra_info["gb_per_s"] = kernel.bytes / median / 1e9 if bandwidth_shown else None
        if kernel.bytes and not bandwidth_shown:
            benchmark.extra_info["gb_per_s_left_out"] = f"working set {working_set} B fits in L2 ({l2} B)"
        entry = peak_entry(device)
        benchmark.extra_info["peak_entry"] = f"{entry[0][0]} ({entry[0][1]} SMs)" if entry else None
        device_peak = peak(device, dtype or torch.float32)
        if device_peak is not None:
            benchmark.extra_info["peak_flops_fraction"] = kernel.flops / median / device_peak[0]
            if bandwidth_shown:
                benchmark.extra_info["peak_bandwidth_fraction"] = kernel.bytes / median / device_peak[1]

    return run
