"""The kernels underneath a training step, each with its work (FLOPs, bytes) and a plain reference.

Used by the pytest-benchmark suites in suites/kernels/ and by `python -m bench.perf crosscheck`.
A `Kernel` is a zero-argument callable to time, a check that compares its output with a reference
computed in float64 (or by the for-loop implementation), and the FLOPs and bytes one call moves, from
which the suites derive GFLOP/s, GB/s and, on a known GPU, the fraction of its peak.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from bench.flops import causal_attention_flops
from bench.techniques.models import MODELS

BATCH = 12
VOCAB = 65  # tinyshakespeare's characters


@dataclass(frozen=True)
class GpuPeak:
    """Dense (not 2:4 sparse) peaks of one GPU model, from its vendor's data sheet."""

    bf16: float  # tensor-core TFLOP/s
    tf32: float  # tensor-core TFLOP/s, what float32 matmuls get when TF32 is allowed
    fp32: float  # CUDA-core TFLOP/s
    memory: float  # TB/s


# Keyed by exact identity: the name CUDA reports and the SM count, because one name fragment covers cards
# whose peaks differ (H100 SXM / PCIe / NVL; A100 40 GB / 80 GB, whose names say so; L4 / L40 / L40S).
GPU_PEAKS: dict[tuple[str, int], GpuPeak] = {
    ("NVIDIA H200", 132): GpuPeak(989.4, 494.7, 66.9, 4.8),
    ("NVIDIA H200 NVL", 132): GpuPeak(835.5, 417.5, 60.0, 4.8),
    ("NVIDIA H100 80GB HBM3", 132): GpuPeak(989.4, 494.7, 66.9, 3.35),
    ("NVIDIA H100 PCIe", 114): GpuPeak(756.5, 378.0, 51.2, 2.0),
    ("NVIDIA H100 NVL", 132): GpuPeak(835.5, 417.5, 60.0, 3.9),
    ("NVIDIA A100-SXM4-80GB", 108): GpuPeak(312.0, 156.0, 19.5, 2.039),
    ("NVIDIA A100-SXM4-40GB", 108): GpuPeak(312.0, 156.0, 19.5, 1.555),
    ("NVIDIA A100 80GB PCIe", 108): GpuPeak(312.0, 156.0, 19.5, 1.935),
    ("NVIDIA A100-PCIE-40GB", 108): GpuPeak(312.0, 156.0, 19.5, 1.555),
    ("NVIDIA L4", 58): GpuPeak(121.0, 60.0, 30.3, 0.3),
    ("NVIDIA L40S", 142): GpuPeak(362.0, 183.0, 91.6, 0.864),
    ("NVIDIA L40", 142): GpuPeak(181.0, 90.5, 90.5, 0.864),
}


@dataclass
class Kernel:
    fn: Callable[[], Any]
    check: Callable[[], None]
    flops: float
    bytes: float
    info: dict[str, Any] = field(default_factory=dict)


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 3e-2, "atol": 3e-2} if dtype == torch.bfloat16 else {"rtol": 1e-4, "atol": 1e-4}


def shape(preset: str) -> dict[str, int]:
    p = MODELS[preset].params
    return {"B": BATCH, "T": p["block_size"].default, "C": p["n_embd"].default, "H": p["n_head"].default,
            "L": p["n_layer"].default}  # fmt: skip


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _rand(*size: int, dtype: torch.dtype, device: str, seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*size, generator=g).to(device=device, dtype=dtype).requires_grad_(requires_grad)


