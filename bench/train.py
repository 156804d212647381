"""train(RunConfig) -> RunRecord: the one training loop.

It names no technique: entries are looked up through the axis table (bench.axes), and the techniques that
act inside the loop (regularizers, early stopping) are hook objects it calls at fixed points. Per-step
values (train loss, gradient norm) stay on the device in preallocated buffers and reach the host every
SYNC_EVERY steps and at evaluations, so the loop never waits on the device each step.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from bench.axes import AXES
from bench.config import RunConfig
from bench.data import BatchStream, Corpus, fixed_batches
from bench.devices import check_available, context_broken, precision, run_device, use_device
from bench.env import environment, set_threads
from bench.flops import step_flops
from bench.machine import kernels_used
from bench.model import GPT, GPTConfig
from bench.registry import ConfigError
from bench.techniques.class_path import loop_needs, optimizer_entry
from bench.techniques.corpora import load_corpus
from bench.techniques.regularization import Regularizer, overridden
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
    # process CPU seconds (every thread) over the same steps as train_time: where wall time moves and this does
    # not, other processes held the CPU (a loaded machine), not the technique
    cpu_time: float = 0.0
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

    @property
    def reason(self) -> str:
        """A failed run's error in one line: its traceback's last (the exception)."""
        return ((self.error or "").strip().splitlines() or ["unknown error"])[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        return cls(**d)


class Progress(Protocol):
    """What a run shows while it trains; it only displays (what may stop a run is an evaluation hook)."""

    def start(self, cfg: RunConfig, total_steps: int) -> None: ...
    def update(self, step: int, train_loss: float) -> None: ...
    def evaluated(self, step: int, val_loss: float) -> None: ...
    def finish(self, record: RunRecord) -> None: ...


# After each evaluation: (step, validation loss) -> a status that stops the run ("pruned" from a search's
# pruner, "stopped_early" from early stopping), or None to go on.
EvaluationHook = Callable[[int, float], "str | None"]


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


def build_techniques(cfg: RunConfig) -> list[Regularizer]:
    """The hook objects of every entry the run enables on a combining axis (regularizers), in name order."""
    return [
        axis.registry[choice.name].build(choice.params)
        for axis in AXES.values()
        if axis.combine
        for choice in getattr(cfg, axis.name)
    ]


def build_model(cfg: RunConfig, corpus: Corpus, device: str, techniques: list[Regularizer] | None = None) -> GPT:
    """The GPT of `cfg` (with the options its techniques set, e.g. dropout), initialized under its seed."""
    options: dict[str, Any] = {"vocab_size": corpus.vocab_size, **cfg.model.params}
    for hook in overridden(build_techniques(cfg) if techniques is None else techniques, "model_options"):
        hook(options)
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(**options))
    AXES["init"].registry[cfg.init.name].build(model, cfg.init.params)
    return model.to(device)


def loss_terms(logits: torch.Tensor, targets: torch.Tensor, hooks: list[Any] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective to minimize, plain cross-entropy): one tensor unless a technique's `loss` hook changes it."""
    flat, y = logits.flatten(0, 1), targets.flatten()
    if not hooks:
        ce = F.cross_entropy(flat, y)
        return ce, ce
    logp = F.log_softmax(flat.float(), dim=-1)
    ce = -logp.gather(1, y[:, None]).mean()
    objective = ce
    for hook in hooks:
        objective = hook(objective, ce, flat, logp)
    return objective, ce


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train(
    cfg: RunConfig, progress: Progress | None = None, device: str | None = None, hooks: Sequence[EvaluationHook] = ()
) -> RunRecord:
    """One run. A failing run does not raise: its record says how it ended (bad input and Ctrl-C do raise).
    `device`: the GPU a suite worker was given, used for runs whose device is a plain `cuda`. `hooks`: called
    after each evaluation, after the run's own (a search's pruner)."""
    return run_training(cfg, progress, device, hooks)[0]


