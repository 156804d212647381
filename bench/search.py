"""Optuna search over any field of RunConfig, with pruning, on one machine or many.

A suite's `[search]` table declares the space; each entry is a dotted field:

    [search]
    optimizer = "auto"                       # every optimizer, and conditionally its own parameters
    schedule = ["warmup_cosine", "wsd"]      # these schedules, each with its own parameters
    "optimizer.lr" = { low = 1e-4, high = 3e-2, log = true }
    "schedule.warmup" = { low = 0, high = 300, type = "int" }
    clip = "auto"
    batch_size = [8, 12, 16]

A registry axis given as "auto" or a list of names searches the choice and, only where it applies, each
chosen entry's parameters over the ranges the registry declares (`Param.search`); explicit entries win.
Trials are stored like suite runs (load_results reads them), in the study `<suite>.search` (or
`<suite>.search.<arm>` when each arm of an axis gets its own equal budget).
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench import codec, interrupts
from bench.axes import CHOICE_AXES, SEARCHED_AXES
from bench.config import RunConfig
from bench.registry import ConfigError, Param, closest, is_finite
from bench.suite import Suite

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
OBJECTIVES = {"val_loss": "final_val_loss", "best_val_loss": "best_val_loss", "train_time": "train_time",
              "tokens": "tokens"}  # fmt: skip


@dataclass(frozen=True)
class Dimension:
    """One searched field: categorical choices, or a float/int range (log or linear)."""

    name: str
    kind: str  # categorical | float | int
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    when: tuple[str, str] | None = None  # only when another dimension (axis name) took this value

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass
class Space:
    dimensions: list[Dimension] = field(default_factory=list)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Dotted field -> value for one trial; conditional dimensions only where their entry was chosen."""
        values: dict[str, Any] = {}
        for dim in self.dimensions:
            if dim.when is not None and values.get(dim.when[0]) != dim.when[1]:
                continue
            values[dim.name] = dim.suggest(trial)
        return values

    def is_conditional(self) -> bool:
        return any(d.when for d in self.dimensions)

    def grid(self) -> dict[str, list]:
        if self.is_conditional() or any(d.kind != "categorical" for d in self.dimensions):
            raise ConfigError("--sampler", "grid needs a space of explicit lists only (no ranges, no 'auto')")
        return {d.name: list(d.choices) for d in self.dimensions}


def registry_dimensions(
    axis: str, names: list[str], explicit: Mapping[str, Any], total_steps: int = 0
) -> list[Dimension]:
    """The axis choice, then each entry's own searchable parameters, conditional on that entry."""
    registry = CHOICE_AXES[axis]
    dims = [Dimension(f"{axis}.name", "categorical", tuple(names))]
    for name in names:
        entry = registry.get(name, f"search.{axis}")
        for pname, param in entry.params.items():
            key = f"{axis}.{pname}"
            if key in explicit or param.search is None:
                continue
            dims.append(param_dimension(f"{axis}.{name}.{pname}", param, (f"{axis}.name", name), total_steps))
    return dims


def param_dimension(name: str, param: Param, when: tuple[str, str] | None = None, total_steps: int = 0) -> Dimension:
    spec = param.search
    if spec[0] == "steps":  # fractions of the run -> whole steps, always shorter than the run
        low = round(spec[1] * total_steps)
        high = max(low + 1, min(total_steps - 1, round(spec[2] * total_steps)))
        return Dimension(name, "int", low=low, high=high, when=when)
    if isinstance(spec[0], str) and spec[0] in ("log", "float", "int"):
        kind = "int" if spec[0] == "int" else "float"
        return Dimension(name, kind, low=spec[1], high=spec[2], log=spec[0] == "log", when=when)
    return Dimension(name, "categorical", tuple(spec), when=when)


RANGE_KEYS = {"low", "high", "log", "type"}