def close_on_cpu(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """assert_close across devices: both sides on the CPU in float64 (assert_close refuses a CUDA result
    against a CPU reference)."""
    torch.testing.assert_close(actual.detach().cpu().double(), expected.detach().cpu().double(), **tolerance(dtype))


# -- single operators -------------------------------------------------------------------------------


def linear(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    s = shape(preset)
    M, K, N = s["B"] * s["T"], s["C"], 4 * s["C"]  # the MLP's up-projection
    x, w = _rand(M, K, dtype=dtype, device=device), _rand(N, K, dtype=dtype, device=device, seed=1) / math.sqrt(K)
    item = x.element_size()
    return Kernel(
        lambda: F.linear(x, w),
        lambda: close_on_cpu(F.linear(x, w), x.double() @ w.double().T, dtype),
        2 * M * K * N,
        (M * K + K * N + M * N) * item,
    )


def _qkv(preset: str, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    s = shape(preset)
    hd = s["C"] // s["H"]
    return tuple(_rand(s["B"], s["H"], s["T"], hd, dtype=dtype, device=device, seed=i) for i in range(3))


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d) + causal mask) V, written out."""
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


def _attention_work(q: torch.Tensor) -> tuple[float, float]:
    B, H, T, hd = q.shape
    return causal_attention_flops(B, H, T, hd), 4 * B * H * T * hd * q.element_size()


def attention_sdpa(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    q, k, v = _qkv(preset, dtype, device)
    flops, nbytes = _attention_work(q)
    return Kernel(
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        lambda: close_on_cpu(
            F.scaled_dot_product_attention(q, k, v, is_causal=True),
            explicit_attention(q.double(), k.double(), v.double()),
            dtype,
        ),
        flops,
        nbytes,
    )


def attention_explicit(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    q, k, v = _qkv(preset, dtype, device)
    flops, nbytes = _attention_work(q)
    B, H, T, _ = q.shape
    return Kernel(
        lambda: explicit_attention(q, k, v),
        lambda: close_on_cpu(
            explicit_attention(q, k, v),
            F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True),
            dtype,
        ),
        flops,
        nbytes + 3 * B * H * T * T * q.element_size(),  # the T x T scores are written and read back
    )


def _activations(preset: str, dtype: torch.dtype, device: str) -> torch.Tensor:
    s = shape(preset)
    return _rand(s["B"], s["T"], s["C"], dtype=dtype, device=device)


def layer_norm(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    x = _activations(preset, dtype, device)
    C = x.size(-1)
    w, b = _rand(C, dtype=dtype, device=device, seed=1), _rand(C, dtype=dtype, device=device, seed=2)

    def reference() -> torch.Tensor:
        xd = x.double()
        mean, var = xd.mean(-1, keepdim=True), xd.var(-1, unbiased=False, keepdim=True)
        return (xd - mean) / torch.sqrt(var + 1e-5) * w.double() + b.double()

    return Kernel(
        lambda: F.layer_norm(x, (C,), w, b),
        lambda: close_on_cpu(F.layer_norm(x, (C,), w, b), reference(), dtype),
        8 * x.numel(),
        2 * x.numel() * x.element_size(),
    )


def gelu(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    x = _activations(preset, dtype, device).repeat(1, 1, 4)  # the MLP's hidden width
    return Kernel(
        lambda: F.gelu(x),
        lambda: close_on_cpu(F.gelu(x), 0.5 * x.double() * (1 + torch.erf(x.double() / math.sqrt(2))), dtype),
        8 * x.numel(),
        2 * x.numel() * x.element_size(),
    )


def softmax(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    s = shape(preset)
    x = _rand(s["B"], s["H"], s["T"], s["T"], dtype=dtype, device=device)  # attention scores
    return Kernel(
        lambda: x.softmax(-1),
        lambda: close_on_cpu(x.softmax(-1), x.double().exp() / x.double().exp().sum(-1, keepdim=True), dtype),
        5 * x.numel(),
        2 * x.numel() * x.element_size(),
    )


def cross_entropy(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    s = shape(preset)
    logits = _rand(s["B"] * s["T"], VOCAB, dtype=dtype, device=device)
    targets = torch.randint(0, VOCAB, (s["B"] * s["T"],), generator=torch.Generator().manual_seed(0)).to(device)

    def reference() -> torch.Tensor:
        return -logits.double().log_softmax(-1).gather(1, targets[:, None]).mean()

    return Kernel(
        lambda: F.cross_entropy(logits, targets),
        lambda: close_on_cpu(F.cross_entropy(logits, targets), reference(), dtype),
        5 * logits.numel(),
        logits.numel() * logits.element_size(),
    )


def embedding(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    s = shape(preset)
    table = _rand(VOCAB, s["C"], dtype=dtype, device=device)
    idx = torch.randint(0, VOCAB, (s["B"], s["T"]), generator=torch.Generator().manual_seed(0)).to(device)
    return Kernel(
        lambda: F.embedding(idx, table),
        lambda: close_on_cpu(F.embedding(idx, table), table.double()[idx], dtype),
        0,
        2 * s["B"] * s["T"] * s["C"] * table.element_size(),
    )


# -- model pieces -----------------------------------------------------------------------------------


def _block_flops(s: dict[str, int]) -> float:
    """Forward FLOPs of one block: 12 C^2 weights per token (qkv, proj, 4x MLP) and the causal attention."""
    return 2 * s["B"] * s["T"] * 12 * s["C"] ** 2 + causal_attention_flops(s["B"], 1, s["T"], s["C"])


def _gpt(preset: str, device: str, dtype: torch.dtype = torch.float32):
    from bench.model import GPT, GPTConfig

    s = shape(preset)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=s["L"], n_head=s["H"], n_embd=s["C"], block_size=s["T"]))
    return model.to(device=device, dtype=dtype)


def block_forward(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    s = shape(preset)
    block = _gpt(preset, device, dtype).blocks[0]
    reference_block = _gpt(preset, "cpu", torch.float64).blocks[0]
    x = _activations(preset, dtype, device)

    def check() -> None:
        with torch.no_grad():
            close_on_cpu(block(x), reference_block(x.double().cpu()), dtype)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return block(x)

    params = sum(p.numel() for p in block.parameters())
    return Kernel(run, check, _block_flops(s), (2 * x.numel() + params) * x.element_size())


def block_forward_backward(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    s = shape(preset)
    block = _gpt(preset, device, dtype).blocks[0]
    reference_block = _gpt(preset, "cpu", torch.float64).blocks[0]
    x = _activations(preset, dtype, device)

    def run() -> None:
        block.zero_grad(set_to_none=True)
        block(x).square().mean().backward()

    def check() -> None:
        run()
        reference_block.zero_grad(set_to_none=True)
        reference_block(x.double().cpu()).square().mean().backward()
        close_on_cpu(block.mlp.c_fc.weight.grad, reference_block.mlp.c_fc.weight.grad, dtype)

    params = sum(p.numel() for p in block.parameters())
    return Kernel(run, check, 3 * _block_flops(s), (6 * x.numel() + 3 * params) * x.element_size())


def _model_flops(s: dict[str, int]) -> float:
    return 3 * (s["L"] * _block_flops(s) + 2 * s["B"] * s["T"] * s["C"] * VOCAB)


def _tokens(preset: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = shape(preset)
    idx = torch.randint(0, VOCAB, (s["B"], s["T"] + 1), generator=torch.Generator().manual_seed(0)).to(device)
    return idx[:, :-1], idx[:, 1:]


def model_forward_backward(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    """The whole GPT, forward and backward; bfloat16 runs under autocast as train() does."""
    s = shape(preset)
    model = _gpt(preset, device)
    reference = _gpt(preset, "cpu", torch.float64)
    x, y = _tokens(preset, device)
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    def run() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())
        loss.backward()
        return loss

    def check() -> None:
        expected = F.cross_entropy(reference(x.cpu()).flatten(0, 1), y.cpu().flatten())
        close_on_cpu(run().detach(), expected, dtype)

    params = model.num_params()
    return Kernel(run, check, _model_flops(s), 4 * params * 4 + 10 * s["L"] * s["B"] * s["T"] * s["C"] * 4)


def optimizer_step(preset: str, name: str, impl: str, device: str) -> Kernel:
    """One step of a registered optimizer on the preset's parameters, with fixed gradients."""
    from bench.techniques.optimizers import OPTIMIZERS

    entry = OPTIMIZERS[name]

    def build(chosen_impl: str):
        model = _gpt(preset, device)
        for i, p in enumerate(model.parameters()):
            p.grad = _rand(*p.shape, dtype=p.dtype, device=device, seed=100 + i) * 1e-2
        chosen = {"impl": chosen_impl} if "impl" in entry.params else {}  # one implementation: nothing to pick
        optimizers = entry.build(model, entry.resolve(chosen, "optimizer"), device)
        return model, optimizers

    model, optimizers = build(impl)

    def run() -> None:
        for opt in optimizers:
            opt.step()

    def check() -> None:  # the for-loop implementation is the reference
        fresh, opts = build(impl)
        ref, ref_opts = build("forloop")
        for o in (*opts, *ref_opts):
            o.step()
        for a, b in zip(fresh.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), rtol=1e-5, atol=1e-6)

    params = model.num_params()
    return Kernel(run, check, 10 * params, 7 * params * 4, {"optimizer": name, "impl": impl})


