"""Ctrl-C and SIGTERM as one KeyboardInterrupt that never lands in the middle of a store write.

A worker stopped by `kill`, `timeout` or a batch scheduler must leave the store as Ctrl-C does: its
run marked interrupted, no claim half-written. Inside `deferred()` a stop signal is only noted, and
raised when the block ends; `allowed()` lifts the deferral for work that may stop anywhere (training,
waiting).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_deferring = 0
_pending = False


def _stop(signum: int, frame: Any) -> None:
    global _pending
    if _deferring:
        _pending = True
        return
    raise KeyboardInterrupt


def install() -> dict[int, Any]:
    """Route SIGINT and SIGTERM here; returns the handlers they had (none off the main thread, where
    signal handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}


def ignore() -> None:
    """A process that is stopping already: a second signal (Ctrl-C reaches a worker, then its runner's
    SIGTERM) would raise inside interpreter shutdown and print a traceback there."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def on_stop_signals() -> Iterator[None]:
    """SIGTERM stops the block as Ctrl-C does (KeyboardInterrupt); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a stop signal that arrives meanwhile is raised when it ends."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _pending:
        _pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_waiting() -> Iterator[Callable[[], None]]:
    """deferred() for a block that may wait on another process (a lock): yields `check`, which the wait
    calls often. `check` raises a stop noted meanwhile at once if the block was entered with stops allowed,
    so the wait stays as interruptible as its caller; the work around the wait is never cut."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None  # signal handlers run, and raise, only in the main thread
        return
    outer = _deferring

    def check() -> None:
        global _pending
        if not outer and _pending:
            _pending = False
            raise KeyboardInterrupt

    with deferred():
        yield check


def raise_pending() -> None:
    """Raise a stop noted meanwhile, even inside a deferred block: for waits between attempts of a write
    that failed whole (a database's rolled-back transaction), where stopping leaves nothing half-written."""
    global _pending
    if _pending and threading.current_thread() is threading.main_thread():
        _pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Inside a deferred block, let a stop signal interrupt this part at once (one noted already too)."""
    global _deferring, _pending
    saved, _deferring = _deferring, 0
    try:
        if _pending:
            _pending = False
            raise KeyboardInterrupt
        yield
    finally:
        _deferring = saved