def run_training(
    cfg: RunConfig, progress: Progress | None = None, device: str | None = None, hooks: Sequence[EvaluationHook] = ()
) -> tuple[RunRecord, GPT | None]:
    """train() that also hands back the trained model (the weights evaluated: EMA or averaged ones)."""
    record = RunRecord(config=cfg.to_dict(), config_hash=cfg.hash, target=cfg.target)
    start = time.perf_counter()
    model = None
    device = resolve_device(cfg.device, device)  # bad input raises here, before any work
    try:
        with torch_threads(cfg.threads), deterministic_kernels(cfg.deterministic):
            model = _train(cfg, record, progress, device, hooks)
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
    batches and the hooks of its techniques (bench.techniques.regularization.Regularizer). `step()` is one
    optimizer step exactly as train() takes it (the kernel suite times this same method)."""

    def __init__(self, cfg: RunConfig, device: str | None = None):
        self.cfg = cfg
        self.device = device = device or resolve_device(cfg.device)
        self.corpus = corpus = load_corpus(cfg.data)
        techniques = build_techniques(cfg)
        self.model = model = build_model(cfg, corpus, device, techniques)
        self.optimizers = optimizer_entry(cfg.optimizer).build(model, cfg.optimizer.params, device)
        self.lr_factor = multiplier(cfg.schedule, cfg.total_steps)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor) for opt in self.optimizers]
        self.clip = AXES["clip"].registry[cfg.clip.name].build(cfg.clip.params)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.matrices = [p for p in self.params if p.dim() >= 2]
        block = cfg.model["block_size"]
        self.batches = BatchStream(corpus.train, cfg.batch_size, block, seed=cfg.batch_seed, device=device)
        self.val_batches = fixed_batches(corpus.val, cfg.eval_batches, cfg.eval_batch_size, block, device)
        self.autocast = torch.autocast(
            device_type="cuda" if device.startswith("cuda") else "cpu",
            dtype=torch.bfloat16,
            enabled=cfg.autocast == "bf16",
        )
        # only the hooks a technique overrides: an unused point costs nothing per step
        self.loss_hooks, self.after_backward, self.after_step, self.after_evaluation, self.evaluated_by = (
            overridden(techniques, hook)
            for hook in ("loss", "after_backward", "after_step", "after_evaluation", "evaluated_model")
        )
        for setup in overridden(techniques, "setup"):
            setup(self)
        self.needs = loop_needs(cfg.optimizer)
        if self.needs.closure or self.needs.create_graph:
            self.step = self.step_with_needs  # bound once: every other optimizer keeps step() as it is
        model.train()

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over grad_accum micro-batches: (mean cross-entropy, gradient norm), on the device."""
        cfg = self.cfg
        ce_sum = None
        for _ in range(cfg.grad_accum):
            x, y = self.batches.next()
            with self.autocast:
                objective, ce = loss_terms(self.model(x), y, self.loss_hooks)
            (objective / cfg.grad_accum if cfg.grad_accum > 1 else objective).backward()
            ce_sum = ce.detach() if ce_sum is None else ce_sum + ce.detach()
        for hook in self.after_backward:
            hook(self)
        norm = self.clip(self.params)
        for opt in self.optimizers:
            opt.step()
        self.end_step()
        return (ce_sum / cfg.grad_accum if cfg.grad_accum > 1 else ce_sum), norm

    def end_step(self) -> None:
        """After the optimizers stepped: schedules advance, gradients go, after-step hooks run."""
        for sched in self.schedulers:
            sched.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        for hook in self.after_step:
            hook(self)

    def step_with_needs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """step() for an optimizer whose step needs more than gradients (LoopNeeds): a closure that clears
        the gradients and recomputes them on the same micro-batches (LBFGS, SAM), and/or backward with
        create_graph=True, attention then on the math kernels (the fused ones have no double backward)."""
        cfg, create_graph = self.cfg, self.needs.create_graph
        batches = [self.batches.next() for _ in range(cfg.grad_accum)]

        def forward_backward() -> tuple[torch.Tensor, torch.Tensor]:
            ce_sum = objective_sum = None
            with contextlib.ExitStack() as stack:
                if create_graph:
                    from torch.nn.attention import SDPBackend, sdpa_kernel

                    stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
                    stack.enter_context(warnings.catch_warnings())
                    # the cycle it warns of (parameter <-> gradient) is broken by zero_grad(set_to_none=True)
                    warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
                for x, y in batches:
                    with self.autocast:
                        objective, ce = loss_terms(self.model(x), y, self.loss_hooks)
                    part = objective / cfg.grad_accum if cfg.grad_accum > 1 else objective
                    part.backward(create_graph=create_graph)
                    ce_sum = ce.detach() if ce_sum is None else ce_sum + ce.detach()
                    objective_sum = objective.detach() if objective_sum is None else objective_sum + objective.detach()
            for hook in self.after_backward:
                hook(self)
            n = cfg.grad_accum
            return (ce_sum / n if n > 1 else ce_sum), (objective_sum / n if n > 1 else objective_sum)

        def closure() -> torch.Tensor:
            with torch.enable_grad():  # optimizers step under no_grad
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                objective = forward_backward()[1]
                self.clip(self.params)
            return objective

        ce, _ = forward_backward()
        norm = self.clip(self.params)
        for opt in self.optimizers:
            if self.needs.closure:
                opt.step(closure)
            else:
                opt.step()
        self.end_step()
        return ce, norm

    def weights(self) -> torch.nn.Module:
        """The module evaluated: the model, or what a technique evaluates instead (EMA's average)."""
        net = self.model
        for hook in self.evaluated_by:
            net = hook(net)
        return net

    def evaluate(self) -> float:
        """Mean validation cross-entropy over the fixed batches, at the weights a run reports."""
        for opt in self.optimizers:  # schedule-free: evaluate at the averaged weights x, not at y
            if hasattr(opt, "eval"):
                opt.eval()
        net = self.weights()
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
        """The weights evaluate() uses, left in place: a technique's (EMA), or a schedule-free optimizer's average."""
        net = self.weights()
        if net is self.model:
            for opt in self.optimizers:
                if hasattr(opt, "eval"):
                    opt.eval()
        return net


