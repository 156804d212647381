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

Whether a worker is gone. Beside a file store every claiming process holds a kernel flock on a file of its
own, `<store>.alive/<token>`, for its whole life, and names the token in its claims: the kernel frees the
flock when the process dies, however (SIGKILL, a crash), and never while it lives, even paused, so a claim
is stale exactly when its flock can be taken. This holds across PID namespaces on one host, where the
worker's pid and start time (the fallback for claims that name no token) mean nothing: containers sharing
the host's network have its hostname. A database store judges by heartbeats (a worker elsewhere may be
paused, or cut off, and looks the same); its pid only within the judge's own PID namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import codec, database, settings
from bench.database import redact
from bench.errors import StoreUnreachable
from bench.registry import ConfigError

DEFAULT_STORAGE_FILE = "optbench.journal"
PENDING = "pending"  # results/pending/: finished results waiting for a database store (Store.finish)


def heartbeat_interval() -> int:
    """Seconds between heartbeats of a running trial (database storages)."""
    return settings.get("OPTBENCH_HEARTBEAT_INTERVAL")


def grace_period() -> int:
    """Seconds without a heartbeat after which a running trial is stale."""
    return settings.get("OPTBENCH_GRACE_PERIOD")


class NoStore(ConfigError):
    """A store that a read-only command was to read does not exist (reading never creates one)."""


def default_storage_url() -> str:
    return str(settings.get("OPTBENCH_RESULTS_DIR") / DEFAULT_STORAGE_FILE)


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
    """Who claims: host, pid and start time, and the boot and PID namespace that make a pid mean something."""
    from bench.journal import this_process

    me = this_process()
    return {key: me[key] for key in ("host", "pid", "start", "boot", "pidns")}


ALIVE_SUFFIX = ".alive"
_TOKEN = re.compile(r"[A-Za-z0-9][\w.-]{0,200}")  # a token read from a store names a file in the folder, no more
_alive: dict[str, tuple[int, str, int]] = {}  # folder -> (pid, token, fd) of this process's liveness lock


def liveness_token(folder: Path) -> str | None:
    """This process's liveness lock in `folder`, taken on first use and held until it exits: the token that
    names it (None where the folder cannot be written: claims are then judged by pid)."""
    held = _alive.get(str(folder))
    if held and held[0] == os.getpid():
        return held[1]
    token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if not _TOKEN.fullmatch(token):
        token = f"worker-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # a hostname no file name can hold
    try:
        folder.mkdir(exist_ok=True)
        new = folder / f".{token}.new"  # locked before it gets its name: a judge never sees it unlocked
        fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(new, folder / token)
    except OSError:
        return None
    _alive[str(folder)] = (os.getpid(), token, fd)
    atexit.register(lambda: (folder / token).unlink(missing_ok=True))  # a clean exit leaves nothing behind
    return token


