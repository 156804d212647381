"""Executes a suite: worker processes, exactly-once claims, resume, progress, failures.

Every worker, in this process or another, on this machine or another, runs the same loop: under the
store's claim lock, fail stale claims and claim the first run that has no finished trial, no live
claim and no failure in this session; train it; store the record. It waits while other workers still
hold claims (one of them may die and leave its run to be claimed again) and stops when every run is
settled. Running the same command again resumes: finished runs are skipped, interrupted and failed ones
run again.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import interrupts
from bench.codec import FINISHED, claim_attrs, copied_trial, latest_per_run, trial_status, write_interrupted
from bench.devices import CUDA_POISONED_EXIT, sharing
from bench.env import set_threads
from bench.registry import ConfigError
from bench.store import Store, this_worker
from bench.suite import Run, Suite
from bench.workers import POLL_SECONDS, run_workers

WAIT_NOTICE_SECONDS = 30.0  # between notices while waiting for other workers' claims


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
    """Small models: one single-threaded worker per core, which measured fastest on 2 cores (see README,
    Performance); wider models: one worker using every core."""
    if cfg.model["n_embd"] <= 128:
        return cores, 1
    return 1, cores


def settle_state(study: Any, runs: dict[str, Run], session: str) -> tuple[list[str], int]:
    """(claimable run hashes in suite order, number of live claims)."""
    trials = study.get_trials(deepcopy=False)
    finished, running, failed_here = set(), 0, set()
    for t in trials:
        run_hash = t.user_attrs.get("run_hash")
        status = trial_status(t)
        if status in FINISHED:
            finished.add(run_hash)
        elif status == "running":
            running += 1
            finished.add(run_hash)  # claimed: not claimable while the claim lives
        elif status == "failed" and t.user_attrs.get("session") == session:
            failed_here.add(run_hash)
    claimable = [h for h in runs if h not in finished and h not in failed_here]
    return claimable, running


def claim(store: Store, study: Any, run: Run, suite: Suite, session: str) -> int:
    """Create the run's RUNNING trial with its run hash, worker and parameters in one write, so that a
    kill can never leave a claim that nobody can identify (an orphan)."""
    attrs = claim_attrs(run, suite.name, session, this_worker())
    return store.create_running_trial(study, attrs, run.config.flat())


def import_finished_runs(store: Store, study: Any, runs: dict[str, Run]) -> int:
    """Copy runs another study of this storage already finished, so no run is trained twice."""
    import optuna

    have = {t.user_attrs.get("run_hash") for t in study.get_trials(deepcopy=False) if trial_status(t) in FINISHED}
    wanted = set(runs) - have
    if not wanted:
        return 0
    copied = 0
    for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=False):
        if summary.study_name == study.study_name or not wanted:
            continue
        other = optuna.load_study(study_name=summary.study_name, storage=store.storage)
        for run_hash, (t, _) in latest_per_run(other.get_trials(deepcopy=False)).items():
            if run_hash in wanted and trial_status(t) in FINISHED and len(t.values or []) == 1:
                study.add_trial(copied_trial(t, runs[run_hash], summary.study_name))
                wanted.discard(run_hash)
                copied += 1
    return copied


def worker_loop(plan: Plan, on_finish: Callable[[Run, Any], None] | None = None, gpu: str | None = None) -> int:
    """Claim, train and store runs until every run of the suite is settled. Returns runs trained. `gpu`: this
    worker's GPU. A run that breaks the CUDA context is stored as failed, then this worker exits with
    CUDA_POISONED_EXIT for the runner to start a fresh process in its place."""
    from bench.train import RunRecord, run_training

    shared_by = sharing(plan.gpus).get(gpu, 1) if gpu else None

    suite = Suite.load(plan.suite_path, plan.overrides)
    store = Store.open(plan.storage)
    study = store.study(suite.name)
    runs = {r.hash: r for r in suite.runs()}
    trained = 0
    last_notice = -math.inf
    while True:
        trial_id = None  # the claimed run, while it is ours to finish or mark interrupted
        try:
            with interrupts.deferred():  # a claim is written whole: Ctrl-C or SIGTERM waits for its end
                with store.claim_lock(f"optbench:{suite.name}"):
                    store.fail_stale(study)
                    claimable, running = settle_state(study, runs, plan.session)
                    trial_id = claim(store, study, runs[claimable[0]], suite, plan.session) if claimable else None
            if trial_id is None:
                if running == 0:
                    return trained
                if time.monotonic() - last_notice > WAIT_NOTICE_SECONDS:
                    last_notice = time.monotonic()
                    announce_wait(study, plan.session)
                time.sleep(POLL_SECONDS)  # others hold claims; one may go stale and come back to us
                continue
            run = runs[claimable[0]]
            with store.heartbeat(trial_id):
                record, model = run_training(run.config.override({"threads": plan.threads}), device=gpu)
            record.env["split"] = f"{plan.workers} worker(s) x {plan.threads} thread(s): {plan.split_reason}"
            if shared_by is not None and record.env.get("device") == gpu:
                record.env["gpu_workers"] = shared_by  # >1: timings shared the GPU with other workers
            if record.status == "failed":  # the traceback is in the record; one line here
                print(f"optbench: run {run.arm_label} (seed {run.seed}) failed: {record.reason}", file=sys.stderr)
            with interrupts.deferred():
                store.finish(trial_id, record, suite.metric_field)
                trial_id = None
            keep_weights_if_best(study, run, record, model, suite.metric_field)
        except (KeyboardInterrupt, ConfigError):  # a stop, or bad input found while training (a corpus)
            if trial_id is not None:
                with contextlib.suppress(ConfigError):  # an unwritable store cannot take the mark either
                    mark_interrupted(store, trial_id)
            raise
        trained += 1
        if on_finish:
            on_finish(run, record if isinstance(record, RunRecord) else None)
        if record.env.get("cuda_context_lost"):
            raise SystemExit(CUDA_POISONED_EXIT)


def announce_wait(study: Any, session: str) -> None:
    """Say on stderr which claims of other sessions this worker waits for, and for how long at most."""
    from optuna.trial import TrialState

    from bench.store import GRACE_PERIOD, owners

    others = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("session") != session
    ]  # fmt: skip
    if not others:
        return  # only this command's own workers: they finish or are stopped with it
    print(
        f"optbench: waiting for {len(others)} run(s) claimed by other workers ({', '.join(owners(others))}); "
        f"a claim whose worker dies is retried within {GRACE_PERIOD} s",
        file=sys.stderr,
    )


def keep_weights_if_best(study: Any, run: Run, record: Any, model: Any, metric_field: str) -> None:
    """Save the weights of a run that finished as the best of its suite so far: the report samples text
    from them and never trains."""
    from bench.checkpoint import save_checkpoint

    value = getattr(record, metric_field)
    if model is None or value is None or record.status not in ("complete", "stopped_early"):
        return
    others = [t.value for t in study.get_trials(deepcopy=False) if trial_status(t) in FINISHED and t.value is not None]
    if value <= min(others, default=value):
        save_checkpoint(run.hash, model)


def mark_interrupted(store: Store, trial_id: int) -> None:
    with interrupts.deferred():  # a second signal must not leave the mark half-written
        write_interrupted(store.storage, trial_id)


def _suite_worker(plan: Plan, gpu: str | None = None) -> None:
    set_threads(plan.threads)
    if gpu:
        from bench.devices import use_device

        use_device(gpu)  # before any CUDA call, so nothing of this worker lands on GPU 0
    worker_loop(plan, gpu=gpu)


@dataclass
class Summary:
    total: int
    counts: dict[str, int]
    best: tuple[str, float] | None
    elapsed: float
    copied: int = 0

    @property
    def failures(self) -> int:
        return self.counts.get("failed", 0) + self.counts.get("interrupted", 0)


def summarize(study: Any, wanted: set[str], started: float, copied: int = 0) -> Summary:
    """Status counts and the best result over the suite's runs (`wanted`: their hashes)."""
    counts: dict[str, int] = {}
    best = None
    for run_hash, (t, _) in latest_per_run(study.get_trials(deepcopy=False)).items():
        if run_hash not in wanted:
            continue
        status = trial_status(t)
        counts[status] = counts.get(status, 0) + 1
        if status in FINISHED and t.value is not None and (best is None or t.value < best[1]):
            best = (t.user_attrs.get("arm_label", run_hash), t.value)
    return Summary(len(wanted), counts, best, time.perf_counter() - started, copied)