def optimizer_impls(name: str, device: str) -> list[str]:
    """The implementations of a registered optimizer that torch has on `device` (fused only where it runs)."""
    from bench.machine import fused_available
    from bench.techniques.optimizers import OPTIMIZERS

    entry = OPTIMIZERS[name]
    if "impl" not in entry.params:  # a single implementation, timed as the for-loop reference
        return ["forloop"]
    impls = [i for i in ("forloop", "foreach", "fused") if i in entry.params["impl"].choices]
    if not fused_available(getattr(entry.build, "torch_class", ""), device.split(":")[0]):
        impls = [i for i in impls if i != "fused"]
    return impls


def clip_grad_norm(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    model = _gpt(preset, device)
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = _rand(*p.shape, dtype=p.dtype, device=device, seed=200 + i)
    grads = [p.grad.clone() for p in params]

    def run() -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)

    def check() -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        total = torch.sqrt(sum(g.double().square().sum() for g in grads))
        returned = run()
        close_on_cpu(returned, total, torch.float32)
        for p, g in zip(params, grads, strict=True):
            close_on_cpu(p.grad, g.double() / (total + 1e-6), torch.float32)

    n = model.num_params()
    return Kernel(run, check, 3 * n, 3 * n * 4)


def train_step(preset: str, dtype: torch.dtype, device: str) -> Kernel:
    """One step of train()'s own loop (bench.train.Training.step) on the nanoGPT recipe."""
    from bench.config import RunConfig
    from bench.train import Training

    cfg = RunConfig.build({"model": preset, "device": device, "autocast": "bf16" if dtype == torch.bfloat16 else "none",
                           "steps": 10**6, "eval_batches": 1})  # fmt: skip
    run = Training(cfg)

    def check() -> None:
        probe = Training(cfg)
        x, y = probe.batches.next()
        probe.batches = Training(cfg).batches  # replay the same first batch inside step()
        with torch.no_grad(), probe.autocast:
            expected = F.cross_entropy(probe.model(x).flatten(0, 1).float(), y.flatten())
        ce, _ = probe.step()
        close_on_cpu(ce, expected, dtype)

    s = shape(preset)
    return Kernel(lambda: run.step(), check, _model_flops({**s, "B": cfg.batch_size}), 0)


