"""train(RunConfig) -> RunRecord: the one training loop.

Technique names are resolved through the registries here, at the edge. Per-step values (train loss,
gradient norm) stay on the device in preallocated buffers and reach the host every SYNC_EVERY steps
and at evaluations, so the loop never waits on the device each step.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from bench.calibrate import kernels_used
from bench.config import RunConfig
from bench.data import BatchStream, Corpus, fixed_batches, load_corpus
from bench.devices import check_available, context_broken, precision, run_device, use_device
from bench.env import environment, set_threads
from bench.model import GPT, GPTConfig
from bench.registry import ConfigError
from bench.techniques import CLIPPING, INITS
from bench.techniques.class_path import optimizer_entry
from bench.techniques.schedules import multiplier

# Steps between host reads of the loss buffer: divergence is noticed at most this late.
SYNC_EVERY = 10
# First steps left out of train_time (and recorded apart): on CUDA they hold cuBLAS/cuDNN set-up, lazy
# kernel loading and the optimizer's state allocation, which no later step pays.
TIMING_WARMUP_STEPS = 2


@dataclass
class RunRecord:
    config: dict[str, Any]
    config_hash: str
    status: str = "failed"  # complete | diverged | stopped_early | pruned | failed
    status_step: int | None = None  # where it diverged or stopped early
    error: str | None = None  # the traceback of a failed run
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    loss_floor: float | None = None  # entropy rate of a synthetic corpus
    steps: int = 0
    tokens: int = 0
    wall_time: float = 0.0  # seconds, set-up and evaluations included
    train_time: float = 0.0  # seconds in training steps alone (AlgoPerf's clock)
    tokens_per_second: float = 0.0  # training tokens after the warm-up steps / train_time
    warmup_steps: int = 0  # first steps left out of train_time (TIMING_WARMUP_STEPS, fewer in shorter runs)
    warmup_time: float = 0.0  # seconds those steps took
    peak_memory_mb: float = 0.0  # process peak RSS on the CPU, max allocated on CUDA
    n_params: int = 0
    target: float | None = None
    target_step: int | None = None
    target_tokens: int | None = None
    target_time: float | None = None
    curves: dict[str, list] = field(default_factory=dict)  # train_loss, grad_norm, lr per step; val_step, val_loss
    env: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        return cls(**d)


class Progress(Protocol):
    def start(self, cfg: RunConfig, total_steps: int) -> None: ...
    def update(self, step: int, train_loss: float) -> None: ...
    def evaluated(self, step: int, val_loss: float) -> bool | None:
        """After each evaluation; returning True stops the run as `pruned` (a search's pruner asked)."""

    def finish(self, record: RunRecord) -> None: ...


def resolve_device(device: str, worker_device: str | None = None) -> str:
    """The concrete device a run trains on (see bench.devices); ConfigError when this machine lacks it."""
    device = run_device(device, worker_device)
    check_available(device)
    return device


@contextlib.contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """torch.use_deterministic_algorithms for one run (cuBLAS needs its workspace setting for it)."""
    if not enabled:
        yield
        return
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    set_threads(threads)
    try:
        yield
    finally:
        set_threads(before)


def build_model(cfg: RunConfig, corpus: Corpus, device: str) -> GPT:
    """The GPT of `cfg`, initialized by its init technique under its seed."""
    dropout = cfg.regularizer("dropout")
    m = cfg.model
    gpt_config = GPTConfig(
        vocab_size=corpus.vocab_size,
        n_layer=m["n_layer"],
        n_head=m["n_head"],
        n_embd=m["n_embd"],
        block_size=m["block_size"],
        positions=m["positions"],
        bias=m["bias"],
        dropout=dropout["p"] if dropout else 0.0,
    )
    torch.manual_seed(cfg.seed)
    model = GPT(gpt_config)
    INITS[cfg.init.name].build(model, cfg.init.params)
    return model.to(device)


def loss_terms(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float, z_loss: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective to minimize, plain cross-entropy). The two are one tensor without regularizers."""
    flat, y = logits.flatten(0, 1), targets.flatten()
    if not smoothing and not z_loss:
        ce = F.cross_entropy(flat, y)
        return ce, ce
    logp = F.log_softmax(flat.float(), dim=-1)
    ce = -logp.gather(1, y[:, None]).mean()
    objective = ce
    if smoothing:  # the same mixture as F.cross_entropy(label_smoothing=eps)
        objective = (1 - smoothing) * ce - smoothing * logp.mean()
    if z_loss:
        objective = objective + z_loss * flat.float().logsumexp(dim=-1).square().mean()
    return objective, ce


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train(cfg: RunConfig, progress: Progress | None = None, device: str | None = None) -> RunRecord:
    """One run. A failing run does not raise: its record says how it ended (bad input and Ctrl-C do raise).
    `device`: the GPU a suite worker was given, used for runs whose device is a plain `cuda`."""
    return run_training(cfg, progress, device)[0]


def run_training(
    cfg: RunConfig, progress: Progress | None = None, device: str | None = None
) -> tuple[RunRecord, GPT | None]:
    """train() that also hands back the trained model (the weights evaluated: EMA or averaged ones)."""
    record = RunRecord(config=cfg.to_dict(), config_hash=cfg.hash, target=cfg.target)
    start = time.perf_counter()
    model = None
    device = resolve_device(cfg.device, device)  # bad input raises here, before any work
    try:
        with torch_threads(cfg.threads), deterministic_kernels(cfg.deterministic):
            model = _train(cfg, record, progress, device)
    except ConfigError:
        raise  # bad input (a missing corpus, say) is the caller's to report, not a failed run
    except Exception:
        record.status = "failed"
        record.error = traceback.format_exc()
        if context_broken(device):
            record.env["cuda_context_lost"] = True  # the runner replaces this worker (bench.runner)
    record.wall_time = time.perf_counter() - start
    if progress:
        progress.finish(record)
    return record, model


class Training:
    """Everything one run needs, built from its config: the model, its optimizers, schedules, clipping,
    batches and regularizers. `step()` is one optimizer step exactly as train() takes it (the kernel
    suite times this same method)."""

    def __init__(self, cfg: RunConfig, device: str | None = None):
        self.cfg = cfg
        self.device = device = device or resolve_device(cfg.device)
        self.corpus = corpus = load_corpus(cfg.data)
        self.model = model = build_model(cfg, corpus, device)
        self.optimizers = optimizer_entry(cfg.optimizer).build(model, cfg.optimizer.params, device)
        self.lr_factor = multiplier(cfg.schedule, cfg.total_steps)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor) for opt in self.optimizers]
        self.clip = CLIPPING[cfg.clip.name].build(cfg.clip.params)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.matrices = [p for p in self.params if p.dim() >= 2]
        block = cfg.model["block_size"]
        self.batches = BatchStream(corpus.train, cfg.batch_size, block, seed=cfg.batch_seed, device=device)
        self.val_batches = fixed_batches(corpus.val, cfg.eval_batches, cfg.eval_batch_size, block, device)
        smoothing, z_loss, l2 = (cfg.regularizer(n) for n in ("label_smoothing", "z_loss", "l2"))
        self.smoothing = smoothing["eps"] if smoothing else 0.0
        self.z_loss = z_loss["coef"] if z_loss else 0.0
        self.l2 = l2["coef"] if l2 else 0.0
        self.ema = None
        ema = cfg.regularizer("ema")
        if ema:
            self.ema = ExponentialMovingAverage(model, ema["decay"])
        self.autocast = torch.autocast(
            device_type="cuda" if device.startswith("cuda") else "cpu",
            dtype=torch.bfloat16,
            enabled=cfg.autocast == "bf16",
        )
        model.train()

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over grad_accum micro-batches: (mean cross-entropy, gradient norm), on the device."""
        cfg = self.cfg
        ce_sum = None
        for _ in range(cfg.grad_accum):
            x, y = self.batches.next()
            with self.autocast:
                objective, ce = loss_terms(self.model(x), y, self.smoothing, self.z_loss)
            (objective / cfg.grad_accum if cfg.grad_accum > 1 else objective).backward()
            ce_sum = ce.detach() if ce_sum is None else ce_sum + ce.detach()
        if self.l2:
            torch._foreach_add_([p.grad for p in self.matrices], self.matrices, alpha=self.l2)
        norm = self.clip(self.params)
        for opt in self.optimizers:
            opt.step()
        for sched in self.schedulers:
            sched.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return (ce_sum / cfg.grad_accum if cfg.grad_accum > 1 else ce_sum), norm

    def evaluate(self) -> float:
        """Mean validation cross-entropy over the fixed batches, at the weights a run reports."""
        for opt in self.optimizers:  # schedule-free: evaluate at the averaged weights x, not at y
            if hasattr(opt, "eval"):
                opt.eval()
        net = self.ema.module if self.ema is not None else self.model
        net.eval()
        with torch.inference_mode(), self.autocast:
            total_loss = torch.zeros((), device=self.device)
            for x, y in self.val_batches:
                total_loss += F.cross_entropy(net(x).flatten(0, 1).float(), y.flatten())
            value = total_loss.item() / len(self.val_batches)
        net.train()
        for opt in self.optimizers:
            if hasattr(opt, "train"):
                opt.train()
        return value

    def evaluated_model(self) -> GPT:
        """The weights evaluate() uses: the EMA's, or a schedule-free optimizer's average."""
        if self.ema is not None:
            return self.ema.module
        for opt in self.optimizers:
            if hasattr(opt, "eval"):
                opt.eval()
        return self.model


class ExponentialMovingAverage:
    """The weights' exponential moving average, as torch.optim.swa_utils.AveragedModel with
    get_ema_multi_avg_fn computes it (the same foreach lerp, so the same numbers), with the update count kept
    in Python: AveragedModel keeps it in a CPU tensor and copies it to the device at every update, a blocking
    host-to-device copy each step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.module = copy.deepcopy(model)
        self.decay = decay
        self.updates = 0
        self._averaged = [p.detach() for p in self.module.parameters()]

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        current = [p.detach() for p in model.parameters()]
        if self.updates == 0:
            torch._foreach_copy_(self._averaged, current)
        else:
            torch._foreach_lerp_(self._averaged, current, 1 - self.decay)
        self.updates += 1


def _train(cfg: RunConfig, record: RunRecord, progress: Progress | None, device: str) -> GPT:
    use_device(device)
    m = cfg.model
    record.env = environment(device)
    record.env["precision"] = precision(device, cfg.autocast, m["n_embd"] // m["n_head"], m["n_head"])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    run = Training(cfg, device)
    record.env["optimizer_kernels"] = kernels_used(cfg, run.optimizers, run.model.num_params(), device)
    record.loss_floor = run.corpus.entropy_rate
    record.n_params = run.model.num_params()
    total = cfg.total_steps
    early = cfg.regularizer("early_stopping")

    losses = torch.zeros(total, device=device)
    norms = torch.zeros(total, device=device)
    host_losses: list[float] = []
    host_norms: list[float] = []
    val_steps: list[int] = []
    val_losses: list[float] = []
    limit = math.inf
    best, stale = math.inf, 0
    train_time = 0.0
    tokens_per_step = cfg.tokens_per_step
    warmup = min(TIMING_WARMUP_STEPS, total - 1)  # a 1-step run keeps its one step timed

    def sync(upto: int) -> int | None:
        """Copy buffered values to the host; the first diverged step, if any."""
        nonlocal limit
        lo = len(host_losses)
        chunk = losses[lo:upto].tolist()
        host_losses.extend(chunk)
        host_norms.extend(norms[lo:upto].tolist())
        if lo == 0 and chunk:
            limit = cfg.divergence_factor * abs(chunk[0]) if math.isfinite(chunk[0]) else -math.inf
        for i, value in enumerate(chunk):
            if not math.isfinite(value) or value > limit:
                return lo + i
        return None

    if progress:
        progress.start(cfg, total)
    tick = time.perf_counter()
    step = 0
    for step in range(total):
        losses[step], norms[step] = run.step()
        done = step + 1
        if done == warmup:  # one synchronize, once: the warm-up's time is recorded apart
            if device.startswith("cuda"):
                torch.cuda.synchronize(torch.device(device))
            now = time.perf_counter()
            record.warmup_steps, record.warmup_time = warmup, now - tick
            tick = now
        is_eval = done % cfg.eval_interval == 0 or done == total
        if done % SYNC_EVERY == 0 or is_eval:
            bad = sync(done)
            if progress:
                progress.update(done, host_losses[-1])
            if bad is not None:
                record.status, record.status_step = "diverged", bad + 1
                break
        if is_eval:
            if device.startswith("cuda"):
                torch.cuda.synchronize(torch.device(device))
            train_time += time.perf_counter() - tick
            val = run.evaluate()
            tick = time.perf_counter()
            val_steps.append(done)
            val_losses.append(val)
            if progress and progress.evaluated(done, val) and done < total:  # at the end there is nothing to save
                record.status, record.status_step = "pruned", done
                break
            if not math.isfinite(val):
                record.status, record.status_step = "diverged", done
                break
            if cfg.target is not None and record.target_step is None and val <= cfg.target:
                record.target_step, record.target_tokens, record.target_time = (
                    done,
                    done * tokens_per_step,
                    train_time,
                )
            if early is not None:
                if val < best - early["min_delta"]:
                    best, stale = val, 0
                else:
                    stale += 1
                    if stale >= early["patience"]:
                        record.status, record.status_step = "stopped_early", done
                        break
    else:
        record.status = "complete"
    if record.status == "diverged":
        done = record.status_step
        train_time += time.perf_counter() - tick
    else:
        done = step + 1

    record.steps = done
    record.tokens = done * tokens_per_step
    record.train_time = train_time
    timed_tokens = (done - record.warmup_steps) * tokens_per_step
    record.tokens_per_second = timed_tokens / train_time if train_time > 0 else 0.0
    record.peak_memory_mb = peak_memory_mb(device)
    finite = [v for v in val_losses if math.isfinite(v)]
    record.final_val_loss = val_losses[-1] if val_losses and math.isfinite(val_losses[-1]) else None
    record.best_val_loss = min(finite) if finite else None
    base_lr = cfg.optimizer["lr"]
    record.curves = {
        "train_loss": [v if math.isfinite(v) else None for v in host_losses[:done]],
        "grad_norm": [v if math.isfinite(v) else None for v in host_norms[:done]],
        "lr": [base_lr * run.lr_factor(t) for t in range(done)],
        "val_step": val_steps,
        "val_loss": [v if math.isfinite(v) else None for v in val_losses],
    }
    return run.evaluated_model()