def run_suite(plan: Plan, show_progress: bool = True) -> Summary:
    """Run every run of the suite once (resuming), with plan.workers processes; the store keeps all."""
    suite = Suite.load(plan.suite_path, plan.overrides)
    store = Store.open(plan.storage)
    started = time.perf_counter()
    runs = {r.hash: r for r in suite.runs()}  # built once: polling below must stay cheap
    with store.claim_lock(f"optbench:{suite.name}"):
        study = store.study(suite.name)
        study.set_user_attr("suite", suite.describe())
        copied = import_finished_runs(store, study, runs)

    def current() -> Summary:
        return summarize(study, set(runs), started, copied)

    progress = SuiteProgress(suite.name, len(runs), show_progress, current())
    try:
        gpus = plan.gpus or [None] * plan.workers
        if plan.workers == 1 and gpus[0] is None:  # on a GPU a process of its own, replaceable if CUDA breaks
            with interrupts.on_stop_signals():
                set_threads(plan.threads)
                worker_loop(plan, on_finish=lambda run, record: progress.update(current()))
        else:
            run_workers(_suite_worker, [(plan, g) for g in gpus], plan.threads, poll=lambda: progress.update(current()))
    finally:
        progress.stop()
    return current()


class SuiteProgress:
    """Runs done of total, failures, elapsed, ETA and the best result so far, on stderr."""

    def __init__(self, name: str, total: int, enabled: bool, start: Summary):
        self.bar = None
        if not enabled:
            return
        from bench.progress import progress_bar

        self.bar = progress_bar(name, "failed {task.fields[failed]}", "best {task.fields[best]}")
        # starts at the runs settled before (resumed, or copied from other suites): the ETA counts only the
        # pace of runs trained now
        self.task = self.bar.add_task(name, total=total, completed=self.done(start), failed=0, best="-")
        self.bar.start()
        self.update(start)

    @staticmethod
    def done(summary: Summary) -> int:
        return sum(summary.counts.get(s, 0) for s in (*FINISHED, "failed"))

    def update(self, summary: Summary) -> None:
        if self.bar is None:
            return
        best = f"{summary.best[1]:.4f} ({summary.best[0]})" if summary.best else "-"
        self.bar.update(self.task, completed=self.done(summary), failed=summary.failures, best=best)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
