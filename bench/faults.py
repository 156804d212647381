"""Fault injection at write boundaries, for the crash tests (tests/faults.py).

`OPTBENCH_FAULT=MODE:N` makes the N-th write of this process (journal appends, the checkpoint and report
files as their library writes them, and the temporary files of atomic writes before they replace their
target, counted together from 1) fail:
- `kill`: SIGKILL of the whole process group before the write (a crash between two writes);
- `torn`: part of the bytes written, then SIGKILL of the process group (a crash inside a write);
- `enospc`: part of the bytes written, then OSError(ENOSPC) (a full disk; inside torch.save, torch turns
  it into its own RuntimeError, as on a real full disk);
- `erofs`: OSError(EROFS) before anything is written (a read-only store, testable as root).
In a spawned worker process only (its runner is left alone, and writes of its own never fail):
- `raise`: a RuntimeError, as a library's own error that nothing expects (the worker dies of it);
- `segv`: SIGSEGV of the worker alone, as a crash in native code.
Without the variable every call is a plain write. `OPTBENCH_FAULT_COUNT=FILE` appends one line per
write boundary to FILE, so the harness learns how many boundaries a command has.

`OPTBENCH_FAULT=stop:POINT:N` stops this process (SIGSTOP: every thread, as a laptop's sleep, Ctrl-Z or a
paused VM does) the N-th time it reaches POINT (see `held`); whoever runs the test resumes it with SIGCONT,
or kills it there (a worker dying at a known point). The count file gets a line `held:POINT N` per point.
"""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import signal
from typing import Any, BinaryIO

from bench import settings

WORKER_MODES = ("raise", "segv")
_count = 0
_held: dict[str, int] = {}


def _plan() -> tuple[str, int] | None:
    spec = settings.get("OPTBENCH_FAULT")
    if not spec or spec.startswith("stop:"):
        return None
    mode, _, n = spec.partition(":")
    if mode in WORKER_MODES and multiprocessing.parent_process() is None:
        return None
    return mode, int(n)


def held(point: str) -> None:
    """A point where the crash tests may stop this process: where it holds a journal lock
    (`append:locked`, `append:checked`: the tail checked, the record not yet written, `append:written`: not
    yet synced, `doctor:snapshot`: the journal read for its repair, `doctor:rewritten`: the repaired copy
    written, not yet in place), or `store:write`, before each write to a database store."""
    n = _held[point] = _held.get(point, 0) + 1
    counter = settings.get("OPTBENCH_FAULT_COUNT")
    if counter:
        with open(counter, "a") as log:
            log.write(f"held:{point} {n}\n")
    if settings.get("OPTBENCH_FAULT") == f"stop:{point}:{n}":
        os.kill(os.getpid(), signal.SIGSTOP)


def _kill_group() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)  # not reached: the group includes this process


def _next(kind: str, data: bytes = b"") -> tuple[str, int] | None:
    """Count a write boundary (logging it); the fault planned for it, if any."""
    global _count
    _count += 1
    counter = settings.get("OPTBENCH_FAULT_COUNT")
    if counter:
        if data.startswith(b'{"op_code":'):  # which journal operation (see optuna's JournalOperation)
            kind += ":" + data[11 : data.index(b",")].decode()
        with open(counter, "a") as log:
            log.write(f"{_count} {kind}\n")
    plan = _plan()
    return plan if plan is not None and plan[1] == _count else None


def _before(mode: str) -> None:
    """The faults that strike before anything is written."""
    if mode == "erofs":
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    if mode == "kill":
        _kill_group()
    if mode == "raise":
        raise RuntimeError("injected: a library's own error that nothing expects (OPTBENCH_FAULT=raise)")
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)


def boundary(kind: str) -> None:
    """A write boundary that writes nothing itself (e.g. before a temporary file replaces its target)."""
    write(None, b"", kind)


def write(f: BinaryIO | None, data: bytes, kind: str) -> None:
    """f.write(data), or the fault planned for this boundary."""
    plan = _next(kind, data)
    if plan is not None:
        mode = plan[0]
        _before(mode)
        if mode in ("torn", "enospc") and f is not None:
            f.write(data[: len(data) // 2])
            f.flush()
        if mode == "torn":
            _kill_group()
        if mode == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if f is not None:
        f.write(data)


def stream(f: BinaryIO, kind: str) -> Any:
    """The file a library writes one file to (torch.save, the report): `f`, or one that fails as planned for
    this write boundary, part way through, as a full disk or a crash does."""
    plan = _next(kind)
    if plan is None:
        return f
    _before(plan[0])
    return _Failing(f, plan[0])


class _Failing(io.RawIOBase):
    """Takes PART bytes, then fails the write as `mode` says (ENOSPC, or SIGKILL of the process group)."""

    PART = 64

    def __init__(self, f: BinaryIO, mode: str) -> None:
        super().__init__()
        self.f, self.mode, self.left = f, mode, self.PART

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) <= self.left:
            self.left -= len(data)
            self.f.write(data)
            return len(data)
        self.f.write(data[: self.left])
        self.f.flush()
        if self.mode == "torn":
            _kill_group()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
