"""pytest options and hooks shared by tests/ and the kernel suites in suites/kernels/.

Kernel-suite options: --device (cpu, cuda, cuda:N, or a comma-separated list; default cpu),
--kernel-presets (default tiny,small,base) and --kernel-rounds (timed rounds per kernel, default 10).
Every pytest-benchmark JSON carries the torch version, threads, CPU model, GPU name and driver, and
the optbench commit in its machine_info.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("optbench")
    group.addoption("--device", default="cpu", help="devices for the kernel suites: cpu, cuda, cuda:N, comma-separated")
    group.addoption("--kernel-presets", default="tiny,small,base", help="model presets whose shapes the kernels take")
    group.addoption("--kernel-rounds", type=int, default=10, help="timed rounds per kernel (after 2 warm-up rounds)")
    group.addoption("--update-golden", action="store_true", help="rewrite tests/golden/losses.json from this build")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", metafunc.config.getoption("--device").split(","))
    if "preset" in metafunc.fixturenames:
        metafunc.parametrize("preset", metafunc.config.getoption("--kernel-presets").split(","))


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import torch

    from bench.env import cpu_model, git_commit

    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cpu_model"] = cpu_model()
    machine_info["optbench_commit"] = git_commit()
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name(0)
        machine_info["cuda"] = torch.version.cuda
        try:
            import subprocess

            machine_info["gpu_driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()  # fmt: skip
        except OSError:
            machine_info["gpu_driver"] = None
