"""Stores of made-up results for report and results tests where training is not the point.

Every status of the vocabulary can be asked for: suite runs (complete, diverged, stopped_early, failed,
interrupted) through the runner's own claim and the store's own finish; search trials (complete, pruned)
through Optuna's ask and tell, as a search stores them.

Known truth: `truth(run) -> (mean, sd)` sets each run's final metric as mean + a shift shared by every arm
on the same seed (N(0, seed_sd): the same data order moves every arm alike, which paired tests remove) +
the run's own noise N(0, sd); `power_law_truth` gives a known loss against budget and a known speedup.
Timings get a run-to-run factor exp(N(0, time_sd)), as a loaded machine gives identical runs.
`fabricate_frame` builds the same rows as `load_results` without a store, for simulations and properties
that need thousands of suites.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from bench.codec import record_attrs
from bench.flops import step_flops
from bench.labels import label
from bench.store import Store
from bench.suite import Suite
from bench.train import RunRecord

ENV = {"optbench": "0.1.0", "commit": "fabricated", "torch": "x", "device": "cpu", "device_name": "cpu", "threads": 1}


Truth = Callable[[Any], tuple[float, float]]
VOCAB = 65  # tinyshakespeare's characters: what a made-up run's parameters and FLOPs are counted with


def params_of(cfg) -> int:
    """The GPT's parameters (tied embeddings, learned positions, no biases; LayerNorms left out)."""
    m = cfg.model
    return 12 * m["n_layer"] * m["n_embd"] ** 2 + m["n_embd"] * (VOCAB + m["block_size"])


def budget_of(cfg) -> int:
    """The tokens a run of `cfg` trains on (whole steps)."""
    return cfg.total_steps * cfg.tokens_per_step


def power_law_truth(speedup: Callable[[Any], float], sd: float, floor: Callable[[int], float] = lambda n: 1.5,
                    scale: float = 0.5, beta: float = 0.35, d0: float = 1e6) -> Truth:  # fmt: skip
    """Known loss against budget and known speedups: a run of n parameters and D tokens ends at
    floor(n) + scale * (c D / d0)^-beta on average, c = speedup(run) (1 for the baseline), so an arm with c
    reaches any loss with c times fewer tokens than the baseline: its speedup is c at every budget."""

    def truth(run: Any) -> tuple[float, float]:
        cfg = run.config
        return floor(params_of(cfg)) + scale * (speedup(run) * budget_of(cfg) / d0) ** -beta, sd

    return truth


