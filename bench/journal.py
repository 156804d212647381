"""Optuna's journal file, made crash-consistent (see REFERENCE.md, "Optuna's journal file, under crashes").

- Every append first checks, under the journal's own lock, that the file ends with a newline; a torn
  tail (what a kill or a full disk mid-append leaves) is moved to `<journal>.torn` and named on stderr,
  never glued onto. Without the lock a missing newline may be a live writer's append in progress.
- A corrupt record followed by good ones (a corrupt middle) is bad input: ConfigError naming the file
  and the line, not a JSONDecodeError traceback.
- The lock is Optuna's symlink lock (so plain Optuna clients still exclude us) on the absolute path,
  judged stale by the link's own mtime (lstat): a dangling link left by an older, relative lock is
  taken over after the grace period instead of spinning forever. A wait says why and for how long.
- Writes go through bench.faults, where the crash tests inject kills, torn writes and full disks.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from bench import faults
from bench.registry import ConfigError

# Seconds a journal lock may stay unchanged before it is judged left by a killed writer (an append
# takes milliseconds; Optuna's default is 30 s).
LOCK_GRACE = float(os.environ.get("OPTBENCH_LOCK_GRACE", "10"))
WAIT_NOTICE = 2.0  # seconds of waiting before saying so
TORN_SUFFIX = ".torn"
JOURNAL_PREFIX = b'{"op_code":'
SQLITE_HEADER = b"SQLite format 3\x00"


class StoreWriteError(ConfigError):
    """The store cannot be written (read-only, full disk): one line, exit 2, the store left readable."""


class JournalLock(JournalFileSymlinkLock):
    """Optuna's symlink lock on an absolute path, with a bounded, announced wait."""

    def __init__(self, journal: Path, grace: float | None = None) -> None:
        super().__init__(str(journal), grace_period=None)
        self.grace = LOCK_GRACE if grace is None else grace

    def acquire(self) -> bool:
        started = time.monotonic()
        announced = False
        seen: float | None = None  # the lock's mtime when first seen
        seen_at = started
        sleep = 0.001
        while True:
            try:
                os.symlink(self._lock_target_file, self._lock_file)
                return True
            except FileExistsError:
                pass
            try:
                mtime = os.lstat(self._lock_file).st_mtime  # lstat: a dangling link has an mtime too
            except FileNotFoundError:
                continue  # released meanwhile
            now = time.monotonic()
            if mtime != seen:
                seen, seen_at = mtime, now
            if now - seen_at > self.grace or time.time() - mtime > self.grace:  # unchanged that long
                print(
                    f"optbench: taking over the journal lock {self._lock_file}: unchanged for {self.grace:.0f} s, "
                    "left by a killed writer",
                    file=sys.stderr,
                )
                break_lock(Path(self._lock_file))
                continue
            if not announced and now - started > WAIT_NOTICE:
                print(
                    f"optbench: waiting for the journal lock {self._lock_file} (another writer holds it; "
                    f"taken over if unchanged for {self.grace:.0f} s)",
                    file=sys.stderr,
                )
                announced = True
            time.sleep(sleep)
            sleep = min(sleep * 2, 0.2)


def break_lock(lock: Path) -> None:
    """Remove a stale lock as Optuna releases one: rename first, so two breakers cannot both win."""
    moved = lock.with_name(f"{lock.name}.{os.getpid()}.{time.monotonic_ns()}.rename")
    try:
        os.rename(lock, moved)
    except FileNotFoundError:
        return
    moved.unlink(missing_ok=True)