def gpu_identity(device: str) -> tuple[str, int, int]:
    """(name, SM count, memory in MiB) of a CUDA device: what the peak table is keyed by, and what a record
    names it by."""
    props = torch.cuda.get_device_properties(torch.device(device))
    return props.name, props.multi_processor_count, props.total_memory // 2**20


def peak_entry(device: str) -> tuple[tuple[str, int], GpuPeak] | None:
    """The peak-table entry of this exact GPU (name and SM count), or None for the CPU and unknown GPUs."""
    if not device.startswith("cuda"):
        return None
    name, sms, _ = gpu_identity(device)
    key = (name, sms)
    return (key, GPU_PEAKS[key]) if key in GPU_PEAKS else None


def peak(device: str, dtype: torch.dtype) -> tuple[float, float] | None:
    """(FLOP/s, bytes/s) peak of a known GPU for `dtype`, or None. float32 counts as TF32 where torch lets
    matmuls use it (torch.backends.cuda.matmul.allow_tf32)."""
    entry = peak_entry(device)
    if entry is None:
        return None
    p = entry[1]
    if dtype == torch.bfloat16:
        flops = p.bf16
    else:
        flops = p.tf32 if torch.backends.cuda.matmul.allow_tf32 else p.fp32
    return flops * 1e12, p.memory * 1e12