class Curves:
    """Per-step train loss and gradient norm, kept in device buffers and copied to the host every SYNC_EVERY
    steps and at evaluations (the loop never waits on the device each step); divergence is judged on copy."""

    def __init__(self, total: int, device: str, divergence_factor: float):
        self.losses = torch.zeros(total, device=device)
        self.norms = torch.zeros(total, device=device)
        self.host_losses: list[float] = []
        self.host_norms: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self.factor, self.limit = divergence_factor, math.inf

    def sync(self, upto: int) -> int | None:
        """Copy buffered values to the host; the first diverged step, if any."""
        lo = len(self.host_losses)
        chunk = self.losses[lo:upto].tolist()
        self.host_losses.extend(chunk)
        self.host_norms.extend(self.norms[lo:upto].tolist())
        if lo == 0 and chunk:
            self.limit = self.factor * abs(chunk[0]) if math.isfinite(chunk[0]) else -math.inf
        for i, value in enumerate(chunk):
            if not math.isfinite(value) or value > self.limit:
                return lo + i
        return None


class Clock:
    """Training time alone (AlgoPerf's clock): paused for evaluations; the first `warmup` steps recorded apart.
    Process CPU time runs beside it over the same steps."""

    def __init__(self, device: str, warmup: int):
        self.device, self.warmup, self.train_time, self.cpu_time = device, warmup, 0.0, 0.0
        self.tick = time.perf_counter()
        self.cpu_tick = time.process_time()

    def now(self) -> float:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(torch.device(self.device))
        return time.perf_counter()

    def stepped(self, done: int, record: RunRecord) -> None:
        if done == self.warmup:  # one synchronize, once
            now = self.now()
            record.warmup_steps, record.warmup_time = self.warmup, now - self.tick
            self.tick, self.cpu_tick = now, time.process_time()

    def pause(self) -> None:
        self.train_time += self.now() - self.tick
        self.cpu_time += time.process_time() - self.cpu_tick

    def resume(self) -> None:
        self.tick = time.perf_counter()
        self.cpu_tick = time.process_time()


class Target:
    """Records when the run first reaches the config's target validation loss (AlgoPerf's time-to-target)."""

    def __init__(self, cfg: RunConfig, record: RunRecord, clock: Clock):
        self.cfg, self.record, self.clock = cfg, record, clock

    def after_evaluation(self, step: int, val_loss: float) -> str | None:
        r = self.record
        if r.target_step is None and val_loss <= self.cfg.target:
            r.target_step, r.target_tokens, r.target_time = step, step * self.cfg.tokens_per_step, self.clock.train_time
        return None