def liveness_held(folder: Path, token: Any) -> bool:
    """Whether the process that took liveness lock `token` lives; a lock whose holder is gone is removed."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return False
    path = folder / token
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    return False


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
    """By its pid: True or False for a worker of this host, boot and PID namespace; None when its pid means
    nothing here (another host, or another PID namespace of this one: only heartbeats, or its liveness lock,
    can tell)."""
    from bench.journal import this_process

    if not worker or worker.get("host") != socket.gethostname():
        return None
    me = this_process()
    if worker.get("boot") and worker["boot"] != me["boot"]:
        return False  # this machine restarted since
    if worker.get("pidns") and worker["pidns"] != me["pidns"]:
        return None
    start = process_start_time(int(worker["pid"]))
    return start is not None and start == worker.get("start")


@dataclass
class Store:
    url: str
    storage: Any  # optuna.storages.BaseStorage
    lock_path: Path | None  # file lock for file storages; None: PostgreSQL advisory lock

    @classmethod
    def open(cls, url: str | None = None, create: bool = True, patient: bool = False) -> Store:
        """Open (creating a file storage if needed). An unreachable database is bad input: ConfigError, unless
        `patient` (a command's workers, once the command reached the database): then it is waited for, as
        every call to it is (bench.database). create=False (commands that only read): a missing file store
        is NoStore, and nothing is created."""
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
        if scheme == "postgresql" and heartbeat_interval() >= grace_period():
            raise ConfigError(
                "OPTBENCH_HEARTBEAT_INTERVAL",
                f"must be below OPTBENCH_GRACE_PERIOD ({heartbeat_interval()} >= {grace_period()}): a live worker "
                "would be judged gone between two heartbeats",
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
        engine = {"pool_pre_ping": True}  # a connection the server dropped is replaced, not used
        if scheme == "postgresql":
            engine["connect_args"] = {"connect_timeout": 5}

        def connect() -> Any:
            with contextlib.nullcontext() if scheme == "sqlite" else schema_lock(url, patient):
                try:
                    return database.open_storage(url, redact(url), heartbeat_interval=heartbeat_interval(),
                                                 grace_period=grace_period(), engine_kwargs=engine)  # fmt: skip
                except Exception as e:  # noqa: BLE001 -- any driver error means the storage cannot be used
                    if database.transient(e):  # connected, then lost: waited out below
                        raise
                    raise ConfigError("--storage", f"cannot open {redact(url)}: {first_line(e)}") from None

        # a database that cannot be reached at all is bad input (schema_lock), unless it was reached before
        # (`patient`); one lost once reached is waited for either way
        storage = database.outlast(database.Outages(redact(url)), connect)
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
    def alive_dir(self) -> Path | None:
        """Where the liveness locks of a file store's workers are (None for a database store)."""
        if self.lock_path is None:
            return None
        return self.lock_path.with_name(self.lock_path.name.removesuffix(".claim-lock") + ALIVE_SUFFIX)

    def worker(self) -> dict[str, Any]:
        """This process as a claim names it: this_worker(), and beside a file store its liveness lock."""
        me = this_worker()
        if self.alive_dir is not None and (token := liveness_token(self.alive_dir)):
            me["alive"] = token
        return me

    def worker_alive(self, worker: dict[str, Any] | None) -> bool | None:
        """True or False when this process can tell whether a claim's worker lives, else None."""
        if worker and worker.get("alive") and self.alive_dir is not None and worker.get("host") == socket.gethostname():
            return liveness_held(self.alive_dir, worker["alive"])
        return worker_alive(worker)

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
        with self.storage.outlast(lambda: database_lock(self.storage.engine, key)) as held:
            yield held

    def fail_stale(self, study: Any) -> None:
        """Fail RUNNING trials whose worker is gone; their runs become claimable again (a FAIL without
        a 'failed' status reads as 'interrupted').

        A worker on this machine is judged by whether its process still exists; one elsewhere (database
        storages) by its heartbeat. A RUNNING trial that names no worker and has no heartbeat (an orphan
        left by an older optbench, or by a bare `study.ask()`) is failed once it is grace_period() old.
        No heartbeat is judged while heartbeats may have been missed for the database's sake (heartbeats_settled)."""
        import optuna

        if self.uses_heartbeats and self.heartbeats_settled():
            optuna.storages.fail_stale_trials(study)
        for t, why in self.stale_claims(study):
            gone = why.startswith("its worker (pid") and why.endswith("is gone")  # certain, not a missed heartbeat
            codec.write_stale(self.storage, codec.trial_id(self.storage, study, t), why if gone else None)
        if self.alive_dir is not None and self.alive_dir.is_dir():  # the locks dead workers left
            for entry in os.listdir(self.alive_dir):
                if not entry.startswith("."):
                    liveness_held(self.alive_dir, entry)

    def stale_claims(self, study: Any) -> list[tuple[Any, str]]:
        """(RUNNING trial, why it has no live owner) for the claims fail_stale fails."""
        from optuna.trial import TrialState

        stale = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            alive = self.worker_alive(worker)
            if alive is False:
                stale.append((t, f"its worker (pid {worker.get('pid')}) is gone"))
                continue
            # a worker on another host is judged by heartbeats alone (a file storage has none to judge by)
            judged = alive is None and (not worker or self.uses_heartbeats)
            judged = judged and (not self.uses_heartbeats or self.heartbeats_settled())
            if judged and age_seconds(t.datetime_start) > grace_period() and not self.has_heartbeat(study, t):
                who = "names no worker" if not worker else f"its worker on {worker.get('host')} never sent a heartbeat"
                stale.append((t, f"{who} and started {age_seconds(t.datetime_start):.0f} s ago"))
        return stale

    def heartbeats_settled(self) -> bool:
        """Whether missing heartbeats mean missing workers: not while this process meets an outage of the
        database or met one in the last grace period, nor within a grace period of the server's start (a
        restart: every worker's beats stopped with it, and resume only as they reconnect)."""
        window = grace_period() + heartbeat_interval()
        if self.storage.outages.recent(window):
            return False
        if not self.url.startswith("postgresql"):
            return True
        from sqlalchemy import text

        uptime = text("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())")

        def started() -> float:
            with self.storage.engine.connect() as conn:
                return float(conn.execute(uptime).scalar())

        return self.storage.outlast(started) >= window

    def has_heartbeat(self, study: Any, trial: Any) -> bool:
        """Whether a database storage holds a heartbeat for the trial (file storages have none)."""
        if not self.uses_heartbeats:
            return False
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        trial_id = codec.trial_id(self.storage, study, trial)

        def held() -> bool:
            with _create_scoped_session(self.storage.scoped_session) as session:
                return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None

        return self.storage.outlast(held)

    @contextlib.contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        """Beat for a running trial in a background thread (RDB storages), as study.optimize does."""
        if not self.uses_heartbeats:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception), database.impatient():  # missed beats: the next one comes
                    self.storage.record_heartbeat(trial_id)
                if stop.wait(heartbeat_interval()):
                    return

        thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fence(self, study: Any, trial_id: int, run_hash: str | None = None) -> bool:
        """After a claim (trial_id) on a database store: False when it must back off. A claim whose lock
        was lost with its connection, or that a retried call created twice (its first answer lost), may
        stand beside another: of two running claims of one run the older wins; a claim of this worker
        that is not the one just made is an orphan of such a retry, and is failed."""
        if self.lock_path is not None:
            return True  # a file store's claim lock is the kernel's: never lost
        from optuna.trial import TrialState

        me = this_worker()
        mine = self.storage.get_trial_number_from_id(trial_id)
        keep = True
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
            worker = t.user_attrs.get("worker") or {}
            if t.number == mine:
                continue
            if t.state == TrialState.RUNNING and all(worker.get(k) == me[k] for k in ("host", "pid", "start")):
                codec.write_stale(self.storage, codec.trial_id(self.storage, study, t))  # an orphan of ours
            elif run_hash is not None and t.user_attrs.get("run_hash") == run_hash:
                keep = keep and t.number > mine and t.state == TrialState.RUNNING
        if not keep:
            codec.write_stale(self.storage, trial_id)
        return keep

    # -- writing results ---------------------------------------------------------------------------

    def create_running_trial(
        self, study: Any, user_attrs: dict[str, Any], params: dict[str, tuple[Any, Any]] | None = None
    ) -> int:
        """A claim, whole or absent (bench.codec.create_running_trial)."""
        return codec.create_running_trial(self.storage, study, user_attrs, params)

    def finish(
        self, trial_id: int, record: Any, values: list[float] | None, attrs: dict[str, Any] | None = None
    ) -> None:
        """Store a RunRecord in its claimed trial and close it (bench.codec.write_result). For a database
        store the result is kept on local disk first (pending_path) and removed once stored: a database that
        stays away past OPTBENCH_DB_RETRY, or a kill meanwhile, leaves it there for flush_pending."""
        if self.lock_path is not None:  # a file store: the local disk is the store
            codec.write_result(self.storage, trial_id, record, values, attrs)
            return
        import optuna

        from bench.files import atomic_path

        path = self.pending_path(trial_id)
        kept = {"store": redact(self.url), "trial_id": trial_id, "record": record.to_dict(), "values": values,
                "attrs": attrs}  # fmt: skip
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(kept))
        try:
            codec.write_result(self.storage, trial_id, record, values, attrs)
        except StoreUnreachable as e:
            raise StoreUnreachable(f"{e}; the result of trial {trial_id} is kept in {path} and is stored by the "
                                   "next `optbench run` or `optbench search` on this store") from None  # fmt: skip
        except optuna.exceptions.UpdateFinishedTrialError:
            path.unlink(missing_ok=True)  # its claim was taken: the caller drops the result, saying so
            raise
        path.unlink(missing_ok=True)

    def pending_path(self, trial_id: int) -> Path:
        """Where a finished result waits for this database store (results/pending/<store>-<trial id>.json)."""
        from bench.checkpoint import results_dir

        key = hashlib.sha256(redact(self.url).encode()).hexdigest()[:12]
        return results_dir() / PENDING / f"{key}-{trial_id}.json"

    def flush_pending(self) -> list[str]:
        """Store the results this store's workers kept on local disk while it was away (finish), one line
        each of what became of it: stored in its trial; stored as a new trial where its claim was failed
        meanwhile and no other trial of its run finished; dropped where one did."""
        import optuna

        from bench.train import RunRecord

        if self.lock_path is not None:
            return []
        said = []
        for path in sorted(self.pending_path(0).parent.glob(self.pending_path(0).name.replace("-0.json", "-*.json"))):
            try:
                kept = json.loads(path.read_text())
                record = RunRecord.from_dict(kept["record"])
                trial_id = int(kept["trial_id"])
            except (OSError, ValueError, KeyError, TypeError):
                said.append(f"{path} is not a kept result; left as it is")
                continue
            try:
                codec.write_result(self.storage, trial_id, record, kept["values"], kept["attrs"])
                said.append(f"stored the result of trial {trial_id}, kept in {path} while the database was away")
            except optuna.exceptions.UpdateFinishedTrialError:
                said.append(self.store_late(trial_id, record, kept["values"], kept["attrs"]) + f" (kept in {path})")
            path.unlink(missing_ok=True)
        return said

    def store_late(self, trial_id: int, record: Any, values: Any, attrs: Any) -> str:
        """A kept result whose claim was failed meanwhile: a trial of its own unless its run finished since."""
        claim = self.storage.get_trial(trial_id)
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        def study_id() -> int:
            with _create_scoped_session(self.storage.scoped_session) as session:
                return models.TrialModel.find_or_raise_by_id(trial_id, session).study_id

        study = self.study(self.storage.get_study_name_from_id(self.storage.outlast(study_id)))
        run_hash = (attrs or {}).get("run_hash") or claim.user_attrs.get("run_hash") or record.config_hash
        done = codec.latest_per_run(study.get_trials(deepcopy=False)).get(run_hash)
        if done and codec.trial_status(done[0]) in codec.FINISHED:
            return f"dropped the result of trial {trial_id}: its run finished in trial {done[0].number} meanwhile"
        study.add_trial(codec.late_trial(claim, record, values, attrs))
        return f"stored the result of trial {trial_id} as a new trial: its claim had been failed meanwhile"


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


