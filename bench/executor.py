"""The one executor: claim -> train -> finish, for a suite's runs and a search's trials alike.

Every worker, in this process or another, on this machine or another, runs `work_loop` over a `Work`.
Under the store's claim lock it fails stale claims and asks the work for its next job: a suite's first run
that has no finished trial, no live claim and no failure in this session; a search's next trial while its
budget lasts. A job is claimed in one store write that names its worker (bench.codec), so a kill never
leaves a claim nobody can identify. The worker trains the job's runs (a search trial trains one per seed,
its later seeds only while the first survives the pruner) and stores the result through the codec. When
the work has nothing to hand out while others still hold claims, the worker waits: one of them may die
and leave its run to be claimed again.

`execute` runs one worker in this process or several in spawned processes (bench.workers) with one
progress display, whatever the work. A worker that dies (of a signal, a crash, a library's error) hands its
claim back as interrupted, naming why, and a fresh worker takes its place (bench.workers bounds how often).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench import database, interrupts
from bench.codec import FINISHED, trial_id, trial_status, write_interrupted
from bench.devices import CUDA_POISONED_EXIT, sharing
from bench.env import set_threads
from bench.errors import StoreUnreachable
from bench.registry import ConfigError
from bench.store import Store, grace_period, owners
from bench.workers import MAX_REPLACEMENTS, POLL_SECONDS, describe_error, run_workers

WAIT_NOTICE_SECONDS = 30.0  # between notices while waiting for other workers' claims


@dataclass
class Job:
    """A claimed trial and the runs it trains, in order."""

    trial_id: int
    title: str  # how messages name it: "run optimizer=lion (seed 0)", "trial 7"
    configs: list[Any]  # RunConfigs
    hooks: list[Callable[[int, float], str | None]] = field(default_factory=list)  # the first run's pruner
    context: Any = None  # what the work needs back when it finishes the job


class Work(Protocol):
    """What a worker takes jobs from: a suite's fixed runs (bench.runner) or a search (bench.search)."""

    title: str  # what progress shows
    deaths: list[str]  # one line per worker that died while running it (execute fills it)
    study: Any
    store: Store
    lock_key: str  # the claim lock's name
    session: str  # this command's id: its own claims are not waited for
    metric_field: str  # the RunRecord field a run ranks by (the best run's weights are kept)

    def claim(self) -> Job | None:
        """The next job, claimed in the store (the caller holds the claim lock); None when there is none."""

    def exhausted(self) -> bool:
        """After claim() gave None: True when no job will come any more; False while claims held by others
        may come back."""

    def finish(self, job: Job, records: list[Any]) -> None:
        """Store the job's records and close its trial (optuna's UpdateFinishedTrialError if it was failed)."""

    def progress(self) -> tuple[int, int, dict[str, str]]:
        """(done, total, fields shown beside the bar)."""


@dataclass
class Crew:
    """How a work is run: by how many workers, with how many threads each, on which GPUs."""

    workers: int = 1
    threads: int = 1
    gpus: list[str | None] = field(default_factory=list)  # each worker's GPU; empty on the CPU
    split_reason: str = ""  # why this many workers and threads, for every record's environment


