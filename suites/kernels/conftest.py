from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from bench.devices import check_available, use_device
from bench.kernels import Kernel, measure
from bench.registry import ConfigError


@pytest.fixture
def run_kernel(benchmark, request, device):
    """Check a kernel against its reference, then time it and record its derived rates (bench.kernels.measure)."""
    try:
        check_available(device, "--device")
    except ConfigError as e:  # said, never silent: `pytest -rs` and `optbench kernels` show the reason
        pytest.skip(e.format())
    use_device(device)  # cuda:N: events, streams and stray allocations on that GPU, not GPU 0
    rounds = request.config.getoption("--kernel-rounds")

    def run(build: Callable[[], Kernel], dtype: torch.dtype | None = None, leave_l2: bool = False) -> None:
        measure(benchmark, build, device, rounds, dtype, leave_l2)

    return run