def database_lock(engine: Any, key: str) -> Any:
    """advisory_lock(key) held on a connection of its own, taken now (bench.database retries this whole when
    the connection is lost on the way): a context manager that lets it go. Losing the connection while it is
    held frees the lock; bench.runner's fence keeps a run from being claimed twice even then."""
    stack = contextlib.ExitStack()
    try:
        conn = stack.enter_context(engine.connect())
        stack.enter_context(advisory_lock(conn, key))
    except BaseException:
        with contextlib.suppress(Exception):
            stack.close()
        raise
    return _Held(stack)


class _Held:
    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(Exception):  # a connection lost meanwhile: the server freed the lock with it
            self.stack.close()


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
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
            conn.commit()
        except Exception as e:  # noqa: BLE001 -- a connection lost meanwhile took the lock with it
            if not database.transient(e):
                raise


@contextlib.contextmanager
def schema_lock(url: str, patient: bool = False) -> Iterator[None]:
    """Connect briefly (an unreachable database is reported before anything is written, unless `patient`:
    then the error is left to bench.database to wait out) and hold the database's schema lock, so that only
    one process at a time creates or checks Optuna's tables."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5}, poolclass=sqlalchemy.NullPool)
        conn = engine.connect()
    except ModuleNotFoundError as e:
        hint = ' (pip install "optbench[postgres]" installs psycopg)' if "psycopg" in str(e) else ""
        raise ConfigError("--storage", f"no database driver for {redact(url)}: {e}{hint}") from None
    except Exception as e:  # noqa: BLE001
        if patient and database.transient(e):
            raise
        raise ConfigError("--storage", f"cannot connect to {redact(url)}: {first_line(e)}") from None
    try:
        with conn, advisory_lock(conn, "optbench schema"):
            yield
    finally:
        engine.dispose()


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