def flatten_search(search: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML's bare dotted keys nest (optimizer.lr = [...] is {optimizer: {lr: [...]}}); ranges stay tables."""
    out: dict[str, Any] = {}
    for key, value in search.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not set(value) <= RANGE_KEYS:
            out.update(flatten_search(value, name + "."))
        else:
            out[name] = value
    return out


def parse_space(search: Mapping[str, Any], base: RunConfig) -> Space:
    """The [search] table -> a Space, every value checked against the config it would make."""
    search = flatten_search(search)
    explicit = {k: v for k, v in search.items() if k not in SEARCHED_AXES or not isinstance(v, str | list)}
    dims: list[Dimension] = []
    for key, spec in search.items():
        where = f"search.{key}"
        if key in SEARCHED_AXES and (
            spec == "auto" or (isinstance(spec, list) and all(isinstance(s, str) for s in spec))
        ):
            names = CHOICE_AXES[key].names() if spec == "auto" else spec
            if not names:
                raise ConfigError(where, "lists no entries")
            dims += registry_dimensions(key, names, explicit, base.total_steps)
        elif isinstance(spec, list):
            if not spec:
                raise ConfigError(where, "must list at least one value")
            dims.append(Dimension(key, "categorical", tuple(spec)))
        elif isinstance(spec, Mapping):
            unknown = set(spec) - {"low", "high", "log", "type"}
            if unknown:
                raise ConfigError(f"{where}.{sorted(unknown)[0]}", "allowed: low, high, log, type")
            low, high = spec.get("low"), spec.get("high")
            kind = spec.get("type", "float")
            if not isinstance(kind, str) or kind not in ("float", "int"):
                raise ConfigError(f"{where}.type", f'must be "float" or "int", got {kind!r}')
            log = spec.get("log", False)
            if not isinstance(log, bool):  # a string such as "no" would read as true
                raise ConfigError(f"{where}.log", f"must be true or false, got {log!r}")
            if not (is_finite(low) and is_finite(high)) or low >= high:
                raise ConfigError(where, f"needs finite numbers low < high, got low={low!r} high={high!r}")
            if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
                # (suggest_int truncates: low = 0.5, high = 0.9 would search the single value 0)
                raise ConfigError(where, f"needs whole numbers low and high for type int, got {low!r}, {high!r}")
            if log and low <= 0:
                raise ConfigError(f"{where}.low", "must be > 0 on a log scale")
            dims.append(Dimension(key, kind, low=low, high=high, log=log))
        else:
            raise ConfigError(where, "must be a list of values, a table {low, high, log, type}, or 'auto'")
    for dim in dims:  # each value must make a valid run: check the ends of ranges and every choice
        probes = dim.choices if dim.kind == "categorical" else (dim.low, dim.high)
        for value in probes:
            field_name = config_field(dim)
            overrides = {f"{dim.when[0].split('.')[0]}": dim.when[1]} if dim.when else {}
            # a choice is probed with its searched parameters at their low ends (a default warmup of 100
            # steps must not refuse a schedule whose warmup the search samples within a short run)
            inner = {config_field(d): d.low if d.kind != "categorical" else d.choices[0]
                     for d in dims if d.when == (dim.name, value)}  # fmt: skip
            try:
                base.override({**overrides, field_name: int(value) if dim.kind == "int" else value, **inner})
            except ConfigError as e:
                raise ConfigError(f"search.{dim.name}", e.message) from None
    return Space(dims)


def config_field(dim: Dimension) -> str:
    """'optimizer.lion.lr' (a conditional dimension) -> 'optimizer.lr'; others are fields already."""
    if dim.when is None:
        return dim.name
    axis, _, rest = dim.name.partition(".")
    return f"{axis}.{rest.split('.', 1)[1]}"


def trial_config(space: Space, base: RunConfig, values: Mapping[str, Any], seed: int) -> RunConfig:
    """The run a trial's sampled values describe: choices first, so their parameters refine them."""
    dims = {d.name: d for d in space.dimensions}
    first = [(k, v) for k, v in values.items() if "." not in k or k.endswith(".name")]  # whole choices first
    ordered = first + [(k, v) for k, v in values.items() if (k, v) not in first]
    overrides = {config_field(dims[k]) if k in dims else k: v for k, v in ordered}
    return base.override({**overrides, "seed": seed})


# -------------------------------------------------------------------------------------------------


def check_choice(key: str, name: str, allowed: tuple[str, ...]) -> None:
    """An unknown sampler or pruner is bad input, never a silent fallback to another one."""
    if name not in allowed:
        raise ConfigError(key, f"unknown value '{name}'{closest(name, list(allowed))}; allowed: {', '.join(allowed)}")


def make_sampler(name: str, seed: int, space: Space) -> Any:
    import optuna

    check_choice("--sampler", name, SAMPLERS)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=space.is_conditional())
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES handles the continuous dimensions; the rest fall back to an independent seeded sampler
        return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                            warn_independent_sampling=False)  # fmt: skip
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    space.grid()  # explicit lists only; run_search_worker queues the grid's points itself, each exactly once
    return optuna.samplers.RandomSampler(seed=seed)


