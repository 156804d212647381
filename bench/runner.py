"""Runs a suite: every run of it exactly once, by any number of workers, resumable.

A suite's runs are a fixed list; `SuiteWork` hands the executor (bench.executor) the first run that has no
finished trial, no live claim and no failure in this session, claimed as a trial whose parameters are the
axes the run varies. Running the same command again resumes: finished runs are skipped, interrupted and
failed ones run again, and runs another suite of the same store already finished are copied, not
trained again.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench import codec, protocol
from bench.codec import (
    FINISHED,
    claim_attrs,
    copied_trial,
    fit_params,
    latest_per_run,
    metric_value,
    settled_results,
    trial_status,
)
from bench.executor import Crew, Job, execute
from bench.protocol import stages
from bench.store import Store
from bench.suite import Run, Suite


@dataclass
class Plan:
    """How a suite is run: where, by how many workers, with how many threads each."""

    suite_path: str
    overrides: dict[str, Any]
    storage: str | None
    workers: int
    threads: int
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # The GPU of each worker (cuda:0, cuda:1, ...; see bench.devices.worker_devices) for runs on a plain
    # `cuda`; empty for CPU suites.
    gpus: list[str | None] = field(default_factory=list)
    split_reason: str = ""  # why this many workers and threads, for every record's environment

    def open(self) -> SuiteWork:
        """The suite's work, as each worker process opens it."""
        return SuiteWork(self)

    @property
    def crew(self) -> Crew:
        return Crew(self.workers, self.threads, self.gpus, self.split_reason)


def default_split(suite: Suite, cores: int | None = None) -> tuple[int, int]:
    """(workers, threads each): this machine's calibrated split for the suite's model (bench.calibrate),
    else `rule_split`."""
    cores = cores or os.cpu_count() or 1
    if any(r.config.device != "cpu" for r in suite.runs()):  # `auto` is resolved by now: GPUs take their split
        return 1, cores
    from bench.machine import split_choice

    cached = split_choice(suite.base, cores)
    return cached.value if cached else rule_split(suite.base, cores)


def rule_split(cfg: Any, cores: int) -> tuple[int, int]:
    """Small models: one single-threaded worker per core, which measured fastest on 2 cores
    (docs/performance.md); wider models: one worker using every core."""
    if cfg.model["n_embd"] <= 128:
        return cores, 1
    return 1, cores


# Workers a run may see die (killed, crashed) in one command before that command stops claiming it: a run that
# kills every worker that trains it (too big for memory, a crash in native code) is reported, not retried forever.
MAX_DEATHS = 3


def settle_state(trials: list, runs: dict[str, Run], session: str) -> tuple[list[str], int]:
    """(claimable run hashes in suite order, number of live claims) among a study's trials."""
    finished, running, failed_here = set(), 0, set()
    deaths: dict[str, int] = {}
    for t in trials:
        run_hash = t.user_attrs.get("run_hash")
        status = trial_status(t)
        if status in FINISHED:
            finished.add(run_hash)
        elif status == "running":
            running += 1
            finished.add(run_hash)  # claimed: not claimable while the claim lives
        elif t.user_attrs.get("session") != session:
            continue
        elif status == "failed":
            failed_here.add(run_hash)
        elif t.user_attrs.get("worker_died"):
            deaths[run_hash] = deaths.get(run_hash, 0) + 1
    claimable = [h for h in runs if h not in finished and h not in failed_here and deaths.get(h, 0) < MAX_DEATHS]
    return claimable, running


class SuiteWork:
    """A suite's runs for the executor: claim the first run nobody has settled, store its record."""

    def __init__(self, plan: Plan):
        self.suite = Suite.load(plan.suite_path, plan.overrides)
        self.store = Store.open(plan.storage, patient=True)  # the command reached it: an outage is waited out
        self.study = self.store.study(self.suite.name)
        self.runs = {r.hash: r for r in self.suite.runs()}  # built once: polling must stay cheap
        self.title, self.session = self.suite.name, plan.session
        self.lock_key = f"optbench:{self.suite.name}"
        self.metric_field = self.suite.metric_field
        self.running = 0
        self.started = time.perf_counter()
        self.copied = 0
        self.deaths: list[str] = []

    def refresh(self, trials: list) -> None:
        """The runs the suite implies now: a suite that tunes adds stages as its results come in."""
        if self.suite.tune:
            self.runs = {r.hash: r for r in stages(self.suite, settled_results(trials)).runs}

    def claim(self) -> Job | None:
        trials = self.study.get_trials(deepcopy=False)
        self.refresh(trials)
        claimable, self.running = settle_state(trials, self.runs, self.session)
        if not claimable:
            return None
        run = self.runs[claimable[0]]
        attrs = claim_attrs(run, self.suite.name, self.session, self.store.worker())
        trial_id = self.store.create_running_trial(self.study, attrs, run_params(self.suite, run, trials))
        if not self.store.fence(self.study, trial_id, run.hash):
            self.running += 1  # another holds this run: wait for it rather than end
            return None
        return Job(trial_id, f"run {run.arm_label} (seed {run.seed})", [run.config], context=run)

    def exhausted(self) -> bool:
        return self.running == 0

    def finish(self, job: Job, records: list[Any]) -> None:
        (record,) = records
        self.store.finish(job.trial_id, record, [metric_value(record, self.metric_field)])

    def progress(self) -> tuple[int, int, dict[str, str]]:
        s = self.summary()
        best = f"{s.best[1]:.4f} ({s.best[0]})" if s.best else "-"
        return (
            sum(s.counts.get(x, 0) for x in (*FINISHED, "failed")),
            s.total,
            {"failed": str(s.failures), "best": best},
        )

    def summary(self) -> Summary:
        self.refresh(self.study.get_trials(deepcopy=False))
        return summarize(self.study, self.runs, self.started, self.copied)