class CheckedJournal(JournalFileBackend):
    """JournalFileBackend that repairs torn tails before appending and reports a corrupt middle."""

    def __init__(self, path: Path) -> None:
        path = Path(os.path.abspath(path))
        self.path = path
        try:
            super().__init__(str(path), lock_obj=JournalLock(path))
        except OSError as e:
            raise StoreWriteError("--storage", f"cannot create {path}: {e.strerror}") from None

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        try:
            for log in super().read_logs(log_number_from):
                if not isinstance(log, dict) or "op_code" not in log:
                    raise ValueError("not a journal record")
                yield log
        except ValueError:  # JSONDecodeError too: a bad record followed by good ones
            raise self.corrupt() from None

    def corrupt(self, replay_error: BaseException | None = None) -> ConfigError:
        """The error for a corrupt journal; `replay_error`: what Optuna raised replaying records that parse."""
        line, why = first_corrupt_line(self.path)
        if not line and replay_error is not None:  # every line is JSON: doctor finds nothing to move aside
            text = str(replay_error).strip().splitlines()
            what = f"{type(replay_error).__name__}: {text[0]}" if text else type(replay_error).__name__
            return ConfigError(
                "",
                f"the results store holds a record Optuna cannot replay ({what}); nothing was written. "
                "Move it aside to start a new store",
                str(self.path),
            )
        where = f"line {line} of the results store is corrupt ({why})" if line else "the results store is corrupt"
        return ConfigError(
            "",
            f"{where}; nothing was written. `optbench doctor --storage {self.path} --repair` moves it aside",
            str(self.path),
        )

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        try:
            with _locked(self._lock), open(self.path, "rb+") as f:
                repair_torn_tail(f, self.path)
                f.seek(0, os.SEEK_END)
                faults.write(f, data, "journal")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreWriteError(
                    "", f"cannot write the results store: {e.strerror}; finished runs are kept", str(self.path)
                ) from None
            raise


class _locked:
    def __init__(self, lock: JournalLock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        try:
            self.lock.release()
        except RuntimeError:  # taken over by another process after the grace period: nothing to release
            pass


def repair_torn_tail(f: Any, path: Path) -> int:
    """Make the journal end with a whole record (the caller holds the lock): a last line that is not a
    journal record (torn by a kill or a full disk, or garbage appended) is moved to `<path>.torn` and
    cut off; a whole record that only lacks its newline gets it. Returns the bytes moved aside."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    f.seek(size - 1)
    newline = f.read(1) == b"\n"
    end = size - 1 if newline else size
    start = end
    chunk = 1 << 16
    while start > 0:  # find the newline before the last line, reading backwards
        read_from = max(0, start - chunk)
        f.seek(read_from)
        block = f.read(start - read_from)
        nl = block.rfind(b"\n")
        if nl >= 0:
            start = read_from + nl + 1
            break
        start = read_from
    f.seek(start)
    last = f.read(end - start)
    if is_record(last):
        if not newline:  # whole but for its newline: keep it, nothing is lost
            f.seek(size)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        return 0
    torn = last + (b"\n" if newline else b"")
    torn_path = path.with_name(path.name + TORN_SUFFIX)
    with open(torn_path, "ab") as out:
        out.write(torn if newline else torn + b"\n")
        out.flush()
        os.fsync(out.fileno())
    f.truncate(start)
    f.flush()
    os.fsync(f.fileno())
    print(
        f"optbench: {path} ended in a broken record ({len(torn)} bytes, left by a killed or failed write); "
        f"moved it to {torn_path}",
        file=sys.stderr,
    )
    return len(torn)


def is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def first_corrupt_line(path: Path) -> tuple[int, str]:
    """(1-based line number, why) of the first record that is not JSON, or not a whole line, followed
    by more; (0, '') when there is none."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    # the last element is b"" when the file ends with a newline, else a torn tail (skippable)
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = json.loads(line)
        except ValueError as e:
            return number, f"not a JSON record: {str(e).splitlines()[0]}"
        if not isinstance(record, dict) or "op_code" not in record:
            return number, "not a journal record"
    return 0, ""


def sniff(path: Path) -> None:
    """Refuse (ConfigError, file untouched) a file that is not an Optuna journal before anything is
    written to it: an empty file or one that starts with a journal record passes."""
    if not path.exists():
        return
    if not path.is_file():
        raise ConfigError("--storage", f"{path} is not a file")
    try:
        with open(path, "rb") as f:
            block = f.read(1 << 16)
    except OSError as e:
        raise ConfigError("--storage", f"cannot read {path}: {e.strerror}") from None
    head = block[: len(JOURNAL_PREFIX)]
    if not head or head == JOURNAL_PREFIX or JOURNAL_PREFIX.startswith(head):
        return  # empty, a journal, or a journal torn inside its first record
    if b"\n" + JOURNAL_PREFIX in block:
        return  # a journal whose first line is corrupt: reading it says so, naming the line
    if head.startswith(SQLITE_HEADER[: len(head)]):
        raise ConfigError("--storage", f"{path} is an SQLite database: pass sqlite:///{path} to use it")
    raise ConfigError(
        "--storage", f"{path} is not an optbench results store (an Optuna journal); refusing to write to it"
    )