# Successive halving and Hyperband keep 1 / REDUCTION_FACTOR of the trials per rung. Optuna's Hyperband
# default is 3; on three sets of 60 identical trials (`python -m bench.perf pruning --seed 0|1|2`) 3 used
# 39-43% of the unpruned search's steps and 4 used 29-32%, with bests within 0.006 of the unpruned best.
REDUCTION_FACTOR = 4


def make_pruner(name: str, base: RunConfig, reduction_factor: int = REDUCTION_FACTOR) -> Any:
    """Pruners fed by every evaluation; rungs run from the first evaluation to the full budget."""
    import optuna

    check_choice("--pruner", name, PRUNERS)
    first = base.eval_interval
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=reduction_factor)
    return optuna.pruners.HyperbandPruner(
        min_resource=first, max_resource=base.total_steps, reduction_factor=reduction_factor
    )


@dataclass
class SearchPlan:
    suite_path: str
    overrides: dict[str, Any]
    storage: str | None
    trials: int
    sampler: str = "tpe"
    pruner: str = "hyperband"
    objectives: tuple[str, ...] = ("val_loss",)
    timeout: float | None = None
    workers: int = 1
    threads: int = 1
    per_arm: str | None = None  # an axis of the space whose every value gets `trials` trials of its own
    seed: int = 0
    reduction_factor: int = REDUCTION_FACTOR
    show_progress: bool = False


def study_names(plan: SearchPlan, suite: Suite, space: Space) -> list[tuple[str, dict[str, Any]]]:
    """(study name, fixed values) per arm: one study, or one per value of the per-arm axis."""
    base = f"{suite.name}.search"
    if plan.per_arm is None:
        return [(base, {})]
    dim = next((d for d in space.dimensions if d.name in (plan.per_arm, f"{plan.per_arm}.name")), None)
    if dim is None or dim.kind != "categorical":
        raise ConfigError("--per-arm", f"must name a categorical dimension of [search]; got {plan.per_arm!r}")
    return [(f"{base}.{value}", {dim.name: value}) for value in dim.choices]


class PruneOnReport:
    """train()'s progress hook: each validation loss goes to the trial; the pruner may stop the run."""

    def __init__(self, trial: Any, enabled: bool):
        self.trial, self.enabled = trial, enabled

    def start(self, cfg: Any, total_steps: int) -> None: ...
    def update(self, step: int, train_loss: float) -> None: ...
    def finish(self, record: Any) -> None: ...

    def evaluated(self, step: int, val_loss: float) -> bool:
        if not self.enabled or not math.isfinite(val_loss):
            return False
        self.trial.report(val_loss, step)
        return self.trial.should_prune()


def objective_factory(plan: SearchPlan, suite: Suite, space: Space, fixed: dict[str, Any]):
    import optuna

    from bench.codec import search_attrs
    from bench.train import train

    multi = len(plan.objectives) > 1

    def objective(trial: Any) -> Any:
        values = dict(space.sample(FixedTrial(trial, fixed)))
        records = []
        for i, seed in enumerate(suite.seeds):
            cfg = trial_config(space, suite.base, values, seed).override({"threads": plan.threads})
            # only the first seed's curve feeds the pruner; later seeds run only for trials that survive it
            with interrupts.allowed():
                record = train(cfg, PruneOnReport(trial, enabled=not multi and i == 0))
            records.append(record)
            if record.status in ("pruned", "failed"):
                break
        first = records[0]
        attrs = search_attrs(values, records, list(suite.seeds), OBJECTIVES[plan.objectives[0]])
        for key, value in attrs.items():  # Optuna's public trial API writes one attribute at a time
            trial.set_user_attr(key, value)
        if first.status == "pruned":
            raise optuna.TrialPruned()
        if first.status == "failed":
            raise TrialFailed(first.reason)
        results = []
        for name in plan.objectives:
            per_seed = [getattr(r, OBJECTIVES[name]) for r in records]
            per_seed = [math.inf if v is None else float(v) for v in per_seed]
            results.append(sum(per_seed) / len(per_seed))
        return tuple(results) if multi else results[0]

    return objective