def record(cfg, status: str, rng: random.Random, level: float, target: float | None, sd: float = 0.02,
           shift: float = 0.0, time_sd: float = 0.0) -> RunRecord:  # fmt: skip
    steps = cfg.total_steps
    stop = max(1, steps // 2) if status in ("diverged", "stopped_early", "pruned") else steps
    interval = max(1, min(cfg.eval_interval, stop))
    val_steps = list(range(interval, stop + 1, interval)) or [stop]
    final = level + shift + rng.gauss(0, sd)
    val = [final + (3.0 - final) * (1 - s / steps) ** 2 for s in val_steps]
    train_loss = [final + (3.0 - final) * (1 - s / steps) ** 2 + rng.gauss(0, 0.05) for s in range(stop)]
    if status == "diverged":
        train_loss[-1] = None
    reached = next((s for s, v in zip(val_steps, val, strict=True) if target and v <= target), None)
    finished = status in ("complete", "stopped_early", "pruned")
    slow = math.exp(rng.gauss(0, time_sd)) if time_sd else 1.0  # the machine's load on this run
    return RunRecord(
        config=cfg.to_dict(), config_hash=cfg.hash, status=status,
        status_step=stop if status in ("diverged", "stopped_early", "pruned") else None,
        error="Traceback (most recent call last):\n  fabricated failure" if status == "failed" else None,
        final_val_loss=val[-1] if finished else None, best_val_loss=min(val) if finished else None,
        loss_floor=1.0, steps=stop, tokens=stop * cfg.tokens_per_step, wall_time=stop / 100 * slow,
        train_time=stop / 110 * slow, cpu_time=stop / 120, tokens_per_second=1e5 / slow, peak_memory_mb=300.0,
        n_params=params_of(cfg), target=target, target_step=reached,
        target_tokens=reached and reached * cfg.tokens_per_step, target_time=reached and reached / 110 * slow,
        curves={"train_loss": train_loss, "grad_norm": [1.0] * stop, "lr": [1e-3] * stop,
                "val_step": val_steps, "val_loss": val if status != "diverged" else [None] * len(val)},
        env={**ENV, "step_flops": step_flops(cfg, VOCAB)},
    )  # fmt: skip


def seed_shifts(seeds: Sequence[int], seed_sd: float, rng: random.Random) -> dict[int, float]:
    return {s: rng.gauss(0, seed_sd) if seed_sd else 0.0 for s in seeds}


def fabricate_runs(suite: Suite, storage: str, status: Callable[[int], str], seed: int = 0, truth: Truth | None = None,
                   seed_sd: float = 0.0, time_sd: float = 0.0, runs: Sequence[Any] | None = None) -> int:  # fmt: skip
    """Every run of the suite (or `runs`: say, what the tuning protocol added) stored with status(i) for its
    i-th run, as the runner leaves it (claim attributes, parameters, record; interrupted: a claim left as
    FAIL). Written in one batch. Without `truth`, each arm's mean is drawn from [1.2, 1.8] and its runs'
    sd is 0.02."""
    import optuna
    from optuna.trial import TrialState

    from bench.runner import run_params

    rng = random.Random(seed)
    store = Store.open(storage)
    study = store.study(suite.name)
    levels: dict[str, float] = {}
    runs = list(suite.runs() if runs is None else runs)
    shifts = seed_shifts(sorted({r.seed for r in runs}), seed_sd, rng)
    trials = []
    for i, run in enumerate(runs):
        level, sd = truth(run) if truth else (levels.setdefault(run.arm_label, 1.2 + 0.6 * rng.random()), 0.02)
        s = status(i)
        attrs = {
            "run_hash": run.hash,
            "seed": run.seed,
            "arm": run.arm,
            "arm_label": run.arm_label,
            "config": run.config.to_dict(),
            "suite": suite.name,
            "session": "fabricated",
            "stage": run.stage,
        }
        value, intermediate = None, {}
        state = TrialState.FAIL
        if s == "interrupted":
            attrs["status"] = "interrupted"
        else:
            rec = record(run.config, s, rng, level, suite.target, sd, shifts[run.seed], time_sd)
            attrs.update(record_attrs(rec))
            curve = zip(rec.curves["val_step"], rec.curves["val_loss"], strict=True)
            intermediate = {step: v for step, v in curve if v is not None}
            if s != "failed":
                state = TrialState.COMPLETE
                metric = getattr(rec, suite.metric_field)
                value = float(metric) if metric is not None else float("inf")
        params = run_params(suite, run, [])
        trials.append(optuna.trial.create_trial(
            state=state, value=value, params={k: v for k, (v, _) in params.items()},
            distributions={k: d for k, (_, d) in params.items()}, user_attrs=attrs,
            intermediate_values=intermediate,
        ))  # fmt: skip
    study.add_trials(trials)
    return len(trials)


def fabricate_frame(suite: Suite, truth: Truth, rng: Any, seed_sd: float = 0.0,
                    status: Callable[[Any], str] | None = None,
                    shifts: dict[int, float] | None = None) -> Any:  # fmt: skip
    """The rows `load_results` gives for the suite's runs, each run's value mean + seed shift + noise
    (truth(run) = (mean, sd)), with its recorded tokens, steps, parameters and step FLOPs, without a store
    and without curves: for simulations over many suites.
    `rng`: a numpy Generator. `status(run)` may make a run diverge ('diverged', value inf) or fail.
    `shifts`: each seed's shift, given (two frames of the same seeds share their data order), else drawn."""
    import pandas as pd

    runs = suite.__dict__.get("_fabricated_hashes")
    if runs is None:  # a run's hash costs a config's JSON and digest: once per suite, not once per draw
        runs = [(run, run.hash, {"tokens": budget_of(run.config), "steps": run.config.total_steps,
                                 "n_params": params_of(run.config),
                                 "env": {"step_flops": step_flops(run.config, VOCAB)}, "stage": run.stage})
                for run in suite.runs()]  # fmt: skip
        object.__setattr__(suite, "_fabricated_hashes", runs)
    if shifts is None:
        shifts = {s: rng.normal(0, seed_sd) if seed_sd else 0.0 for s in suite.seeds}
    rows = []
    for run, run_hash, recorded in runs:
        mean, sd = truth(run)
        st = status(run) if status else "complete"
        value = {"complete": mean + shifts[run.seed] + rng.normal(0, sd), "diverged": math.inf}.get(st)
        rows.append({"run_hash": run_hash, "seed": run.seed, "arm": run.arm_label, "status": st, "value": value,
                     **recorded, **{f"arm.{k}": v for k, v in run.arm.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def fabricate_search(suite: Suite, storage: str, trials: int, pruned: Callable[[int], bool], objectives: int = 1,
                     seed: int = 0) -> str:  # fmt: skip
    """A search study as `optbench search` leaves it: sampled settings, pruned trials with their step.
    Sampled in memory, then written to the store in one batch."""
    import optuna

    from bench.space import parse_space

    space = parse_space(suite.search, suite.base)
    memory = optuna.create_study(directions=["minimize"] * objectives, sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = random.Random(seed)
    for i in range(trials):
        trial = memory.ask()
        values = space.sample(trial)
        cfg = space.config(suite.base, values, suite.seeds[0])
        is_pruned = objectives == 1 and pruned(i)
        rec = record(
            cfg, "pruned" if is_pruned else "complete", rng, 1.2 + 0.6 * rng.random(), suite.target, time_sd=0.1
        )
        for key, value in {"run_hash": cfg.hash, "seed": suite.seeds[0], "config": cfg.to_dict(),
                           "arm": {k: label(v) for k, v in values.items()},
                           "arm_label": ", ".join(f"{k}={label(v)}" for k, v in values.items()),
                           **record_attrs(rec)}.items():  # fmt: skip
            trial.set_user_attr(key, value)
        for step, value in zip(rec.curves["val_step"], rec.curves["val_loss"], strict=True):
            if objectives == 1:
                trial.report(value, step)
        if is_pruned:
            memory.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            values_out = [rec.final_val_loss, rec.train_time][:objectives]
            memory.tell(trial, values_out if objectives > 1 else values_out[0])
    store = Store.open(storage)
    name = f"{suite.name}.search"
    study = optuna.create_study(study_name=name, storage=store.storage, load_if_exists=True,
                                directions=["minimize"] * objectives)  # fmt: skip
    study.set_user_attr("search", {"sampler": "random", "pruner": "hyperband", "objectives": ["val_loss"] * objectives,
                                   "fixed": {}, "trials": trials})  # fmt: skip
    study.add_trials(memory.trials)
    return name


def fabricate_protocol(suite: Suite, storage: str, truth: Truth, seed: int = 0) -> int:
    """A tuned suite as the executor leaves it: the declared grid, then each stage the tuning protocol
    (bench.protocol) asks for given the results so far (extensions, refinements, confirmations), until it
    asks for nothing more. Returns the number of runs stored."""
    from bench.protocol import stages
    from bench.store import load_results

    stored: dict[str, tuple[str, float | None]] = {}
    total = 0
    for stage in range(50):
        runs = [r for r in stages(suite, stored).runs if r.hash not in stored]
        if not runs:
            return total
        total += fabricate_runs(suite, storage, lambda i: "complete", seed=seed + stage, truth=truth, runs=runs)
        frame = load_results(suite.name, storage, with_curves=False)
        stored = {h: (s, v) for h, s, v in zip(frame["run_hash"], frame["status"], frame["value"], strict=True)}
    raise RuntimeError("the tuning protocol asked for more than 50 stages")