def run_params(suite: Suite, run: Run, trials: list) -> dict[str, tuple[Any, Any]]:
    """The trial parameters of one of the suite's runs: the axes it varies (bench.protocol.run_params), named
    apart from any the study holds with other choices (an edited axis)."""
    return fit_params(protocol.run_params(suite, run), trials)


def import_finished_runs(store: Store, study: Any, suite: Suite, runs: dict[str, Run]) -> int:
    """Copy runs another study of this storage already finished, so no run is trained twice."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    have = {t.user_attrs.get("run_hash") for t in trials if trial_status(t) in FINISHED}
    wanted = set(runs) - have
    if not wanted:
        return 0
    copied = []
    for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=False):
        if summary.study_name == study.study_name or not wanted:
            continue
        other = optuna.load_study(study_name=summary.study_name, storage=store.storage)
        for run_hash, (t, _) in latest_per_run(other.get_trials(deepcopy=False)).items():
            if run_hash in wanted and trial_status(t) in FINISHED and len(t.values or []) == 1:
                run = runs[run_hash]
                params = run_params(suite, run, trials + copied)
                copied.append(copied_trial(t, run, summary.study_name, params, suite.metric_field))
                wanted.discard(run_hash)
    study.add_trials(copied)
    return len(copied)


@dataclass
class Summary:
    total: int
    counts: dict[str, int]
    best: tuple[str, float] | None
    elapsed: float
    copied: int = 0
    # each run not stored finished, in suite order: "run optimizer=lion (seed 0): why" (what the exit code says)
    unfinished: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.counts.get("failed", 0) + self.counts.get("interrupted", 0)

    @property
    def complete(self) -> bool:
        return not self.unfinished


def summarize(study: Any, runs: dict[str, Run], started: float, copied: int = 0) -> Summary:
    """Status counts and the best result over the suite's runs, and why each run that is not finished is not."""
    counts: dict[str, int] = {}
    best = None
    latest = latest_per_run(study.get_trials(deepcopy=False))
    unfinished = []
    for run_hash, run in runs.items():
        if run_hash not in latest:
            unfinished.append(f"run {run.arm_label} (seed {run.seed}): not run")
            continue
        t, attempts = latest[run_hash]
        status = trial_status(t)
        counts[status] = counts.get(status, 0) + 1
        if status in FINISHED and t.value is not None and (best is None or t.value < best[1]):
            best = (t.user_attrs.get("arm_label", run_hash), t.value)
        if status not in FINISHED:
            unfinished.append(f"run {run.arm_label} (seed {run.seed}) {unfinished_reason(t, status, attempts)}")
    return Summary(len(runs), counts, best, time.perf_counter() - started, copied, unfinished)


def unfinished_reason(t: Any, status: str, attempts: int) -> str:
    """Why a run's latest trial is no result, in a few words after its name."""
    said = (t.user_attrs.get("error") or "").strip().splitlines()
    if status == "failed":
        return f"failed: {said[-1] if said else 'no error recorded'}"
    if status == "running":
        return f"is still running, claimed by {t.user_attrs.get('worker', {}).get('host', '?')}"
    if status == "pruned":
        return "was pruned"
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    return f"was interrupted: {said[0] if said else 'stopped before it finished'}{tries}"


def run_suite(plan: Plan, show_progress: bool = True) -> Summary:
    """Run every run of the suite once (resuming), with the plan's workers; the store keeps all."""
    suite = Suite.load(plan.suite_path, plan.overrides)
    store = Store.open(plan.storage, patient=True)
    for line in store.flush_pending():  # results a database outage left on local disk
        print(f"optbench: {line}", file=sys.stderr)
    started = time.perf_counter()
    runs = {r.hash: r for r in suite.runs()}
    with store.claim_lock(f"optbench:{suite.name}"):
        study = store.study(suite.name)
        if study.user_attrs.get("suite") != suite.describe():  # stored once, not again at every run
            study.set_user_attr("suite", suite.describe())
        codec.record_entries(study, [suite.base, *(r.config for r in runs.values())])
        copied = import_finished_runs(store, study, suite, runs)
    work = execute(plan.open, plan.crew, show_progress)
    work.started, work.copied = started, copied
    return work.summary()
