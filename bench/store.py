"""Results in an Optuna storage: every suite is a study, every run a trial.

How a run and its RunRecord map to a trial (parameters, value, intermediate values, user attributes,
status) is bench.codec's alone.

Storages:
- default: `results/optbench.journal`, Optuna's JournalFileBackend. Several processes on one machine
  append to it under file locks; a killed writer loses at most its own last entry. (SQLite is what
  Optuna's FAQ advises against for parallel writers: "database is locked".)
- `postgresql://...`: Optuna's RDBStorage with heartbeats, for several machines. Every machine runs the
  same command, so the first ones may open a fresh database at the same moment: schema creation is
  serialized by an advisory lock (concurrent CREATE TABLEs collide in PostgreSQL's catalog).
- `sqlite:///file.db` is accepted for one process at a time.

Exactly-once: a run is claimed under a lock (a file lock beside a file storage, a PostgreSQL advisory
lock otherwise) by creating its RUNNING trial; runs whose claim is stale (the worker's process is gone,
or its heartbeat stopped) are failed and claimed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import codec
from bench.registry import ConfigError

DEFAULT_STORAGE_FILE = "optbench.journal"
# Seconds between heartbeats of a running trial (RDB storages), and without one before it is stale.
HEARTBEAT_INTERVAL = int(os.environ.get("OPTBENCH_HEARTBEAT_INTERVAL", "5"))
GRACE_PERIOD = int(os.environ.get("OPTBENCH_GRACE_PERIOD", "20"))


class NoStore(ConfigError):
    """A store that a read-only command was to read does not exist (reading never creates one)."""


def default_storage_url() -> str:
    root = Path(os.environ.get("OPTBENCH_RESULTS_DIR", "results"))
    return str(root / DEFAULT_STORAGE_FILE)


def missing_store(url: str | None) -> Path | None:
    """The file of a journal or SQLite store that does not exist (opening it would create it); None when it
    exists or the store is a database server."""
    url = url or default_storage_url()
    if "://" not in url or url.startswith("journal://"):
        path = Path(url.removeprefix("journal://")).expanduser()
    elif url.split("://", 1)[0].split("+", 1)[0] == "sqlite":
        path = Path(url.split("///", 1)[-1])
    else:
        return None
    return None if path.exists() else path


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process, so a reused pid is not mistaken for a live worker."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_worker() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start_time(pid)}


def owners(trials: list) -> list[str]:
    """'host:pid' of each running trial's worker ('no owner' where it names none), sorted, once each."""
    return sorted({"{host}:{pid}".format(**t.user_attrs["worker"]) if t.user_attrs.get("worker") else "no owner"
                   for t in trials})  # fmt: skip


def age_seconds(when: Any) -> float:
    """Seconds since a trial's datetime (naive ones are local time, as Optuna's databases keep them)."""
    import datetime

    if when is None:
        return math.inf
    now = datetime.datetime.now(datetime.UTC)
    return (now - (when if when.tzinfo else when.astimezone())).total_seconds()


def worker_alive(worker: dict[str, Any] | None) -> bool | None:
    """True or False for a worker on this host; None when it runs elsewhere (only heartbeats can tell)."""
    if not worker or worker.get("host") != socket.gethostname():
        return None
    start = process_start_time(int(worker["pid"]))
    return start is not None and start == worker.get("start")


