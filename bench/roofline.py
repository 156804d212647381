"""How close a training step runs to this machine's matrix-multiply limit.

A step of the GPT is mostly matrix multiplies: every Linear layer once forward and twice backward (the
gradient of its input and of its weight). `bench.flops.matmul_shapes` lists them; `matmul_rate` times exactly those
multiplies on this machine (float32, or bfloat16 as autocast runs them) and gives their GFLOP/s, the
practical limit of the step; `roofline` sets the step's achieved GFLOP/s (its FLOPs, attention included,
over its measured time) against it. `python -m bench.perf roofline` prints it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.flops import MatMul, matmul_shapes, step_flops


def median_seconds(fn: Callable[[], Any], repeats: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(shapes: list[MatMul], dtype: Any = None, repeats: int = 30) -> tuple[float, float]:
    """(seconds, FLOP/s) of one step's matrix multiplies on this machine, each timed alone (median).
    The operands take the layouts autograd uses: forward x @ W^T, grad input g @ W, grad weight g^T @ x."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for mm in shapes:
        if mm.role.startswith("forward"):  # x (M,K) @ W^T with W stored (N,K)
            a, b = torch.randn(mm.m, mm.k, generator=g), torch.randn(mm.n, mm.k, generator=g).t()
        elif mm.role.startswith("grad input"):  # g (M,N) @ W (N,K): here (M, K=N_out) @ (K, N=K_in)
            a, b = torch.randn(mm.m, mm.k, generator=g), torch.randn(mm.k, mm.n, generator=g)
        else:  # g^T (N_out, M) @ x (M, K_in), g stored (M, N_out)
            a, b = torch.randn(mm.k, mm.m, generator=g).t(), torch.randn(mm.k, mm.n, generator=g)
        a, b = a.to(dtype), b.to(dtype)
        total += mm.count * median_seconds(lambda a=a, b=b: torch.mm(a, b), repeats)
    return total, sum(mm.flops for mm in shapes) / total


def step_seconds(step: Callable[[], Any], blocks: int = 5, block: int = 20) -> float:
    """Median over `blocks` blocks of `block` calls of one training step, after a warm-up block."""
    for _ in range(block):
        step()
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(block):
            step()
        times.append((time.perf_counter() - start) / block)
    return statistics.median(times)


@dataclass(frozen=True)
class Roofline:
    step_seconds: float
    step_flops: float
    matmul_seconds: float  # the step's float32 matmuls, timed alone
    matmul_flops_per_second: float

    @property
    def achieved(self) -> float:
        """The step's FLOP/s."""
        return self.step_flops / self.step_seconds

    @property
    def fraction(self) -> float:
        """Achieved FLOP/s over the float32 matmul rate of its own shapes: 1.0 is the practical limit."""
        return self.achieved / self.matmul_flops_per_second

    @property
    def floor_seconds(self) -> float:
        """What the step would take if all its FLOPs ran at the matmul rate."""
        return self.step_flops / self.matmul_flops_per_second


def roofline(cfg: Any, blocks: int = 5, block: int = 20) -> Roofline:
    """Time `cfg`'s training step as train() takes it (bench.train.Training.step) and its matmuls alone,
    in this process, at its current thread count."""
    from bench.train import Training

    run = Training(cfg, "cpu")
    vocab = run.corpus.vocab_size
    seconds = step_seconds(run.step, blocks, block)
    mm_seconds, rate = matmul_rate(matmul_shapes(cfg, vocab))
    return Roofline(seconds, step_flops(cfg, vocab), mm_seconds * cfg.grad_accum, rate)


def kernel_rates(benchmarks: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], float]:
    """(group, preset, dtype, device) -> GFLOP/s of the train_step and linear kernels in a kernel-suite JSON."""
    rates: dict[tuple[str, str, str, str], float] = {}
    for b in benchmarks:
        extra = b.get("extra_info", {})
        if b.get("group") in ("train_step", "linear") and extra.get("gflops_per_s"):
            case = b["name"].split("[", 1)[-1].rstrip("]").split("-")
            preset = next((p for p in ("tiny", "small", "base") if p in case), "?")
            rates[(b["group"], preset, extra.get("dtype", "?"), extra.get("device", "?"))] = extra["gflops_per_s"]
    return rates


def kernel_roofline(benchmarks: list[dict[str, Any]]) -> list[str]:
    """From a kernel-suite JSON's benchmarks: per preset, dtype and device, the training step's achieved
    GFLOP/s against the linear (matmul) kernel's, one line each (for `optbench kernels` and reports).
    Imports nothing heavy: reports call it."""
    rates = kernel_rates(benchmarks)
    lines = []
    for (group, preset, dtype, device), step in sorted(rates.items()):
        matmul = rates.get(("linear", preset, dtype, device))
        if group == "train_step" and matmul:
            lines.append(f"roofline {preset} {dtype} {device}: training step {step:.0f} GFLOP/s = "
                         f"{step / matmul:.0%} of the linear kernel's {matmul:.0f} GFLOP/s")  # fmt: skip
    return lines


def runs_roofline(frame: Any, benchmarks: list[dict[str, Any]] | None) -> str:
    """One sentence for a report: the median achieved GFLOP/s of a suite's training steps (each run's
    `env.step_flops` x its timed steps per second, from tokens_per_second) and, where the kernel timings hold
    the float32 linear kernel for the suite's preset, the fraction of that rate."""
    import statistics

    from bench.config import nested

    rates, presets = [], set()
    for _, run in frame.iterrows():
        flops = nested(run, "env").get("step_flops")
        steps, tokens, speed = run.get("steps"), run.get("tokens"), run.get("tokens_per_second")
        if flops and flops == flops and steps and tokens and speed and speed == speed:
            rates.append(flops * speed / (tokens / steps) / 1e9)  # FLOPs/step x steps/s
            presets.add(run.get("config.model.name"))
    if not rates:
        return ""
    text = f"This suite's training steps ran at a median of {statistics.median(rates):.1f} GFLOP/s"
    text += f" (median over {len(rates)} runs of step FLOPs x steps per second of training time)"
    matmul = {
        preset: rate
        for (group, preset, dtype, _), rate in kernel_rates(benchmarks or []).items()
        if group == "linear" and dtype in ("float32", "torch.float32")
    }
    (preset,) = presets if len(presets) == 1 else (None,)
    if preset in matmul:
        fraction = statistics.median(rates) / matmul[preset]
        text += f": {fraction:.0%} of the float32 linear kernel's {matmul[preset]:.0f} GFLOP/s for the {preset} preset"
        text += " in the kernel timings"
    return text + "."