class FixedTrial:
    """A trial whose per-arm dimensions are pinned to the arm's value (still recorded as parameters)."""

    def __init__(self, trial: Any, fixed: dict[str, Any]):
        self.trial, self.fixed = trial, fixed

    def suggest_categorical(self, name: str, choices: list) -> Any:
        if name in self.fixed:
            return self.trial.suggest_categorical(name, [self.fixed[name]])
        return self.trial.suggest_categorical(name, choices)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trial, name)


class SearchProgress:
    """Trials done of the budget, pruned, best so far, on stderr (a bar, or plain lines off a terminal)."""

    def __init__(self, name: str, total: int, enabled: bool = True, study: Any = None):
        self.bar = None
        if enabled:
            from bench.progress import progress_bar

            self.bar = progress_bar(name, "pruned {task.fields[pruned]}", "best {task.fields[best]}")
            # a resumed search starts at the trials it holds: the ETA counts only the pace of trials run now
            self.task = self.bar.add_task(name, total=total, completed=len(self.done(study)) if study else 0,
                                          pruned=0, best="-")  # fmt: skip
            self.bar.start()

    @staticmethod
    def done(study: Any) -> list:
        from optuna.trial import TrialState

        return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))

    def update(self, study: Any, *_: Any) -> None:
        if self.bar is None:
            return
        from optuna.trial import TrialState

        trials = self.done(study)
        values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        best = f"{min(values):.4f}" if values else "-"
        self.bar.update(self.task, completed=len(trials), pruned=pruned, best=best)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_search_worker(
    plan: SearchPlan, study_name: str, fixed: dict[str, Any], index: int = 0, progress: SearchProgress | None = None
) -> None:
    """One worker: take trials until the study holds plan.trials finished, pruned or running ones (or the
    timeout passes). A trial is asked under the store's claim lock, so workers together run exactly the
    budget (Optuna's own loop lets each of them start one past it)."""
    import optuna

    from bench.env import set_threads
    from bench.store import Store

    set_threads(plan.threads)
    suite = Suite.load(plan.suite_path, plan.overrides)
    if plan.workers > 1 and suite.base.device == "cuda":  # spread over the GPUs: plain `cuda` is the current one
        from bench.devices import cuda_count, use_device

        use_device(f"cuda:{index % cuda_count()}")
    space = parse_space(suite.search, suite.base)
    store = Store.open(plan.storage)
    multi = len(plan.objectives) > 1
    study = optuna.create_study(
        study_name=study_name, storage=store.storage, load_if_exists=True,
        directions=["minimize"] * len(plan.objectives),
        pruner=make_pruner("none" if multi else plan.pruner, suite.base, plan.reduction_factor),
    )  # fmt: skip
    study.set_user_attr("search", {"sampler": plan.sampler, "pruner": plan.pruner, "objectives": list(plan.objectives),
                                   "fixed": fixed, "trials": plan.trials})  # fmt: skip
    objective = objective_factory(plan, suite, space, fixed)
    points = grid_points(space, fixed) if plan.sampler == "grid" else None
    budget = plan.trials if points is None else min(plan.trials, len(points))  # a grid: each point once

    def prepare(number: int) -> None:
        """Before trial `number` is asked, under the claim lock. Its sampler is seeded by its number:
        workers, machines and resumed searches sample apart (one seed for all replayed the same points),
        and one worker's search is the same every time. A grid point is chosen here, exactly once: the
        first not finished, pruned or running, so an interrupted one is taken again."""
        if points is None:
            if plan.sampler != "qmc":  # (QMC's sequence goes on from the trials held, under one seed)
                study.sampler = make_sampler(plan.sampler, plan.seed + number, space)
            return
        taken = {point_of(t.params, points[0]) for t in taken_trials(study)}
        free = [p for p in points if point_of(p, points[0]) not in taken]
        if free:
            study.enqueue_trial(free[0])

    # a grid's parameters all come from the queued point; QMC keeps its one seed
    study.sampler = make_sampler("random" if points is not None else plan.sampler, plan.seed, space)
    deadline = math.inf if plan.timeout is None else time.monotonic() + plan.timeout
    while time.monotonic() < deadline:
        trial = take_trial(store, study, budget, prepare)
        if trial is None:
            return
        with store.heartbeat(codec.trial_id(store.storage, study, trial)):
            run_trial(study, trial, objective)
        if progress:
            progress.update(study)