def evaluation_hooks(
    run: Training, record: RunRecord, clock: Clock, extra: Sequence[EvaluationHook]
) -> list[EvaluationHook]:
    """What may stop a run after an evaluation, in order: a non-finite loss, the target's record, the
    caller's hooks (a search's pruner), then the techniques' own (early stopping)."""
    hooks: list[EvaluationHook] = [lambda step, val: None if math.isfinite(val) else "diverged"]
    if run.cfg.target is not None:
        hooks.append(Target(run.cfg, record, clock).after_evaluation)
    return hooks + list(extra) + run.after_evaluation


def _train(
    cfg: RunConfig, record: RunRecord, progress: Progress | None, device: str, hooks: Sequence[EvaluationHook]
) -> GPT:
    use_device(device)
    m = cfg.model
    record.env = environment(device)
    record.env["precision"] = precision(device, cfg.autocast, m["n_embd"] // m["n_head"], m["n_head"])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    run = Training(cfg, device)
    record.env["optimizer_kernels"] = kernels_used(cfg, run.optimizers, run.model.num_params(), device)
    record.env["step_flops"] = step_flops(cfg, run.corpus.vocab_size)  # for the report's roofline
    record.loss_floor, record.n_params = run.corpus.entropy_rate, run.model.num_params()
    total = cfg.total_steps
    curves = Curves(total, device, cfg.divergence_factor)
    clock = Clock(device, warmup=min(TIMING_WARMUP_STEPS, total - 1))  # a 1-step run keeps its one step timed
    after_evaluation = evaluation_hooks(run, record, clock, hooks)
    if progress:
        progress.start(cfg, total)
    clock.resume()
    done = 0
    for step in range(total):
        curves.losses[step], curves.norms[step] = run.step()
        done = step + 1
        clock.stepped(done, record)
        is_eval = done % cfg.eval_interval == 0 or done == total
        if done % SYNC_EVERY == 0 or is_eval:
            bad = curves.sync(done)
            if progress:
                progress.update(done, curves.host_losses[-1])
            if bad is not None:
                record.status, record.status_step = "diverged", bad + 1
                done = bad + 1
                break
        if is_eval:
            clock.pause()
            val = run.evaluate()
            clock.resume()
            curves.val_steps.append(done)
            curves.val_losses.append(val)
            if progress:
                progress.evaluated(done, val)
            stop = next((s for s in (hook(done, val) for hook in after_evaluation) if s), None)
            if stop:
                record.status, record.status_step = stop, done
                break
    else:
        record.status = "complete"
    if record.status == "diverged":
        clock.pause()
    finish_record(record, run, curves, clock.train_time, done)
    record.cpu_time = clock.cpu_time
    return run.evaluated_model()


def finish_record(record: RunRecord, run: Training, curves: Curves, train_time: float, done: int) -> None:
    """Steps, tokens, speed, memory, losses and curves of a run that took `done` steps."""
    cfg = run.cfg
    record.steps, record.tokens, record.train_time = done, done * cfg.tokens_per_step, train_time
    timed_tokens = (done - record.warmup_steps) * cfg.tokens_per_step
    record.tokens_per_second = timed_tokens / train_time if train_time > 0 else 0.0
    record.peak_memory_mb = peak_memory_mb(run.device)
    vals = curves.val_losses
    finite = [v for v in vals if math.isfinite(v)]
    record.final_val_loss = vals[-1] if vals and math.isfinite(vals[-1]) else None
    record.best_val_loss = min(finite) if finite else None
    base_lr = cfg.optimizer["lr"]
    record.curves = {
        "train_loss": [v if math.isfinite(v) else None for v in curves.host_losses[:done]],
        "grad_norm": [v if math.isfinite(v) else None for v in curves.host_norms[:done]],
        "lr": [base_lr * run.lr_factor(t) for t in range(done)],
        "val_step": curves.val_steps,
        "val_loss": [v if math.isfinite(v) else None for v in vals],
    }