# -- timing on a GPU ----------------------------------------------------------------------------------
# pytest-benchmark times `iterations` calls between two reads of its timer. On a GPU the timer below reads
# CUDA events, each after waiting for the work queued before it: so one round is many launches and one
# synchronize, timed by the device's clock, and a call's time is its execution, not its launch.

ROUND_SECONDS = 2e-3  # device time one round aims at: launches of a 5 us kernel, 400 per synchronize
MAX_LAUNCHES = 1000


def event_clock(device: str) -> Callable[[], float]:
    """A clock in seconds for pytest-benchmark's timer: each read records a CUDA event on `device`'s current
    stream and waits for it. Intervals are summed event to event in float64 (one event pair's elapsed_time
    is float32 milliseconds, too coarse across a whole session)."""
    stream = torch.cuda.current_stream(torch.device(device))
    last = torch.cuda.Event(enable_timing=True)
    last.record(stream)
    last.synchronize()
    state = {"last": last, "total": 0.0}

    def clock() -> float:
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        event.synchronize()
        state["total"] += state["last"].elapsed_time(event) / 1e3
        state["last"] = event
        return state["total"]

    return clock


def launches_per_round(fn: Callable[[], Any], clock: Callable[[], float], target: float = ROUND_SECONDS) -> int:
    """Calls per timed round so that a round lasts about `target` seconds of device time (10 to MAX_LAUNCHES)."""
    fn()  # compile, allocate, load kernels
    start = clock()
    for _ in range(10):
        fn()
    each = (clock() - start) / 10
    return max(10, min(MAX_LAUNCHES, math.ceil(target / each) if each > 0 else MAX_LAUNCHES))


def l2_bytes(device: str) -> int:
    """The GPU's L2 cache size in bytes (0 on the CPU)."""
    if not device.startswith("cuda"):
        return 0
    return int(getattr(torch.cuda.get_device_properties(torch.device(device)), "L2_cache_size", 0))


def copies_to_leave_l2(nbytes: float, l2: int, budget: float = 2**30) -> int:
    """How many separate copies of a kernel's inputs, called in turn, make its working set at least twice
    the L2 cache, so each call reads from memory (HBM), not from L2; capped by a memory budget."""
    if l2 <= 0 or nbytes <= 0 or nbytes >= 2 * l2:
        return 1
    return max(1, min(math.ceil(2 * l2 / nbytes), int(budget // nbytes)))


def rotating(build: Callable[[], Kernel], copies: int) -> Kernel:
    """A kernel whose calls cycle through `copies` independently built instances (distinct memory, same
    values): its working set is `copies` times one instance's bytes. FLOPs and bytes stay per call."""
    first = build()
    if copies <= 1:
        return first
    fns = [first.fn, *(build().fn for _ in range(copies - 1))]
    held: list[Any] = [None] * copies  # each copy's last output stays alive, so outputs rotate through
    turn = {"i": 0}  # distinct memory too (a freed output's block would be reused, and written in L2)

    def run() -> Any:
        i = turn["i"]
        turn["i"] = (i + 1) % copies
        held[i] = fns[i]()
        return held[i]

    return Kernel(run, first.check, first.flops, first.bytes, {**first.info, "input_copies": copies})


WARMUP_ROUNDS = 2


def measure(benchmark: Any, build: Callable[[], Kernel], device: str, rounds: int,
            dtype: torch.dtype | None = None, leave_l2: bool = False) -> None:  # fmt: skip
    """Check a kernel against its reference, then time it with pytest-benchmark's `benchmark` fixture and record
    its derived rates in benchmark.extra_info.

    On a GPU one round is many launches between two CUDA events (`event_clock`, `launches_per_round`);
    kernels built with `leave_l2=True` cycle through enough copies of their inputs to read them from memory,
    not L2; a bandwidth figure is recorded only where the working set is at least twice the L2 cache."""
    on_gpu = device.startswith("cuda")
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