def grid_points(space: Space, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of the grid in a fixed order (the last dimension varying fastest), pinned dimensions
    at their arm's value."""
    grid = {name: [fixed[name]] if name in fixed else choices for name, choices in space.grid().items()}
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def point_of(params: Mapping[str, Any], like: Mapping[str, Any]) -> tuple:
    return tuple(repr(params.get(name)) for name in like)


def taken_trials(study: Any) -> list:
    """The trials that count toward the budget: finished, pruned or running."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))


def take_trial(store: Any, study: Any, budget: int, prepare: Any = None) -> Any:
    """A new trial, or None once the study holds `budget` finished, pruned or running trials. Trials whose
    worker is gone are failed first (they no longer count), so a killed search resumes to its budget."""
    from optuna.trial import TrialState

    from bench.store import this_worker

    trial = None
    try:
        # a stop signal waits for the trial to be written whole (a RUNNING trial naming its worker) ...
        with interrupts.deferred(), store.claim_lock(f"optbench-search:{study.study_name}"):
            store.fail_stale(study)
            if len(taken_trials(study)) >= budget:
                return None
            if prepare is not None:
                prepare(len(study.get_trials(deepcopy=False)))  # the number the next trial gets
            trial = study.ask()
            trial.set_user_attr("worker", this_worker())
    except KeyboardInterrupt:  # ... and then stops it as it would a training one
        if trial is not None:
            with interrupts.deferred():
                study.tell(trial, state=TrialState.FAIL)
        raise
    return trial


def run_trial(study: Any, trial: Any, objective: Any) -> None:
    """Train one trial and tell the study how it ended; a failed trial is one line on stderr, a stopped one
    is stored as interrupted (FAIL without a 'failed' status) before the stop goes on."""
    import optuna
    from optuna.trial import TrialState

    state, values = TrialState.FAIL, None  # unless it ends otherwise: a stop or an error is a FAIL
    try:
        values = objective(trial)
        state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except TrialFailed as e:
        print(f"optbench: trial {trial.number} failed: {e}", file=sys.stderr)
    finally:
        with interrupts.deferred():
            study.tell(trial, values, state)


class TrialFailed(Exception):
    """A trial whose first seed's run failed; the message is the error's last line (the traceback is stored)."""


def run_search(plan: SearchPlan) -> list[tuple[str, Any]]:
    """Every arm's study, optimized by plan.workers processes. Returns (study name, study) per arm."""
    import optuna

    from bench.store import Store
    from bench.workers import run_workers

    check_choice("--sampler", plan.sampler, SAMPLERS)  # before the store is opened: nothing written
    check_choice("--pruner", plan.pruner, PRUNERS)
    suite = Suite.load(plan.suite_path, plan.overrides)
    space = parse_space(suite.search, suite.base)
    store = Store.open(plan.storage)
    studies = []
    for name, fixed in study_names(plan, suite, space):
        study = store.study(name, ["minimize"] * len(plan.objectives))
        progress = SearchProgress(name, plan.trials, plan.show_progress, study)
        try:
            if plan.workers == 1:
                with interrupts.on_stop_signals():
                    run_search_worker(plan, name, fixed, progress=progress)
            else:
                run_workers(run_search_worker, [(plan, name, fixed, i) for i in range(plan.workers)], plan.threads,
                            poll=functools.partial(progress.update, study))  # fmt: skip
        finally:
            progress.stop()
        study = optuna.load_study(study_name=name, storage=store.storage)
        say_held_elsewhere(study, plan.trials)
        studies.append((name, study))
    return studies


def say_held_elsewhere(study: Any, budget: int) -> None:
    """A study short of its budget because other processes hold running trials (they count toward
    --trials): say whose, and when their trials come back, rather than ending short in silence."""
    from optuna.trial import TrialState

    from bench.store import GRACE_PERIOD, owners

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if done >= budget or not running:
        return
    print(
        f"optbench: {study.study_name}: {done} of {budget} trials finished; {len(running)} running elsewhere "
        f"({', '.join(owners(running))}) count toward --trials; run the command again once they end (a trial whose "
        f"worker died is taken again: on this machine once its process is gone, on a database {GRACE_PERIOD} s "
        "after its last heartbeat)",
        file=sys.stderr,
    )


# -------------------------------------------------------------------------------------------------
# Results


def importances(study: Any) -> dict[str, float]:
    """Optuna's default evaluator (PED-ANOVA in Optuna 5) over the finished trials; {} when too few."""
    import optuna

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) < 3 or len(study.directions) > 1:
        return {}
    # Optuna's default: the parameters every finished trial has; less any they all set alike (a per-arm
    # study's pinned arm), which explains nothing
    common = set.intersection(*(set(t.params) for t in finished))
    varied = [name for name in sorted(common) if len({repr(t.params[name]) for t in finished}) > 1]
    if not varied:
        return {}
    try:
        with warnings.catch_warnings():  # PED-ANOVA warns about sparse regimes of conditional parameters
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, params=varied))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def best_config(study: Any) -> RunConfig:
    return RunConfig.from_dict(study.best_trial.user_attrs["config"])


