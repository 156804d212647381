from __future__ import annotations

import pytest
import torch

from bench.kernels import Kernel, peak, timed

WARMUP_ROUNDS = 2


@pytest.fixture
def run_kernel(benchmark, request, device):
    """Check a kernel against its reference, then time it and record its derived rates."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rounds = request.config.getoption("--kernel-rounds")

    def run(kernel: Kernel, dtype: torch.dtype | None = None) -> None:
        kernel.check()
        benchmark.extra_info.update({"flops": kernel.flops, "bytes": kernel.bytes, "device": device, **kernel.info})
        if dtype is not None:
            benchmark.extra_info["dtype"] = str(dtype).removeprefix("torch.")
        benchmark.pedantic(timed(kernel.fn, device), rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: the check above is the test
            return
        median = stats.stats.median
        benchmark.extra_info["gflops_per_s"] = kernel.flops / median / 1e9 if kernel.flops else None
        benchmark.extra_info["gb_per_s"] = kernel.bytes / median / 1e9 if kernel.bytes else None
        device_peak = peak(device, dtype or torch.float32)
        if device_peak is not None:
            benchmark.extra_info["peak_flops_fraction"] = kernel.flops / median / device_peak[0]
            benchmark.extra_info["peak_bandwidth_fraction"] = kernel.bytes / median / device_peak[1]

    return run
