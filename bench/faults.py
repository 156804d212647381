"""Fault injection at the store's write boundaries, for the crash tests (tests/faults.py).

`OPTBENCH_FAULT=MODE:N` makes the N-th write of this process (journal appends and the temporary
files of atomic writes, counted together from 1) fail:
- `kill`: SIGKILL of the whole process group before the write (a crash between two writes);
- `torn`: half of the bytes written, then SIGKILL of the process group (a crash inside a write);
- `enospc`: half of the bytes written, then OSError(ENOSPC) (a full disk);
- `erofs`: OSError(EROFS) before anything is written (a read-only store, testable as root).
Without the variable every call is a plain write. `OPTBENCH_FAULT_COUNT=FILE` appends one line per
write boundary to FILE, so the harness learns how many boundaries a command has.

`OPTBENCH_FAULT=stop:POINT:N` stops this process (SIGSTOP: every thread, as a laptop's sleep, Ctrl-Z or a
paused VM does) the N-th time it reaches the lock-held point POINT (see `held`); whoever runs the test
resumes it with SIGCONT. The count file gets a line `held:POINT N` per point reached.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import BinaryIO

_count = 0
_held: dict[str, int] = {}


def _plan() -> tuple[str, int] | None:
    spec = os.environ.get("OPTBENCH_FAULT")
    if not spec or spec.startswith("stop:"):
        return None
    mode, _, n = spec.partition(":")
    return mode, int(n)


def held(point: str) -> None:
    """A point where this process holds a journal lock: `append:locked`, `append:checked` (the tail
    checked, the record not yet written), `append:written` (not yet synced), `doctor:snapshot` (the
    journal read for its repair), `doctor:rewritten` (the repaired copy written, not yet in place)."""
    n = _held[point] = _held.get(point, 0) + 1
    counter = os.environ.get("OPTBENCH_FAULT_COUNT")
    if counter:
        with open(counter, "a") as log:
            log.write(f"held:{point} {n}\n")
    if os.environ.get("OPTBENCH_FAULT", "") == f"stop:{point}:{n}":
        os.kill(os.getpid(), signal.SIGSTOP)


def _kill_group() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)  # not reached: the group includes this process


def boundary(kind: str) -> None:
    """A write boundary that writes nothing itself (e.g. before a temporary file replaces its target)."""
    write(None, b"", kind)


def write(f: BinaryIO | None, data: bytes, kind: str) -> None:
    """f.write(data), or the fault planned for this boundary."""
    global _count
    _count += 1
    counter = os.environ.get("OPTBENCH_FAULT_COUNT")
    if counter:
        if data.startswith(b'{"op_code":'):  # which journal operation (see optuna's JournalOperation)
            kind += ":" + data[11 : data.index(b",")].decode()
        with open(counter, "a") as log:
            log.write(f"{_count} {kind}\n")
    plan = _plan()
    if plan is not None and plan[1] == _count:
        mode = plan[0]
        if mode == "erofs":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if mode in ("torn", "enospc") and f is not None:
            f.write(data[: len(data) // 2])
            f.flush()
        if mode in ("kill", "torn"):
            _kill_group()
        if mode == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if f is not None:
        f.write(data)