def work_loop(work: Work, crew: Crew, gpu: str | None = None, on_finish: Callable[[], None] | None = None) -> int:
    """Claim, train and store jobs until the work is exhausted. Returns the jobs trained. `gpu`: this
    worker's GPU. A run that breaks the CUDA context is stored as failed, then this worker exits with
    CUDA_POISONED_EXIT for the supervisor to start a fresh process in its place."""
    from bench.train import run_training

    shared_by = sharing(crew.gpus).get(gpu, 1) if gpu else None
    store = work.store
    trained = 0
    last_notice = -math.inf
    while True:
        job = None  # the claimed job, while it is ours to finish or mark interrupted
        try:
            with interrupts.deferred():  # a claim is written whole: Ctrl-C or SIGTERM waits for its end
                with store.claim_lock(work.lock_key):
                    store.fail_stale(work.study)
                    job = work.claim()
            if job is None:
                if work.exhausted():
                    return trained
                if time.monotonic() - last_notice > WAIT_NOTICE_SECONDS:
                    last_notice = time.monotonic()
                    announce_wait(work.study, work.session)
                time.sleep(POLL_SECONDS)  # others hold claims; one may go stale and come back to us
                continue
            records, models = [], []
            with store.heartbeat(job.trial_id):  # beating until stored: a wait for the database is no death
                for i, cfg in enumerate(job.configs):
                    record, model = run_training(
                        cfg.override({"threads": crew.threads}), device=gpu, hooks=job.hooks if i == 0 else ()
                    )
                    record.env["split"] = f"{crew.workers} worker(s) x {crew.threads} thread(s): {crew.split_reason}"
                    if shared_by is not None and record.env.get("device") == gpu:
                        record.env["gpu_workers"] = shared_by  # >1: timings shared the GPU with other workers
                    records.append(record)
                    models.append(model)
                    if record.status == "failed":  # the traceback is in the record; one line here
                        print(f"optbench: {job.title} failed: {record.reason}", file=sys.stderr)
                    if record.status in ("failed", "pruned") or record.env.get("cuda_context_lost"):
                        break  # later seeds only for a trial whose first run finished
                stored = finish_or_drop(work, job, records)
            job = None
            if not stored:
                continue
            for record, model in zip(records, models, strict=True):
                keep_weights_if_best(work.study, record, model, work.metric_field)
        except (KeyboardInterrupt, ConfigError):  # a stop, or bad input found while training (a corpus)
            if job is not None:
                with contextlib.suppress(ConfigError):  # an unwritable store cannot take the mark either
                    mark_interrupted(store, job.trial_id)
            raise
        except StoreUnreachable:  # the database stayed away: no death of this worker's, the command ends
            if job is not None:
                with contextlib.suppress(Exception), database.impatient():  # one try: it is away
                    mark_interrupted(store, job.trial_id, "the database stayed unreachable")
            raise
        except Exception as e:  # noqa: BLE001 -- a library's error nothing expects: this worker dies of it
            if job is not None:
                why = f"its worker (pid {os.getpid()}) died of {describe_error(e)}\n{traceback.format_exc()}"
                with contextlib.suppress(Exception):  # the store itself may be what failed
                    mark_interrupted(store, job.trial_id, why, died=True)
            raise
        trained += 1
        if on_finish:
            on_finish()
        if any(r.env.get("cuda_context_lost") for r in records):
            raise SystemExit(CUDA_POISONED_EXIT)


def finish_or_drop(work: Work, job: Job, records: list[Any]) -> bool:
    """Store the job's result; False (and one line) when its claim was failed meanwhile: this worker was
    judged gone (paused past the grace period, or cut off from the database) and the run is claimable, or
    trained, elsewhere."""
    import optuna

    try:
        with interrupts.deferred():
            work.finish(job, records)
    except optuna.exceptions.UpdateFinishedTrialError:
        print(
            f"optbench: {job.title}: its claim was taken over while this worker was away (paused, or cut off "
            "from the store); its result is dropped and the run is trained by whoever took it",
            file=sys.stderr,
        )
        return False
    return True


def announce_wait(study: Any, session: str) -> None:
    """Say on stderr which claims of other sessions this worker waits for, and for how long at most."""
    from optuna.trial import TrialState

    others = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("session") != session
    ]  # fmt: skip
    if not others:
        return  # only this command's own workers: they finish or are stopped with it
    print(
        f"optbench: waiting for {len(others)} run(s) claimed by other workers ({', '.join(owners(others))}); "
        f"a claim whose worker dies is retried within {grace_period()} s",
        file=sys.stderr,
    )


def keep_weights_if_best(study: Any, record: Any, model: Any, metric_field: str) -> None:
    """Save the weights of a run that finished as the best of its study so far: the report samples text
    from them and never trains."""
    from bench.checkpoint import save_checkpoint

    value = getattr(record, metric_field)
    if model is None or value is None or record.status not in ("complete", "stopped_early"):
        return
    others = [t.values[0] for t in study.get_trials(deepcopy=False) if trial_status(t) in FINISHED and t.values]
    if value <= min(others, default=value):
        save_checkpoint(record.config_hash, model)


