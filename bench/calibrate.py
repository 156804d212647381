"""Per-machine defaults chosen by measurement, measured once and cached.

Three choices depend on the CPU a suite lands on: which optimizer kernels `impl = "auto"` takes (fused,
foreach or for-loop: fused AdamW was the fastest on an AMD EPYC and 8-30% slower than foreach on an Intel
Xeon of the same 2-core kind, issue 13), how `optbench run` splits the cores between worker processes
and torch threads, and how many threads one `optbench train` run takes (torch's default of every core
was slower than one thread on a busy 2-core machine, issue 23). `calibrate_impls`, `measure_split` and
`measure_threads` time the alternatives side by side (alternated rounds, medians) and cache the verdict
with its reason under the machine's key: CPU model, torch version, core count (bench.machine keeps the
cache and reads it back for everyone else).

This module only measures; the command line runs it for what is missing before it trains (`optbench
train`, `optbench run`), and `optbench calibrate --force` measures again.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import plugins
from bench.machine import (
    FUSED,
    Choice,
    cache_path,
    impl_choice,
    impl_key,
    load,
    save,
    split_key,
    threads_choice,
    torch_default,
)

# Another implementation replaces torch's default only when it takes under this share of its time
# (median of alternated rounds): within noise the default stays, so a re-measurement rarely flips it.
IMPL_MARGIN = 0.95
# Likewise the split rule of bench.runner.default_split stays unless another split is this much faster,
# and torch's thread count for one run unless another count is.
SPLIT_MARGIN = 0.95
THREADS_MARGIN = 0.95


# -- optimizer kernels -------------------------------------------------------------------------------


def pick(seconds: dict[str, list[float]], default: str, margin: float) -> tuple[str, str]:
    """(choice, reason) from alternated timings per alternative: the fastest by median ratio to `default`
    in the same round, when that ratio is below `margin`; otherwise `default`."""
    ratios = {
        name: statistics.median(t / d for t, d in zip(times, seconds[default], strict=True))
        for name, times in seconds.items()
    }
    best = min(ratios, key=ratios.get)
    rounds = len(seconds[default])
    shown = ", ".join(f"{name} {ratios[name]:.3g}" for name in sorted(ratios) if name != default)
    measured = f"time vs {default}: {shown} (median of {rounds} alternated rounds)"
    if best != default and ratios[best] < margin:
        return best, f"measured {measured}"
    if best != default:
        return default, f"measured {measured}; {default} kept: no alternative below {margin:.2f}"
    return default, f"measured {measured}"


def measure_impls(cfg: Any, rounds: int = 7, steps: int = 10) -> Choice:
    """Time the optimizer step of `cfg`'s model with each implementation torch has, alternated, at this
    process's thread count; cache and return the verdict. Every alternative gets its own copy of the
    model with the same fixed gradients."""
    import torch

    from bench.techniques.class_path import optimizer_entry
    from bench.techniques.corpora import load_corpus
    from bench.train import build_model

    entry = optimizer_entry(cfg.optimizer)
    cls_name = getattr(entry.build, "torch_class", None)
    if cls_name is None:
        raise ValueError(f"optimizer {cfg.optimizer.name!r} has no torch.optim kernels to choose between")
    impls = [i for i in ("fused", "foreach", "forloop") if i in entry.params["impl"].choices]
    if cls_name not in FUSED and "fused" in impls:  # Adafactor, say, has no fused kernel at all
        impls.remove("fused")
    if len(impls) < 2:
        return Choice(torch_default(cls_name), "nothing to choose between")
    corpus = load_corpus(cfg.data)
    built = {}
    for impl in impls:
        model = build_model(cfg, corpus, "cpu")
        for i, p in enumerate(model.parameters()):
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 1e-3
        built[impl] = entry.build(model, {**cfg.optimizer.params, "impl": impl}, "cpu")
    n_params = model.num_params()
    seconds: dict[str, list[float]] = {impl: [] for impl in impls}
    for r in range(rounds + 1):  # round 0 warms the kernels up and is not counted
        for impl, optimizers in built.items():
            start = time.perf_counter()
            for _ in range(steps):
                for opt in optimizers:
                    opt.step()
            if r:
                seconds[impl].append(time.perf_counter() - start)
    value, reason = pick(seconds, torch_default(cls_name), IMPL_MARGIN)
    threads = torch.get_num_threads()
    reason += f"; {n_params} params, {threads} threads"
    save("impl", impl_key(cls_name, n_params, threads), {"impl": value, "reason": reason, "seconds": seconds})
    return Choice(value, reason)


def model_params(cfg: Any) -> int:
    from bench.techniques.corpora import load_corpus
    from bench.train import build_model

    return build_model(cfg, load_corpus(cfg.data), "cpu").num_params()


def calibrate_impls(cfgs: list[Any], threads: int, force: bool = False) -> list[str]:
    """Measure (in a fresh process of `threads` threads, as a suite's worker runs) the kernels of every
    torch.optim class and model among `cfgs` that asks for `impl = "auto"` and has no verdict yet, or
    every one with `force`; returns one line per class and model saying what `auto` takes and why."""
    from bench.techniques.class_path import optimizer_entry

    distinct: dict[str, Any] = {}
    for cfg in cfgs:
        cls_name = getattr(optimizer_entry(cfg.optimizer).build, "torch_class", None)
        if cls_name and cfg.optimizer.get("impl") == "auto" and cfg.device == "cpu":
            distinct.setdefault(json.dumps([cls_name, cfg.model.to_dict(), cfg.data.to_dict()]), cfg)
    lines = []
    for cfg in distinct.values():
        cls_name = optimizer_entry(cfg.optimizer).build.torch_class
        n_params = model_params(cfg)
        if cache_path() is not None and (force or impl_key(cls_name, n_params, threads) not in load().get("impl", {})):
            command = [sys.executable, "-m", "bench.calibrate", "--impls", json.dumps(cfg.to_dict())]
            env = plugins.child_env({"OMP_NUM_THREADS": str(threads)})
            measured = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if measured.returncode != 0:  # a failed measurement costs the suite nothing: torch's default stands
                reason = (measured.stderr.strip().splitlines() or ["no output"])[-1]
                lines.append(f"{cls_name}: calibration failed ({reason}); torch's default kernels")
                continue
        choice = impl_choice(cls_name, "auto", "cpu", n_params, threads)
        where = f"{n_params:,} parameters on {threads} thread(s)"
        lines.append(f"{cls_name} kernels for {where}: {choice.value} ({choice.reason})")
    return lines


# -- workers x threads -------------------------------------------------------------------------------


def splits(cores: int) -> list[tuple[int, int]]:
    """Every way to fill `cores` with equal workers: (workers, threads each)."""
    return [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]


def probe_steps_per_second(cfg: Any, seconds: float) -> float:
    """Training steps per second of `cfg` in this process, after a warm-up, for about `seconds`."""
    from bench.train import Training

    run = Training(cfg, "cpu")
    for _ in range(3):
        run.step()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run.step()
        done += 1
    return done / (time.perf_counter() - start)


def _probe(cfg: Any, workers: int, threads: int, seconds: float) -> float:
    """Steps per second of `workers` processes of `threads` threads training `cfg` at once, summed."""
    env = plugins.child_env({"OMP_NUM_THREADS": str(threads)})
    command = [sys.executable, "-m", "bench.calibrate", "--probe", json.dumps(cfg.to_dict()), "--seconds", str(seconds)]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"calibration probe failed: {' '.join(command[:4])} ...")
    return sum(float(out.split()[-1]) for out in outputs)


def measure_split(cfg: Any, default: tuple[int, int], cores: int | None = None, rounds: int = 2,
                  seconds: float = 1.0) -> Choice:  # fmt: skip
    """Suite throughput of runs shaped like `cfg` for every workers x threads split of the cores, each
    measured with all its workers training at once in fresh processes, alternated; cached."""
    cores = cores or os.cpu_count() or 1
    names = {s: f"{s[0]}x{s[1]}" for s in splits(cores)}
    seconds_per_step: dict[str, list[float]] = {name: [] for name in names.values()}
    for _ in range(rounds):
        for split, name in names.items():
            seconds_per_step[name].append(1 / _probe(cfg, *split, seconds))
    value, reason = pick(seconds_per_step, names[default], SPLIT_MARGIN)
    split = next(s for s, n in names.items() if n == value)
    reason = reason.replace("measured time vs", "measured suite time per step vs")
    save("split", split_key(cfg, cores), {"split": list(split), "reason": reason, "seconds_per_step": seconds_per_step})
    return Choice(split, reason)


# -- threads of one run ------------------------------------------------------------------------------


def thread_counts(cores: int, default: int) -> list[int]:
    """The thread counts one run is timed at: 1, powers of two, every core, and torch's default."""
    counts = {1, cores, default}
    count = 2
    while count < cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


def measure_threads(cfg: Any, default: int, cores: int | None = None, rounds: int = 2,
                    seconds: float = 1.0) -> Choice:  # fmt: skip
    """Steps per second of one run shaped like `cfg` at each thread count, each in a fresh process alone,
    alternated; torch's `default` count stays unless another is clearly faster. Cached."""
    cores = cores or os.cpu_count() or 1
    names = {count: f"{count} thread(s)" for count in thread_counts(cores, default)}
    seconds_per_step: dict[str, list[float]] = {name: [] for name in names.values()}
    for _ in range(rounds):
        for count, name in names.items():
            seconds_per_step[name].append(1 / _probe(cfg, 1, count, seconds))
    value, reason = pick(seconds_per_step, names[default], THREADS_MARGIN)
    threads = next(count for count, name in names.items() if name == value)
    reason = reason.replace("measured time vs", "measured time per step vs")
    save("threads", split_key(cfg, cores), {"threads": threads, "reason": reason, "seconds_per_step": seconds_per_step})
    return Choice(threads, reason)


def run_threads(cfg: Any, default: int, cores: int | None = None, force: bool = False) -> Choice:
    """The thread count of one run (`optbench train`) and why: the config's, else this machine's measured
    count for runs of its shape (measured now when none is cached), else torch's default."""
    if cfg.threads is not None:
        return Choice(cfg.threads, "set in the config (threads)")
    if cfg.device != "cpu":
        return Choice(default, "torch's default; the run trains on a GPU")
    if cache_path() is None:
        return Choice(default, "torch's default; calibration off")
    cores = cores or os.cpu_count() or 1
    cached = None if force else threads_choice(cfg, cores)
    if cached is not None:
        return cached
    print(f"optbench: measuring this model's steps per second at each thread count on this machine (once; "
          f"cached in {cache_path()})", file=sys.stderr)  # fmt: skip
    return measure_threads(cfg, default, cores)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.calibrate --probe CONFIG_JSON`: steps per second of one config (used by measure_split);
    `--impls CONFIG_JSON`: measure and cache the optimizer kernels at this process's thread count."""
    import argparse

    from bench.config import RunConfig

    plugins.load_from_env()  # the parent's plugins: their entries may be in the config
    parser = argparse.ArgumentParser(prog="python -m bench.calibrate")
    parser.add_argument("--probe", metavar="CONFIG_JSON")
    parser.add_argument("--impls", metavar="CONFIG_JSON")
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args(argv)
    if args.probe:
        print(f"steps/s {probe_steps_per_second(RunConfig.from_dict(json.loads(args.probe)), args.seconds)}")
    if args.impls:
        print(measure_impls(RunConfig.from_dict(json.loads(args.impls))).reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
