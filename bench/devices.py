"""Which device a run trains on: `auto` resolved, CUDA asked for but absent refused, workers spread over GPUs.

Every CUDA question goes through `cuda_count()` so tests can fake a machine with GPUs on a CPU-only host.
"""

from __future__ import annotations

import functools
from typing import Any

from bench.registry import ConfigError

# Exit code of a worker whose CUDA context is broken (a sticky error: illegal address, device-side
# assert): every later CUDA call in that process fails, so it exits and the runner starts a fresh one.
CUDA_POISONED_EXIT = 75


def cuda_count() -> int:
    """Visible CUDA devices (0 on a CPU-only torch build or without a GPU)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


def resolve_auto(device: str) -> str:
    """`auto` -> `cuda` where a GPU is visible, else `cpu`; anything else unchanged. Called before a config is
    hashed, so CPU and GPU executions of one config never share an identity."""
    if device != "auto":
        return device
    return "cuda" if cuda_count() > 0 else "cpu"


def why_no_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"


def check_available(device: str, key: str = "device") -> None:
    """ConfigError (exit 2, one line) when `device` names CUDA, or a GPU index, this machine does not have."""
    if not is_cuda(device):
        return
    count = cuda_count()
    if count == 0:
        raise ConfigError(key, f"{device!r} asked for, but {why_no_cuda()}; allowed here: cpu")
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        if not index.isdigit() or int(index) >= count:
            allowed = ", ".join(["cuda", *(f"cuda:{i}" for i in range(count))])
            raise ConfigError(key, f"{device!r}: this machine has {count} GPU(s); allowed: cpu, {allowed}")


def worker_devices(devices: set[str], workers: int | None, per_gpu: int) -> list[str | None]:
    """The device each worker trains its unindexed `cuda` runs on: cuda:0, cuda:1, ... round-robin over the
    visible GPUs. One worker per GPU by default; more only up to `per_gpu` each (then timings are shared).
    None for CPU-only suites (workers take each run's own device)."""
    if not any(is_cuda(d) for d in devices):
        return [None] * (workers or 1)
    gpus = cuda_count()
    if gpus == 0:
        raise ConfigError("device", f"'cuda' asked for, but {why_no_cuda()}; allowed here: cpu")
    if "cuda" not in devices:  # every run names its GPU: as many workers as GPUs named, at most
        gpus = min(gpus, len({d for d in devices if is_cuda(d)}))
    workers = workers or gpus
    if workers > gpus * per_gpu:
        raise ConfigError(
            "--workers",
            f"{workers} workers on {gpus} GPU(s) would share GPUs, so their timings would depend on which runs "
            f"overlapped; allowed: at most {gpus * per_gpu} (raise --workers-per-gpu to share on purpose)",
        )
    return [f"cuda:{i % gpus}" for i in range(workers)]


def sharing(assignment: list[str | None]) -> dict[str, int]:
    """Workers per GPU of an assignment (only the GPUs used)."""
    counts: dict[str, int] = {}
    for d in assignment:
        if d is not None:
            counts[d] = counts.get(d, 0) + 1
    return counts


def run_device(cfg_device: str, worker_device: str | None) -> str:
    """Where a run trains: its own explicit device (cpu, cuda:N), or its worker's GPU for a plain `cuda`."""
    if cfg_device == "cuda" and worker_device is not None:
        return worker_device
    return resolve_auto(cfg_device)


def use_device(device: str) -> None:
    """Make `device` the current CUDA device, so allocations and kernels without an explicit device (cuBLAS
    handles, streams, events) land on it rather than on GPU 0."""
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(torch.device(device))


def context_broken(device: str) -> bool:
    """True when the CUDA context of this process no longer works (a sticky error from an earlier kernel)."""
    if not is_cuda(device):
        return False
    import torch

    try:
        torch.cuda.synchronize(torch.device(device))
        torch.zeros(1, device=device).add_(1).cpu()
    except RuntimeError:  # torch.AcceleratorError, torch's CUDA errors, derive from RuntimeError
        return True
    return False


def precision(device: str, autocast: str = "none", head_dim: int | None = None, heads: int = 1) -> dict[str, Any]:
    """The settings that decide the arithmetic: TF32, float32 matmul precision, cuDNN, SDPA backend, driver."""
    import torch

    out: dict[str, Any] = {"float32_matmul_precision": torch.get_float32_matmul_precision(), "autocast": autocast}
    if is_cuda(device):
        out.update(
            {
                "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "cudnn_version": torch.backends.cudnn.version(),
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "sdpa_enabled": {
                    "flash": torch.backends.cuda.flash_sdp_enabled(),
                    "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                    "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
                    "math": torch.backends.cuda.math_sdp_enabled(),
                },
                "driver": driver_version(),
            }
        )
    else:
        out["deterministic"] = torch.are_deterministic_algorithms_enabled()
    if head_dim is not None:
        out["sdpa_backend"] = sdpa_backend(device, autocast, head_dim, heads)
    return out


def sdpa_backend(device: str, autocast: str, head_dim: int, heads: int, seq: int = 64) -> str | None:
    """The backend torch's dispatcher picks for the model's causal attention (flash, efficient, cudnn, math)."""
    import torch

    dtype = torch.bfloat16 if autocast == "bf16" else torch.float32
    try:
        from torch.nn.attention import SDPBackend

        q = torch.zeros(1, heads, seq, head_dim, device=device, dtype=dtype)
        choice = torch._fused_sdp_choice(q, q, q, None, 0.0, True)
        return SDPBackend(choice).name.lower()
    except (AttributeError, RuntimeError, ValueError, ImportError):  # private API: record "unknown", never fail
        return None


@functools.cache
def driver_version() -> str | None:
    """The NVIDIA driver version from nvidia-smi (torch does not expose it), or None."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None
