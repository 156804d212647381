"""A database store that outlasts a lost connection: Optuna's RDBStorage whose calls wait for the database.

A call that fails for a reason of the connection (the server stopped or restarted, a backend terminated,
the network gone) is retried with backoff (0.5 s doubling to 8 s) for up to OPTBENCH_DB_RETRY seconds
(default 300), said once per outage and once when the database is back; past that it raises
StoreUnreachable (the command exits 3). A failed call's transaction was rolled back, so trying it again
writes it once, with two exceptions handled here: a state change that committed before its answer was lost
reads back as done; a trial created twice that way is the caller's to find (bench.runner fences claims).

Calls made inside another (Optuna's methods call each other) are retried by the outermost. `impatient()`
lets a thread make calls that fail at once instead, after one more try on a fresh connection (a progress
display, heartbeats: they try again later anyway). Ctrl-C or SIGTERM stops a wait between attempts.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from optuna.storages import RDBStorage

from bench import interrupts, settings
from bench.errors import StoreUnreachable

FIRST_WAIT, LONGEST_WAIT = 0.5, 8.0
_local = threading.local()  # depth: patient calls in progress on this thread; impatient: fail at once


def transient(e: BaseException) -> bool:
    """Whether an error (or one it was raised from) is the connection's, not the call's."""
    import sqlalchemy.exc

    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError | ConnectionError):
            return True
        if isinstance(e, sqlalchemy.exc.DisconnectionError | sqlalchemy.exc.TimeoutError):
            return True
        if type(e).__module__.startswith("psycopg") and type(e).__name__ in ("OperationalError", "InterfaceError"):
            return True
        # `raise X from None` says X is the whole story: its suppressed context (a driver's error that was
        # already judged, e.g. "cannot connect" as bad input) is not followed
        e, seen = e.__cause__ or (None if e.__suppress_context__ else e.__context__), seen + 1
    return False


def redact(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def first_line(e: BaseException) -> str:
    while (e.__cause__ or e.__context__) is not None and type(e).__module__.startswith("optuna"):
        e = e.__cause__ or e.__context__  # Optuna's wrapper says "invalid data"; the driver says what happened
    text = str(e).strip().splitlines()
    line = re.sub(r"^\([\w.]+\) ", "", text[0]) if text else type(e).__name__  # SQLAlchemy's "(psycopg.X) "
    return line[:160]


@contextlib.contextmanager
def impatient() -> Iterator[None]:
    """Calls on this thread fail at once on a lost connection (the caller skips and tries again later)."""
    saved = getattr(_local, "impatient", False)
    _local.impatient = True
    try:
        yield
    finally:
        _local.impatient = saved


class Outages:
    """One store's outages as this process sees them: said once when one starts and once when it ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None  # monotonic time the current outage was first met
        self.ended: float | None = None  # monotonic time the last one ended
        self.lock = threading.Lock()

    def met(self, e: BaseException) -> float:
        """Note a failed attempt; the seconds the outage has lasted."""
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
                print(f"optbench: lost the database {self.name} ({first_line(e)}); retrying for up to "
                      f"{settings.get('OPTBENCH_DB_RETRY'):g} s (OPTBENCH_DB_RETRY)", file=sys.stderr)  # fmt: skip
            return time.monotonic() - self.since

    def over(self) -> None:
        with self.lock:
            if self.since is not None:
                print(f"optbench: the database {self.name} is back after {time.monotonic() - self.since:.0f} s",
                      file=sys.stderr)  # fmt: skip
                self.since, self.ended = None, time.monotonic()

    def recent(self, window: float) -> bool:
        """Whether an outage is going on or ended less than `window` seconds ago."""
        return self.since is not None or (self.ended is not None and time.monotonic() - self.ended < window)


def outlast(outages: Outages, call: Callable[[], Any], check: Callable[[BaseException], Any] | None = None) -> Any:
    """call(), tried again while it fails for the connection's sake, up to OPTBENCH_DB_RETRY seconds.
    `check(e)`, after a retried attempt raised e: a value to return instead (the earlier attempt's commit
    did land), or None to raise e."""
    if getattr(_local, "depth", 0):
        return call()  # inside a patient call: the outermost one retries
    _local.depth = 1
    wait, retried, fresh = FIRST_WAIT, False, False
    try:
        while True:
            try:
                result = call()
            except Exception as e:
                if retried and check is not None and not transient(e):
                    try:
                        done = check(e)
                    except Exception:  # noqa: BLE001 -- the check could not tell: e stands
                        done = None
                    if done is not None:
                        outages.over()
                        return done
                if not transient(e):
                    raise
                if getattr(_local, "impatient", False):
                    if fresh:
                        raise
                    # the pool dropped the dead connection: one try on a fresh one, at once (else a heartbeat
                    # that always meets a connection a restart or a pooler killed since its last use never lands)
                    fresh = True
                    continue
                lasted = outages.met(e)
                bound = settings.get("OPTBENCH_DB_RETRY")
                if lasted >= bound:
                    raise StoreUnreachable(
                        f"the database {outages.name} stayed unreachable for {lasted:.0f} s ({first_line(e)})"
                    ) from None
                deadline = time.monotonic() + min(wait, bound - lasted)
                while time.monotonic() < deadline:
                    interrupts.raise_pending()  # the attempt was rolled back whole: safe to stop here
                    time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                wait, retried = min(wait * 2, LONGEST_WAIT), True
                continue
            outages.over()
            return result
    finally:
        _local.depth = 0


# RDBStorage's methods that talk to the database, retried whole
PATIENT = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial", "get_all_trials",
    "get_n_trials", "get_best_trial", "record_heartbeat", "_get_stale_trial_ids", "check_trial_is_updatable",
    # what Optuna's _CachedStorage, which every Study puts in front of an RDBStorage, calls directly
    "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials",
)  # fmt: skip


class PatientStorage(RDBStorage):
    """RDBStorage whose calls outlast a lost connection (module docstring). Pickles as RDBStorage does."""

    outages: Outages

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("outages", None)  # holds a lock; a copy starts with no outage
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.outages = Outages(redact(str(self.url)))

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        def landed(e: BaseException) -> bool | None:
            import optuna

            if isinstance(e, optuna.exceptions.UpdateFinishedTrialError) and self.get_trial(trial_id).state == state:
                return True  # the attempt whose answer was lost had committed it
            return None

        return outlast(self.outages, lambda: RDBStorage.set_trial_state_values(self, trial_id, state, values), landed)

    def outlast(self, call: Callable[[], Any]) -> Any:
        return outlast(self.outages, call)


def _patient(name: str) -> Callable:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return outlast(self.outages, lambda: method(self, *args, **kwargs))

    return call


for _name in PATIENT:
    if hasattr(RDBStorage, _name):
        setattr(PatientStorage, _name, _patient(_name))


def open_storage(url: str, name: str, **kwargs: Any) -> PatientStorage:
    """PatientStorage on `url` (`name`: the URL as messages show it, without its password)."""
    storage = PatientStorage(url, **kwargs)
    storage.outages = Outages(name)
    return storage
