"""pytest options and hooks shared by tests/ and the kernel suites in suites/kernels/.

Kernel-suite options: --device (cpu, cuda, cuda:N, or a comma-separated list; default cpu),
--kernel-presets (default tiny,small,base) and --kernel-rounds (timed rounds per kernel, default 10).
Every pytest-benchmark JSON carries the torch version, threads, CPU model, the GPU the kernels ran on
(name, SMs, memory, the peak-table entry used), its driver, the precision settings, and the optbench
commit in its machine_info.
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

    from bench.devices import cuda_count, is_cuda, precision
    from bench.env import cpu_model, git_commit

    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cpu_model"] = cpu_model()
    machine_info["optbench_commit"] = git_commit()
    devices = config.getoption("--device").split(",")
    machine_info["devices"] = devices
    gpus = [d for d in devices if is_cuda(d)]
    if gpus and cuda_count() > 0:
        from bench.kernels import gpu_identity, peak_entry

        gpu = gpus[0]  # the device the kernels ran on, not GPU 0
        name, sms, memory_mib = gpu_identity(gpu)
        entry = peak_entry(gpu)
        machine_info.update({
            "gpu": name, "gpu_device": gpu, "gpu_sms": sms, "gpu_memory_mib": memory_mib,
            "gpu_peak_entry": f"{entry[0][0]} ({entry[0][1]} SMs)" if entry else None,
            "cuda": torch.version.cuda,
        })  # fmt: skip
        machine_info["precision"] = precision(gpu)
        machine_info["gpu_driver"] = machine_info["precision"].get("driver")
    else:
        machine_info["precision"] = precision("cpu")