@dataclass
class Store:
    url: str
    storage: Any  # optuna.storages.BaseStorage
    lock_path: Path | None  # file lock for file storages; None: PostgreSQL advisory lock

    @classmethod
    def open(cls, url: str | None = None, create: bool = True) -> Store:
        """Open (creating a file storage if needed). An unreachable database is bad input: ConfigError.
        create=False (commands that only read): a missing file store is NoStore, and nothing is created."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # heartbeats are experimental in Optuna and meant for study.optimize; we drive them ourselves
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        url = url or default_storage_url()
        if "://" not in url or url.startswith("journal://"):
            path = Path(url.removeprefix("journal://")).expanduser()
            from bench.journal import CheckedJournal, sniff

            sniff(path)  # a file that is not a journal is refused before anything is written to it
            if not create and missing_store(url):
                raise NoStore("--storage", f"no such store {path}")
            if not path.parent.is_dir():
                if url != default_storage_url():
                    raise ConfigError("--storage", f"folder {path.parent} does not exist")
                path.parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalStorage

            backend = CheckedJournal(path)
            try:
                storage = JournalStorage(backend)
            except (ConfigError, OSError):  # the backend's own report of a corrupt line; an unreadable file
                raise
            except Exception as e:  # noqa: BLE001 -- records that parse but Optuna cannot replay raise anything
                raise backend.corrupt(e) from None
            return cls(str(path), storage, path.with_name(path.name + ".claim-lock"))
        scheme = url.split("://", 1)[0].split("+", 1)[0]
        if scheme not in ("postgresql", "sqlite"):
            raise ConfigError(
                "--storage", f"unknown storage scheme '{scheme}'; allowed: a file path, postgresql://, sqlite:///"
            )
        if scheme == "sqlite":
            db = Path(url.split("///", 1)[-1])
            from bench.journal import SQLITE_HEADER

            if db.is_file() and db.stat().st_size and db.open("rb").read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise ConfigError("--storage", f"{db} is not an SQLite database; refusing to write to it")
            if not create and missing_store(url):  # SQLAlchemy would create an empty database
                raise NoStore("--storage", f"no such store {db}")
            if not db.parent.is_dir():
                raise ConfigError("--storage", f"folder {db.parent} does not exist")
            setup_lock = contextlib.nullcontext()
        else:
            setup_lock = schema_lock(url)
        with setup_lock:
            try:
                storage = optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                    engine_kwargs={"pool_pre_ping": True},
                )
            except Exception as e:  # noqa: BLE001 -- any driver error means the storage cannot be used
                raise ConfigError("--storage", f"cannot open {redact(url)}: {first_line(e)}") from None
        lock = Path(url.split("///", 1)[-1] + ".claim-lock") if scheme == "sqlite" else None
        return cls(url, storage, lock)

    def check_writable(self) -> None:
        """ConfigError for a file store this process may not write (before any work starts)."""
        if self.lock_path is None:
            return
        path = Path(self.url.split("///", 1)[-1])
        if not os.access(path if path.exists() else path.parent, os.W_OK):
            raise ConfigError("--storage", f"{path} is read-only: the results store must be writable to run")

    @property
    def uses_heartbeats(self) -> bool:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        return is_heartbeat_enabled(self.storage)

    # -- studies -----------------------------------------------------------------------------------

    def study(self, name: str, directions: list[str] | None = None) -> Any:
        import optuna

        return optuna.create_study(
            study_name=name, storage=self.storage, load_if_exists=True, directions=directions or ["minimize"]
        )

    def existing_study(self, name: str) -> Any | None:
        import optuna

        names = [s.study_name for s in optuna.get_all_study_summaries(self.storage, include_best_trial=False)]
        if name not in names:
            return None
        return optuna.load_study(study_name=name, storage=self.storage)

    # -- the claim lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def claim_lock(self, key: str) -> Iterator[None]:
        """Only one claimer at a time, across processes (file lock) or machines (advisory lock)."""
        if self.lock_path is not None:
            try:
                f = open(self.lock_path, "a+")
            except OSError as e:
                message = f"cannot write beside the results store ({self.lock_path}): {e.strerror}"
                raise ConfigError("--storage", message) from None
            with f:
                wait_for_flock(f, self.lock_path)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            return
        with self.storage.engine.connect() as conn, advisory_lock(conn, key):
            yield

    def fail_stale(self, study: Any) -> None:
        """Fail RUNNING trials whose worker is gone; their runs become claimable again (a FAIL without
        a 'failed' status reads as 'interrupted').

        A worker on this machine is judged by whether its process still exists; one elsewhere (database
        storages) by its heartbeat. A RUNNING trial that names no worker and has no heartbeat (an orphan
        left by an older optbench, or by a bare `study.ask()`) is failed once it is GRACE_PERIOD old."""
        import optuna

        if self.uses_heartbeats:
            optuna.storages.fail_stale_trials(study)
        for t, _ in self.stale_claims(study):
            codec.write_stale(self.storage, codec.trial_id(self.storage, study, t))

    def stale_claims(self, study: Any) -> list[tuple[Any, str]]:
        """(RUNNING trial, why it has no live owner) for the claims fail_stale fails."""
        from optuna.trial import TrialState

        stale = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            alive = worker_alive(worker)
            if alive is False:
                stale.append((t, f"its worker (pid {worker['pid']}) is gone"))
                continue
            # a worker on another host is judged by heartbeats alone (a file storage has none to judge by)
            judged = alive is None and (not worker or self.uses_heartbeats)
            if judged and age_seconds(t.datetime_start) > GRACE_PERIOD and not self.has_heartbeat(study, t):
                who = "names no worker" if not worker else f"its worker on {worker.get('host')} never sent a heartbeat"
                stale.append((t, f"{who} and started {age_seconds(t.datetime_start):.0f} s ago"))
        return stale

    def has_heartbeat(self, study: Any, trial: Any) -> bool:
        """Whether a database storage holds a heartbeat for the trial (file storages have none)."""
        if not self.uses_heartbeats:
            return False
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        trial_id = codec.trial_id(self.storage, study, trial)
        with _create_scoped_session(self.storage.scoped_session) as session:
            return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None

    @contextlib.contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        """Beat for a running trial in a background thread (RDB storages), as study.optimize does."""
        if not self.uses_heartbeats:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):
                    self.storage.record_heartbeat(trial_id)
                if stop.wait(HEARTBEAT_INTERVAL):
                    return

        thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- writing results ---------------------------------------------------------------------------

    def create_running_trial(
        self, study: Any, user_attrs: dict[str, Any], params: dict[str, tuple[Any, Any]] | None = None
    ) -> int:
        """A claim, whole or absent (bench.codec.create_running_trial)."""
        return codec.create_running_trial(self.storage, study, user_attrs, params)

    def finish(
        self, trial_id: int, record: Any, values: list[float] | None, attrs: dict[str, Any] | None = None
    ) -> None:
        """Store a RunRecord in its claimed trial and close it (bench.codec.write_result)."""
        codec.write_result(self.storage, trial_id, record, values, attrs)


def wait_for_flock(f: Any, path: Path, quiet_seconds: float = 2.0) -> None:
    """flock(f), saying so when it takes more than a moment. The kernel frees a flock when its holder
    dies, so the wait lasts only as long as a live claimer holds it."""
    deadline = time.monotonic() + quiet_seconds
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    print(f"optbench: waiting for {path}: another live process is claiming a run", file=sys.stderr)
    fcntl.flock(f, fcntl.LOCK_EX)


@contextlib.contextmanager
def advisory_lock(conn: Any, key: str) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock named by `key`, held on `conn` (waits for other holders)."""
    from sqlalchemy import text

    lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}).scalar():
        # PostgreSQL frees the lock when its holder's connection closes: the wait lasts only while it lives
        print(f"optbench: waiting for the database lock '{key}': another live process holds it", file=sys.stderr)
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
    conn.commit()
    try:
        yield
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
        conn.commit()


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Connect briefly (an unreachable database is reported before anything is written) and hold the
    database's schema lock, so that only one process at a time creates or checks Optuna's tables."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5}, poolclass=sqlalchemy.NullPool)
        conn = engine.connect()
    except ModuleNotFoundError as e:
        hint = ' (pip install "optbench[postgres]" installs psycopg)' if "psycopg" in str(e) else ""
        raise ConfigError("--storage", f"no database driver for {redact(url)}: {e}{hint}") from None
    except Exception as e:  # noqa: BLE001
        raise ConfigError("--storage", f"cannot connect to {redact(url)}: {first_line(e)}") from None
    try:
        with conn, advisory_lock(conn, "optbench schema"):
            yield
    finally:
        engine.dispose()


def redact(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# -------------------------------------------------------------------------------------------------
# Reading results


def search_study_names(suite_name: str, url: str | None = None) -> list[str]:
    """The search studies of a suite: `<suite>.search`, and `<suite>.search.<arm>` per arm (--per-arm)."""
    import optuna

    store = Store.open(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(store.storage, include_best_trial=False)]
    prefix = f"{suite_name}.search"
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "."))


def load_results(study_name: str, url: str | None = None, with_curves: bool = True) -> Any:
    """One row per run of a study: run hash, seed, arm, status, metrics, attempts, config.* and env.*
    columns; a pandas-native frame (bench.frame; every column and its dtype: docs/results.md)."""
    from bench.frame import results_frame

    store = Store.open(url)
    study = store.existing_study(study_name)
    if study is None:
        return results_frame([], with_curves)
    latest = codec.latest_per_run(study.get_trials(deepcopy=False))
    rows = [
        row
        for run_hash, (t, attempts) in latest.items()
        for row in codec.trial_rows(run_hash, t, attempts, with_curves)
    ]
    frame = results_frame(rows, with_curves)  # none: a study whose trials name no run yet (killed mid-claim)
    return frame.sort_values("trial", kind="stable").reset_index(drop=True) if len(frame) else frame