def recipe_toml(cfg: RunConfig, trial: Any = None, study_name: str = "") -> str:
    """The `[base]` table that trains cfg again (same run hash). `steps` stays, since the hash covers it,
    but says it is ignored where `tokens` sets the budget, so the file does not read as two budgets. For a
    trial that trained several seeds, a first comment says its value is their mean and what seed trains."""
    values = {k: v for k, v in cfg.to_dict().items() if k != "threads"}
    notes = {}
    if cfg.tokens is not None:
        notes["steps"] = f"ignored: tokens sets the budget ({cfg.total_steps} steps of {cfg.tokens_per_step} tokens)"
    text = to_toml(values, notes)
    if trial is not None and len(trial.user_attrs.get("seeds") or []) > 1:
        of = f" (study {study_name})" if study_name else ""
        text = f"# {seeds_text(trial)}{of}; this table trains seed {cfg.seed} alone\n" + text
    return text


def seeds_text(trial: Any) -> str:
    """'the mean over seeds 0, 1, 2 (2.8660, 2.4832, 2.4871)' for a trial that trained several seeds."""
    seeds = trial.user_attrs.get("seeds") or []
    per_seed = trial.user_attrs.get("objective_per_seed") or []
    values = ", ".join("–" if v is None else f"{v:.4f}" for v in per_seed)
    return f"trial {trial.number}'s value is the mean over seeds {', '.join(map(str, seeds))} ({values})"


def to_toml(values: Mapping[str, Any], notes: Mapping[str, str] | None = None) -> str:
    """A RunConfig dict as a `[base]` table: one line per field, registry choices as inline tables; None
    (TOML has no null) is left out, which reads back as the parameter's default of nothing. `notes` adds a
    trailing comment to a field's line."""

    def literal(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v) if not (isinstance(v, float) and math.isinf(v)) else ("inf" if v > 0 else "-inf")
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(literal(x) for x in v) + "]"
        if isinstance(v, Mapping):  # TOML has no null: a parameter left at nothing is left out, as at top level
            items = [f"{k} = {literal(x)}" for k, x in v.items() if x is not None]
            return "{ " + ", ".join(items) + " }" if items else "{}"
        raise TypeError(f"cannot write {v!r} as TOML")

    notes = notes or {}
    lines = ["[base]"] + [
        f"{k} = {literal(v)}" + (f"  # {notes[k]}" if k in notes else "") for k, v in values.items() if v is not None
    ]
    return "\n".join(lines) + "\n"