def mark_interrupted(store: Store, trial_id: int, why: str | None = None, died: bool = False) -> None:
    with interrupts.deferred():  # a second signal must not leave the mark half-written
        write_interrupted(store.storage, trial_id, why, died)


def release_claims(work: Work, pid: int, why: str) -> None:
    """Hand back what a worker process of this command claimed before it died (bench.workers saw it end):
    each of its running trials failed as interrupted, naming why, so that its run is claimed again at once."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in work.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("pid") == pid and worker.get("host") == host and t.user_attrs.get("session") == work.session:
            number = trial_id(work.store.storage, work.study, t)
            mark_interrupted(work.store, number, f"its worker (pid {pid}) {why}", died=True)


class Progress:
    """The one progress display of every work: done of total, its fields, elapsed, ETA, on stderr. It
    starts at what was done before, so the ETA counts only the pace of jobs run now."""

    def __init__(self, work: Work, enabled: bool):
        self.work, self.bar = work, None
        if not enabled:
            return
        from bench.progress import progress_bar

        done, total, fields = work.progress()
        self.bar = progress_bar(work.title, *(f"{name} {{task.fields[{name}]}}" for name in fields))
        self.task = self.bar.add_task(work.title, total=total, completed=done, **fields)
        self.bar.start()

    def update(self) -> None:
        if self.bar is None:
            return
        try:
            with database.impatient():  # the display may skip a beat; the supervisor must not wait on it
                done, total, fields = self.work.progress()
        except Exception as e:  # noqa: BLE001 -- only a lost connection is skipped
            if database.transient(e):
                return
            raise
        self.bar.update(self.task, completed=done, total=total, **fields)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def execute(open_work: Callable[[], Work], crew: Crew, show_progress: bool = True) -> Work:
    """Run a work to its end with the crew's workers: in this process when one worker on the CPU, else in
    spawned processes that each open the work themselves (`open_work` must pickle). Returns the parent's
    view of the work, for its summary."""
    work = open_work()
    progress = Progress(work, show_progress)
    try:
        gpus = crew.gpus or [None] * crew.workers
        if crew.workers == 1 and gpus[0] is None:  # on a GPU a process of its own, replaceable if CUDA breaks
            with interrupts.on_stop_signals():
                set_threads(crew.threads)
                work.deaths = in_process(work, crew, progress)
        else:
            work.deaths = run_workers(
                _worker, [(open_work, crew, g) for g in gpus], crew.threads, poll=progress.update,
                on_death=lambda pid, why: release_claims(work, pid, why),
            )  # fmt: skip
    finally:
        progress.stop()
    return work


def in_process(work: Work, crew: Crew, progress: Progress) -> list[str]:
    """The one worker, in this process: one that dies of a library's error has handed its run back
    (work_loop) and starts again, as a fresh process would, at most MAX_REPLACEMENTS times."""
    deaths: list[str] = []
    for _ in range(MAX_REPLACEMENTS + 1):
        try:
            work_loop(work, crew, on_finish=progress.update)
            return deaths
        except (KeyboardInterrupt, ConfigError, StoreUnreachable):
            raise
        except Exception as e:  # noqa: BLE001 -- what a spawned worker would die of
            deaths.append(f"the worker (pid {os.getpid()}) died of {describe_error(e)}")
            print(f"optbench: {deaths[-1]}; its run is handed back and the worker starts again", file=sys.stderr)
    print(f"optbench: the worker died {len(deaths)} times; it is not started again", file=sys.stderr)
    return deaths


def _worker(open_work: Callable[[], Work], crew: Crew, gpu: str | None = None) -> None:
    """A spawned worker's entry (bench.workers supervises it)."""
    set_threads(crew.threads)
    if gpu:
        from bench.devices import use_device

        use_device(gpu)  # before any CUDA call, so nothing of this worker lands on GPU 0
    work_loop(open_work(), crew, gpu=gpu)
