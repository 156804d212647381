"""Optuna search over any field of RunConfig, with pruning, on one machine or many.

A suite's `[search]` table is the space (bench.space). Its trials run through the one executor
(bench.executor), as a suite's runs do: each trial is claimed in one store write naming its worker, sampled
on that claim under the claim lock (its sampler seeded by the trial's number, so workers, machines and
resumed searches sample apart and one worker's search is the same every time), trained once per seed of
the suite (later seeds only while the first survives the pruner, an after-evaluation hook like early
stopping) and stored through the codec. A grid takes its first point not finished, pruned or running, so
each point is trained once. Trials are stored in the study `<suite>.search`, or `<suite>.search.<arm>` when
each value of an axis gets its own equal budget (`--per-arm`, the arm pinned with Optuna's
PartialFixedSampler).
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench import codec
from bench.config import RunConfig
from bench.executor import Crew, Job, execute
from bench.registry import ConfigError, closest
from bench.space import Space, parse_space
from bench.store import Store, grace_period, owners
from bench.suite import Suite

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
OBJECTIVES = {"val_loss": "final_val_loss", "best_val_loss": "best_val_loss", "train_time": "train_time",
              "tokens": "tokens"}  # fmt: skip

# Successive halving and Hyperband keep 1 / REDUCTION_FACTOR of the trials per rung. Optuna's Hyperband
# default is 3; on three sets of 60 identical trials (`python benchmarks/pruning.py --seed 0|1|2`) 3 used
# 39-43% of the unpruned search's steps and 4 used 29-32%, with bests within 0.006 of the unpruned best.
REDUCTION_FACTOR = 4


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
    space.grid()  # explicit lists only; the search claims the grid's points itself, each exactly once
    return optuna.samplers.RandomSampler(seed=seed)


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
    pruner: str | None = None  # None: hyperband for one objective, none for several (Optuna cannot prune them)
    objectives: tuple[str, ...] = ("val_loss",)
    timeout: float | None = None
    workers: int = 1
    threads: int = 1
    per_arm: str | None = None  # an axis of the space whose every value gets `trials` trials of its own
    seed: int = 0
    reduction_factor: int = REDUCTION_FACTOR
    show_progress: bool = False
    gpus: list[str | None] = field(default_factory=list)
    split_reason: str = ""
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    deadline: float | None = None  # wall clock (time.time()) after which no trial starts; from `timeout`

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def pruner_name(self) -> str:
        return self.pruner or ("none" if self.multi else "hyperband")

    @property
    def crew(self) -> Crew:
        return Crew(self.workers, self.threads, self.gpus, self.split_reason)

    def check(self) -> None:
        """Bad flags are bad input, before anything is written."""
        check_choice("--sampler", self.sampler, SAMPLERS)
        check_choice("--pruner", self.pruner_name, PRUNERS)
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise ConfigError("--objectives", f"unknown objective '{o}'; allowed: {', '.join(OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError("--objectives", f"names an objective twice: {','.join(self.objectives)}")
        if self.multi and self.pruner_name != "none":
            raise ConfigError(
                "--pruner",
                f"a search of several objectives ({','.join(self.objectives)}) cannot prune: Optuna prunes "
                "single-objective studies only; leave --pruner out or give --pruner none",
            )


@dataclass
class Arm:
    """One study of a search: the whole search, or one value of its --per-arm axis."""

    plan: SearchPlan
    study_name: str
    fixed: dict[str, Any]

    def open(self) -> SearchWork:
        return SearchWork(self)


def arms(plan: SearchPlan, suite: Suite, space: Space) -> list[Arm]:
    """One study, or one per value of the per-arm axis (named by the value's label)."""
    base = f"{suite.name}.search"
    if plan.per_arm is None:
        return [Arm(plan, base, {})]
    dim = next((d for d in space.dimensions if d.name in (plan.per_arm, f"{plan.per_arm}.name")), None)
    if dim is None or dim.kind != "categorical":
        raise ConfigError("--per-arm", f"must name a categorical dimension of [search]; got {plan.per_arm!r}")
    return [Arm(plan, f"{base}.{value}", {dim.name: value}) for value in dim.choices]


class SearchWork:
    """A search's trials for the executor: while the budget lasts, claim a trial, sample it, store it."""

    def __init__(self, arm: Arm):
        import optuna

        plan = self.plan = arm.plan
        self.suite = Suite.load(plan.suite_path, plan.overrides)
        self.space = parse_space(self.suite.search, self.suite.base)
        self.store = Store.open(plan.storage, patient=True)  # the command reached it: an outage is waited out
        self.study = optuna.load_study(study_name=arm.study_name, storage=self.store.storage)
        self.study.pruner = make_pruner(plan.pruner_name, self.suite.base, plan.reduction_factor)
        self.fixed = arm.fixed
        self.title, self.session = arm.study_name, plan.session
        self.lock_key = f"optbench-search:{arm.study_name}"
        self.metric_field = OBJECTIVES[plan.objectives[0]]
        self.points = self.space.grid_points(self.fixed) if plan.sampler == "grid" else None
        self.budget = plan.trials if self.points is None else min(plan.trials, len(self.points))
        self.done = False
        self.held = 0  # running trials that count toward the budget, when it is full
        self.deaths: list[str] = []
        # QMC's sequence goes on from the trials held, under one seed; the others are seeded per trial
        self.sampler = make_sampler(plan.sampler, plan.seed, self.space) if plan.sampler == "qmc" else None

    def claim(self) -> Job | None:
        import optuna
        from optuna.trial import TrialState

        taken = taken_trials(self.study)
        # trials running elsewhere count toward the budget; until they end this worker waits, as a suite's do
        # (one whose worker dies leaves its place to be taken again), unless nothing here can tell whether
        # their worker lives (another host, a file store): then the search ends short, saying so
        self.held = sum(t.state == TrialState.RUNNING and self.judgeable(t) for t in taken)
        if (self.plan.deadline is not None and time.time() > self.plan.deadline) or len(
            failed_here(self.study, self.session)
        ) >= self.budget:  # out of time; or every trial fails: stop, and say so
            self.done, self.held = True, 0
            return None
        if len(taken) >= self.budget:
            self.done = True
            return None
        number = len(self.study.get_trials(deepcopy=False))  # the number the next trial gets (under the lock)
        params: dict[str, tuple[Any, Any]] = {}
        if self.points is not None:
            point = self.free_point()
            if point is None:
                self.done = True
                return None
            dists = self.space.distributions(point)
            params = {name: (value, dists[name]) for name, value in point.items()}
            sampler = make_sampler("random", self.plan.seed + number, self.space)  # draws nothing: all set
        else:
            sampler = self.sampler or make_sampler(self.plan.sampler, self.plan.seed + number, self.space)
        self.study.sampler = optuna.samplers.PartialFixedSampler(self.fixed, sampler) if self.fixed else sampler
        attrs = {"suite": self.suite.name, "session": self.session, "worker": self.store.worker()}
        trial_id = self.store.create_running_trial(self.study, attrs, params)
        self.store.fence(self.study, trial_id)
        trial = optuna.Trial(self.study, trial_id)  # as Study.ask makes it, on the claim just written
        values = self.space.sample(trial)
        configs = [self.space.config(self.suite.base, values, seed) for seed in self.suite.seeds]
        hooks = [] if self.plan.pruner_name == "none" else [PruneHook(trial, self.suite.base.total_steps)]
        return Job(trial_id, f"trial {trial.number} of {self.title}", configs, hooks, context=values)

    def free_point(self) -> dict[str, Any] | None:
        """The grid's first point not finished, pruned or running: an interrupted point is taken again."""
        taken = {point_of(t.params, self.points[0]) for t in taken_trials(self.study)}
        return next((p for p in self.points if point_of(p, self.points[0]) not in taken), None)

    def judgeable(self, trial: Any) -> bool:
        """Whether this process can tell when the running trial's worker is gone."""
        return self.store.uses_heartbeats or self.store.worker_alive(trial.user_attrs.get("worker")) is not None

    def exhausted(self) -> bool:
        return self.done and not self.held

    def finish(self, job: Job, records: list[Any]) -> None:
        attrs = codec.search_attrs(job.context, records, self.metric_field)
        values = None
        if records[0].status not in ("pruned", "failed"):
            values = [mean_objective(records, OBJECTIVES[name]) for name in self.plan.objectives]
        self.store.finish(job.trial_id, records[0], values, attrs)

    def progress(self) -> tuple[int, int, dict[str, str]]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        return len(trials), self.budget, {"pruned": str(pruned), "best": f"{min(values):.4f}" if values else "-"}


def mean_objective(records: list[Any], field_name: str) -> float:
    """A trial's value for one objective: the mean over its seeds (a diverged seed's is infinite)."""
    per_seed = [getattr(r, field_name) for r in records]
    return sum(math.inf if v is None else float(v) for v in per_seed) / len(per_seed)


class PruneHook:
    """After each evaluation of a trial's first run: the loss goes to the trial and the pruner may stop the
    run as pruned (never at its last step, where there is nothing left to save)."""

    def __init__(self, trial: Any, total_steps: int):
        self.trial, self.total = trial, total_steps

    def __call__(self, step: int, val_loss: float) -> str | None:
        if not math.isfinite(val_loss):
            return None
        self.trial.report(val_loss, step)
        return "pruned" if step < self.total and self.trial.should_prune() else None


def failed_here(study: Any, session: str) -> list:
    """This command's trials that failed (training raised) or were interrupted (their worker died)."""
    from optuna.trial import TrialState

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return [t for t in failed if t.user_attrs.get("session") == session]


def shortfall(plan: SearchPlan, study: Any) -> tuple[str, bool] | None:
    """(why the study ends short of its budget, whether a trial failed while training), or None when it has
    its trials finished or pruned, or --timeout ended it (what was asked)."""
    from optuna.trial import TrialState

    settings = study.user_attrs.get("search") or {}
    budget = plan.trials
    if plan.sampler == "grid":
        suite = Suite.load(plan.suite_path, plan.overrides)
        budget = min(budget, len(parse_space(suite.search, suite.base).grid_points(settings.get("fixed") or {})))
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if done >= budget or (plan.deadline is not None and time.time() > plan.deadline):
        return None
    parts = []
    failed = [t for t in failed_here(study, plan.session) if codec.trial_status(t) == "failed"]
    if failed:
        said = (failed[-1].user_attrs.get("error") or "").strip().splitlines()
        parts.append(f"{len(failed)} trial(s) failed (the last: {said[-1] if said else 'no error recorded'})")
    died = [t for t in failed_here(study, plan.session) if t.user_attrs.get("worker_died")]
    if died:
        said = (died[-1].user_attrs.get("error") or "").strip().splitlines()
        parts.append(f"{len(died)} trial(s) lost their worker (the last: {said[0] if said else '?'})")
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        parts.append(f"{len(running)} running elsewhere ({', '.join(owners(running))})")
    why = "; ".join(parts) or "no worker was left to run them"
    return f"{study.study_name}: {done} of {budget} trials finished: {why}", bool(failed)


def point_of(params: Mapping[str, Any], like: Mapping[str, Any]) -> tuple:
    return tuple(repr(params.get(name)) for name in like)


def taken_trials(study: Any) -> list:
    """The trials that count toward the budget: finished, pruned or running."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))


def check_studies(plan: SearchPlan, store: Store, found: list[Arm], space: Space) -> None:
    """Each arm's stored study, if any, was searched the same way: other objectives or another space would
    mix two searches in one study. Bad input names the study and the way out; nothing is written."""
    from optuna.distributions import check_distribution_compatibility

    for arm in found:
        study = store.existing_study(arm.study_name)
        if study is None:
            continue
        way_out = (f"give the suite another name, or delete the study (optuna delete-study --study-name "
                   f"'{arm.study_name}' --storage {store.url})")  # fmt: skip
        stored = study.user_attrs.get("search", {}).get("objectives") or ["val_loss"] * len(study.directions)
        if list(stored) != list(plan.objectives):
            raise ConfigError(
                "--objectives",
                f"study '{arm.study_name}' was searched for {','.join(stored)}, not "
                f"{','.join(plan.objectives)}: search it with --objectives {','.join(stored)}, or {way_out}",
            )
        held = {name: dist for t in study.get_trials(deepcopy=False) for name, dist in t.distributions.items()}
        for dim in space.dimensions:
            if dim.name in held:
                try:
                    check_distribution_compatibility(held[dim.name], dim.distribution())
                except ValueError:
                    raise ConfigError(
                        f"search.{dim.name}",
                        f"study '{arm.study_name}' searched this over {held[dim.name]}, the suite now over "
                        f"{dim.distribution()}: one study holds one space; {way_out}",
                    ) from None


def open_studies(plan: SearchPlan, store: Store, found: list[Arm]) -> None:
    """Create each arm's study, with the search's settings (stored once, again only when they change)."""
    for arm in found:
        study = store.study(arm.study_name, ["minimize"] * len(plan.objectives))
        settings = {"sampler": plan.sampler, "pruner": plan.pruner_name, "objectives": list(plan.objectives),
                    "fixed": arm.fixed, "trials": plan.trials}  # fmt: skip
        if study.user_attrs.get("search") != settings:
            study.set_user_attr("search", settings)
        codec.record_entries(study, [Suite.load(plan.suite_path, plan.overrides).base])


def run_search(plan: SearchPlan) -> list[tuple[str, Any]]:
    """Every arm's study, searched by the plan's workers, arm after arm. Returns (study name, study) per arm."""
    import optuna

    plan.check()  # before the store is opened: nothing written
    suite = Suite.load(plan.suite_path, plan.overrides)
    space = parse_space(suite.search, suite.base)
    if plan.sampler == "grid":
        space.grid()
    store = Store.open(plan.storage, patient=True)
    for line in store.flush_pending():  # results a database outage left on local disk
        print(f"optbench: {line}", file=sys.stderr)
    found = arms(plan, suite, space)
    check_studies(plan, store, found, space)
    open_studies(plan, store, found)
    if plan.timeout is not None and plan.deadline is None:
        plan.deadline = time.time() + plan.timeout
    studies = []
    for arm in found:
        execute(arm.open, plan.crew, plan.show_progress)
        study = optuna.load_study(study_name=arm.study_name, storage=store.storage)
        say_held_elsewhere(study, plan.trials)
        studies.append((arm.study_name, study))
    return studies


def say_held_elsewhere(study: Any, budget: int) -> None:
    """A study short of its budget because other processes hold running trials (they count toward
    --trials): say whose, and when their trials come back, rather than ending short in silence."""
    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if done >= budget or not running:
        return
    print(
        f"optbench: {study.study_name}: {done} of {budget} trials finished; {len(running)} running elsewhere "
        f"({', '.join(owners(running))}) count toward --trials; run the command again once they end (a trial whose "
        f"worker died is taken again: on this machine once its process is gone, on a database {grace_period()} s "
        "after its last heartbeat)",
        file=sys.stderr,
    )


# -------------------------------------------------------------------------------------------------
# The best recipe


def best_trial(study: Any) -> Any:
    """The trial a search's recipe comes from: the best, or in a search of several objectives the Pareto
    point best in the first objective (documented: one file, the first objective's best)."""
    if len(study.directions) == 1:
        return study.best_trial
    return min(study.best_trials, key=lambda t: t.values[0])


def best_config(study: Any) -> RunConfig:
    return RunConfig.from_dict(best_trial(study).user_attrs["config"])


def recipe_toml(cfg: RunConfig, trial: Any = None, study_name: str = "", threads: int | None = None) -> str:
    """The `[base]` table that trains cfg again: the same run hash and, with the `threads` its trial ran
    at, the same numbers (threads change a run's rounding, not its identity). `steps` stays, since the hash
    covers it, but says it is ignored where `tokens` sets the budget, so the file does not read as two
    budgets. For a trial that trained several seeds, a first comment says its value is their mean and what
    seed trains. Written with tomlkit; a parameter left at nothing (TOML has no null) is left out, which
    reads back as its default of nothing."""
    import tomlkit

    doc = tomlkit.document()
    if trial is not None and len(trial.user_attrs.get("seeds") or []) > 1:
        of = f" (study {study_name})" if study_name else ""
        doc.add(tomlkit.comment(f"{seeds_text(trial)}{of}; this table trains seed {cfg.seed} alone"))
    base = tomlkit.table()
    for key, value in cfg.to_dict().items():
        if key == "threads":
            value = threads
        if value is None:
            continue
        base.add(key, toml_value(value))
        if key == "steps" and cfg.tokens is not None:
            base[key].comment(
                f"ignored: tokens sets the budget ({cfg.total_steps} steps of {cfg.tokens_per_step} tokens)"
            )
        if key == "threads":
            base[key].comment("the threads its trial ran at: the same threads give the same numbers")
    doc.add("base", base)
    return tomlkit.dumps(doc)


def toml_value(value: Any) -> Any:
    """Tables as inline tables (nested too), tuples as arrays, None left out."""
    import tomlkit

    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        for k, v in value.items():
            if v is not None:
                table.append(k, toml_value(v))
        return table
    if isinstance(value, tuple | list):
        return [toml_value(v) for v in value]
    return value


def seeds_text(trial: Any) -> str:
    """'the mean over seeds 0, 1, 2 (2.8660, 2.4832, 2.4871)' for a trial that trained several seeds."""
    seeds = trial.user_attrs.get("seeds") or []
    per_seed = trial.user_attrs.get("objective_per_seed") or []
    values = ", ".join("–" if v is None else f"{v:.4f}" for v in per_seed)
    return f"trial {trial.number}'s value is the mean over seeds {', '.join(map(str, seeds))} ({values})"
