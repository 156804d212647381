"""Optuna's journal file, made crash-consistent (what that means for a user: docs/reliability.md).

The lock. An append holds, in this order:
- a kernel `flock` on `<journal>.write-lock`: the mutual exclusion among optbench processes. The kernel
  frees it when its holder dies (whatever its PID namespace) and never while a paused holder lives, so
  it needs no grace period. The holder writes who it is into the file (host, boot id, pid, the process's
  start time, its PID namespace, since when, its command) for a waiter's message and for `doctor`;
- Optuna's symlink lock `<journal>.lock` on the absolute path, so plain Optuna clients are excluded too.
  A symlink that the previous flock holder recorded as its own is broken at once (holding the flock
  proves that holder gone); any other symlink (a plain Optuna client's, or an older optbench's) is left
  to Optuna's rule: taken over once unchanged for OPTBENCH_LOCK_GRACE seconds.

Appends open the journal with O_APPEND (no seek-then-write), and check that the lock is still theirs
(the lock file not replaced, the symlink not broken by a plain Optuna client) before cutting a torn tail
and before writing; a writer that lost it starts over. A torn tail (what a kill or a full disk
mid-append leaves) is moved to `<journal>.torn` and named on stderr, never glued onto.

The users. Every process that opens a journal store holds a shared flock on `<journal>.users-lock` for
its lifetime: Optuna's readers cache byte offsets into the file, so `doctor --repair` rewrites a journal
(os.replace) only under the exclusive one, when no other process has the store open.

A record is a JSON object with an `op_code`, nested at most MAX_DEPTH deep; any other line (not JSON, too
deep for json to read, or deeper than optbench ever writes) followed by more lines is a corrupt middle:
ConfigError naming the file and the line. Writes go through bench.faults, where the crash tests inject
kills, torn writes, full disks and pauses (SIGSTOP at the lock-held points).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import itertools
import json
import multiprocessing
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock

from bench import faults, interrupts, settings
from bench.registry import ConfigError

# Seconds (default 10, bench.settings) a symlink lock that no optbench process recorded may stay unchanged
# before it is judged left by a killed plain Optuna client (Optuna's own rule; its default is 30 s). optbench
# holders are judged by their flock alone, so no value of it can let two optbench writers in at once.
GRACE_VARIABLE = "OPTBENCH_LOCK_GRACE"
WAIT_NOTICE = 2.0  # seconds of waiting before saying so
MAX_DEPTH = 64  # nesting of a journal record; optbench's are under 10 deep, json itself fails near 1000
TORN_SUFFIX = ".torn"
WRITE_LOCK_SUFFIX = ".write-lock"
USERS_LOCK_SUFFIX = ".users-lock"
SYMLINK_SUFFIX = ".lock"  # Optuna's
RECORD_SIZE = 512  # the holder record, padded: rewriting it in place never needs a new block (a full disk)
JOURNAL_PREFIX = b'{"op_code":'
SQLITE_HEADER = b"SQLite format 3\x00"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class StoreWriteError(ConfigError):
    """The store cannot be written (read-only, full disk): one line, exit 2, the store left readable."""


class LockLost(Exception):
    """This process's journal lock was taken from it (its lock file replaced, or its symlink broken by a
    plain Optuna client after Optuna's grace period): nothing may be cut or written under it."""


def lock_grace() -> float:
    """OPTBENCH_LOCK_GRACE, validated: ConfigError naming it unless a finite number of seconds >= 1."""
    return settings.get(GRACE_VARIABLE)


# -- who holds a lock ------------------------------------------------------------------------------------


def _read_first(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


_identity: dict[str, Any] = {}


def this_process() -> dict[str, Any]:
    """Who this process is, in terms that stay true across PID namespaces and reboots (read once per
    process; a forked child reads its own)."""
    if _identity.get("pid") != os.getpid():
        _identity.clear()
        _identity.update(_identify())
    return dict(_identity)


def _identify() -> dict[str, Any]:
    # /proc/self, not /proc/<pid>: in another PID namespace os.getpid() is not this process's number in
    # the mounted /proc
    try:
        start = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = None
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    if multiprocessing.parent_process() is not None:
        command = f"a worker of pid {os.getppid()}"
    else:
        argv = list(sys.argv)
        program = Path(argv[0]).name if argv else "python"
        if program in ("__main__.py", "optbench"):
            program = "optbench"
        elif program in ("-c", "-m"):
            program = f"python {program}"
        command = " ".join([program, *argv[1:]])
    return {
        "host": socket.gethostname(),
        "boot": _read_first("/proc/sys/kernel/random/boot_id"),
        "pid": os.getpid(),
        "start": start,
        "pidns": pidns,
        "command": command[:120],
    }


def describe(holder: dict[str, Any] | None) -> str:
    """'pid 12 (`optbench run s.toml`) since 10:04:05 (31 s)', plus where, when not here."""
    if not holder or "pid" not in holder:
        return "an optbench process that has not yet said who it is"
    me = this_process()
    where = ""
    if holder.get("host") != me["host"]:
        where = f" on host {holder.get('host')}"
    elif holder.get("boot") != me["boot"]:
        where = " before this machine's last reboot"
    elif holder.get("pidns") != me["pidns"]:
        where = f" in another PID namespace ({holder.get('pidns')})"
    since = ""
    if isinstance(holder.get("since"), int | float):
        clock = datetime.datetime.fromtimestamp(holder["since"]).strftime("%H:%M:%S")
        since = f" since {clock} ({max(0.0, time.time() - holder['since']):.0f} s)"
    return f"pid {holder['pid']} (`{holder.get('command', '?')}`){where}{since}"


def read_holder(fd: int) -> dict[str, Any] | None:
    """The holder record in a write-lock file (None: empty, released, or caught mid-rewrite)."""
    try:
        data = os.pread(fd, RECORD_SIZE * 2, 0)
        record = json.loads(data.strip() or b"null")
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def holder_of(journal: Path) -> dict[str, Any] | None:
    """The live optbench holder of a journal's write lock (None when no live process holds it): the flock
    says whether it is held, the record who holds it."""
    path = f"{journal}{WRITE_LOCK_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            record = read_holder(fd)
            return record if record and "pid" in record else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _link_id(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_mtime_ns]  # a symlink is never modified: its mtime is its creation


class JournalLock(BaseJournalFileLock):
    """The journal's lock: a flock that knows its holder, then Optuna's symlink lock (module docstring)."""

    def __init__(self, journal: Path, grace: float | None = None) -> None:
        self.journal = os.path.abspath(journal)
        self.path = self.journal + WRITE_LOCK_SUFFIX
        self.symlink = self.journal + SYMLINK_SUFFIX
        self.grace = lock_grace() if grace is None else grace
        self._threads = threading.Lock()  # the flock is per open file: threads of one process queue here
        self._fd: int | None = None
        self._link: list[int] | None = None
        self._since = 0.0

    # Optuna's interface; `check` (from interrupts.deferred_waiting) is called while waiting
    def acquire(self, check: Callable[[], None] = lambda: None) -> bool:
        self._threads.acquire()
        try:
            self._fd = self._flock(check)
            previous = read_holder(self._fd)
            self._since = time.time()
            self._record(None)
            self._link = self._take_symlink(previous, check)
            self._record(self._link)
        except BaseException:
            self._let_go()
            raise
        return True

    def release(self) -> None:
        if self._fd is None:
            raise RuntimeError("the journal lock is not held")
        try:
            if self._link is not None and self._own_symlink():
                break_lock(Path(self.symlink))
            self._link = None
            self._write(b"")  # released: the next holder finds no symlink of ours to break
        finally:
            self._let_go()

    def still_held(self) -> bool:
        """Whether the lock is still this process's: its flock on the file now at the lock's path, and its
        symlink unbroken. False means another writer may be appending: cut nothing, write nothing."""
        if self._fd is None:
            return False
        try:
            ours, there = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        if (ours.st_dev, ours.st_ino) != (there.st_dev, there.st_ino):
            return False
        return self._link is None or self._own_symlink()

    # the parts
    def _let_go(self) -> None:
        fd, self._fd, self._link = self._fd, None, None
        if fd is not None:
            os.close(fd)  # frees the flock
        self._threads.release()

    def _flock(self, check: Callable[[], None]) -> int:
        started = time.monotonic()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self._wait_for(fd, started, check)
                ours, there = os.fstat(fd), os.stat(self.path)
                if (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino):
                    return fd
            except FileNotFoundError:
                pass  # the lock file was removed while we waited: lock the one now there
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _wait_for(self, fd: int, started: float, check: Callable[[], None]) -> None:
        """Wait for the flock on `fd`, polling (a blocking flock would not let `check` run); say once, in
        one line, who holds it and since when."""
        sleep = 0.001
        announced = False
        while True:
            check()
            time.sleep(sleep)
            sleep = min(sleep * 2, 0.05)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not announced and time.monotonic() - started > WAIT_NOTICE:
                print(
                    f"optbench: waiting for the journal lock of {self.journal}: held by "
                    f"{describe(read_holder(fd))}; a live holder keeps it, even paused, until it finishes",
                    file=sys.stderr,
                )
                announced = True

    def _record(self, link: list[int] | None) -> None:
        record = {**this_process(), "since": self._since, "symlink": link}
        self._write(json.dumps(record, separators=(",", ":")).encode())

    def _write(self, data: bytes) -> None:
        """Rewrite the holder record in place (padded to RECORD_SIZE). Best effort: it only names the
        holder; the flock is the lock."""
        data = data[: RECORD_SIZE - 1].ljust(RECORD_SIZE - 1) + b"\n"
        try:
            os.pwrite(self._fd, data, 0)
        except OSError:
            pass

    def _own_symlink(self) -> bool:
        try:
            return _link_id(os.lstat(self.symlink)) == self._link
        except OSError:
            return False

    def _take_symlink(self, previous: dict[str, Any] | None, check: Callable[[], None]) -> list[int]:
        started = time.monotonic()
        announced = False
        seen: int | None = None  # the link's mtime when first seen
        seen_at = started
        sleep = 0.001
        while True:
            try:
                os.symlink(self.journal, self.symlink)
                return _link_id(os.lstat(self.symlink))
            except FileExistsError:
                pass
            try:
                st = os.lstat(self.symlink)  # lstat: a dangling link has an mtime too
            except FileNotFoundError:
                continue  # released meanwhile
            if previous and previous.get("symlink") == _link_id(st):
                # the last flock holder's own link, and holding the flock proves that holder gone
                print(f"optbench: took over the journal lock {self.symlink} of {describe(previous)}: "
                      "its process is gone", file=sys.stderr)  # fmt: skip
                break_lock(Path(self.symlink))
                previous = None
                continue
            now = time.monotonic()
            if st.st_mtime_ns != seen:
                seen, seen_at = st.st_mtime_ns, now
            if now - seen_at > self.grace or time.time() - st.st_mtime > self.grace:  # unchanged that long
                print(
                    f"optbench: taking over the journal lock {self.symlink}: no optbench process holds it and "
                    f"it is unchanged for {self.grace:.0f} s (left by a killed Optuna client)",
                    file=sys.stderr,
                )
                break_lock(Path(self.symlink))
                continue
            if not announced and now - started > WAIT_NOTICE:
                print(
                    f"optbench: waiting for the journal lock {self.symlink}: held by a plain Optuna client "
                    f"(or an older optbench); taken over if unchanged for {self.grace:.0f} s",
                    file=sys.stderr,
                )
                announced = True
            check()
            time.sleep(sleep)
            sleep = min(sleep * 2, 0.2)


def break_lock(lock: Path) -> None:
    """Remove a symlink lock as Optuna releases one: rename first, so two breakers cannot both win."""
    moved = lock.with_name(f"{lock.name}.{os.getpid()}.{time.monotonic_ns()}.rename")
    try:
        os.rename(lock, moved)
    except FileNotFoundError:
        return
    moved.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(lock: JournalLock) -> Iterator[None]:
    """Hold `lock` for the block. A stop signal (Ctrl-C, SIGTERM) never lands between taking the lock and
    letting it go, where it would leave the flock held by a live process for good; waiting for the lock
    stays as interruptible as the caller is."""
    with interrupts.deferred_waiting() as check:
        lock.acquire(check)
        try:
            yield
        finally:
            lock.release()


# -- the users of a store --------------------------------------------------------------------------------


def use_store(journal: Path) -> Any:
    """Hold a shared flock on the journal's users lock for as long as the returned file lives (None when
    it cannot exist: a read-only folder, where nobody can rewrite the journal either). Waits while
    `doctor --repair` rewrites the journal, saying so once."""
    path = f"{journal}{USERS_LOCK_SUFFIX}"
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
            break
        except OSError:
            continue
    else:
        return None
    f = os.fdopen(fd, "rb")
    try:
        deadline = time.monotonic() + WAIT_NOTICE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return f
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        holder = holder_of(Path(journal))
        who = describe(holder) if holder is not None else "another process"
        print(f"optbench: waiting for {journal}: `optbench doctor --repair` is rewriting it; its lock is held by {who}",
              file=sys.stderr)  # fmt: skip
        fcntl.flock(fd, fcntl.LOCK_SH)
        return f
    except BaseException:
        f.close()
        raise


def sole_user(journal: Path) -> Any:
    """The users lock taken exclusively (a file to close when done), or None when another process has the
    store open. Never waits."""
    path = f"{journal}{USERS_LOCK_SUFFIX}"
    try:
        f = open(path, "ab")  # noqa: SIM115 -- returned to the caller
    except OSError:
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def command_of(pid: str) -> str:
    """A process's command line, short: `optbench run s.toml` for `python -m bench run s.toml`."""
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "not visible from here: another PID namespace?"
    if "-m" in argv and argv[argv.index("-m") + 1 :][:1] == ["bench"]:
        argv = ["optbench", *argv[argv.index("-m") + 2 :]]
    elif any("multiprocessing" in a for a in argv):
        return "an optbench worker"
    return " ".join(" ".join(argv).split())[:100]


def store_users(journal: Path) -> list[str]:
    """'pid N (`command`)' of each other process holding the store open, from the kernel's lock table
    (processes in a PID namespace this one cannot see are listed as such)."""
    try:
        st = os.stat(f"{journal}{USERS_LOCK_SUFFIX}")
        table = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in table:
        fields = line.split()
        if len(fields) > 1 and fields[1] == "->":
            continue  # a waiter, not a holder
        if len(fields) < 6 or fields[1] != "FLOCK" or not fields[5].endswith(f":{st.st_ino}"):
            continue
        pid = fields[4]
        if pid != str(os.getpid()):
            what = f"pid {pid} (`{command_of(pid)}`)"
            if what not in found:
                found.append(what)
    return found


# -- reading and writing the journal ---------------------------------------------------------------------


def too_deep(line: bytes) -> bool:
    """Whether a JSON text nests deeper than MAX_DEPTH (strings skipped). Cheap for ordinary records:
    only a line holding more brackets than MAX_DEPTH is scanned."""
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return False
    brackets = re.sub(rb'"(?:[^"\\]|\\.)*"', b"", line).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(1 if b in b"[{" else -1 for b in brackets), default=0) > MAX_DEPTH


def parse_record(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """(the record, '') or (None, why the line is not one)."""
    if too_deep(line):
        return None, f"nested deeper than {MAX_DEPTH} levels"
    try:
        record = json.loads(line)
    except RecursionError:
        return None, "nested too deep to read"
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer too long to convert
        return None, f"not a JSON record: {(str(e).splitlines() or [type(e).__name__])[0]}"
    if not isinstance(record, dict) or "op_code" not in record:
        return None, "not a journal record"
    return record, ""


def is_record(line: bytes) -> bool:
    return parse_record(line)[0] is not None


def encode(logs: list[dict[str, Any]], path: Path) -> bytes:
    """The journal lines for `logs`; ConfigError for a record deeper than a reader would accept."""
    try:
        lines = [json.dumps(log, separators=(",", ":")).encode() for log in logs]
    except RecursionError:
        lines = [b"[" * (MAX_DEPTH + 1)]
    if any(too_deep(line) for line in lines):
        raise ConfigError("", f"a record nested deeper than {MAX_DEPTH} levels cannot be stored; nothing was written",
                          str(path))  # fmt: skip
    return b"\n".join(lines) + b"\n"


class _Appender:
    """What bench.faults writes to: every byte of `data` appended (O_APPEND) to the open journal."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def flush(self) -> None:
        pass


class CheckedJournal(JournalFileBackend):
    """JournalFileBackend that appends under a lock that knows its holder, repairs torn tails before
    appending, and reports a corrupt middle (module docstring)."""

    def __init__(self, path: Path) -> None:
        path = Path(os.path.abspath(path))
        self.path = path
        lock = JournalLock(path)  # a bad OPTBENCH_LOCK_GRACE is refused before anything is created
        try:
            super().__init__(str(path), lock_obj=lock)
        except OSError as e:
            raise StoreWriteError("--storage", f"cannot create {path}: {e.strerror}") from None
        self._lock: JournalLock = lock
        self._users = use_store(path)

    def close(self) -> None:
        """Stop using the store (the users lock is also freed when this object is collected)."""
        if self._users is not None:
            self._users.close()
            self._users = None

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's read_logs (the same byte-offset cache; a last line without its newline, or bad, is
        skipped as a write in progress), with every line judged by parse_record: a bad line followed by
        more is the ConfigError naming the file and the line."""
        offsets = self._log_number_offset
        with open(self._file_path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size
            start = 0
            if log_number_from in offsets:
                f.seek(offsets[log_number_from])
                start = log_number_from
                remaining -= offsets[log_number_from]
            bad = False
            for log_number, line in enumerate(f, start=start):
                remaining -= len(line)
                if remaining < 0:
                    break
                if bad:
                    raise self.corrupt()
                if not line.endswith(b"\n"):
                    bad = True
                    continue
                record, _ = parse_record(line)
                if record is None:
                    bad = True
                    continue
                offsets.setdefault(log_number + 1, offsets[log_number] + len(line))
                if log_number >= log_number_from:
                    yield record

    def corrupt(self, replay_error: BaseException | None = None) -> ConfigError:
        """The error for a corrupt journal; `replay_error`: what Optuna raised replaying records that parse."""
        line, why = first_corrupt_line(self.path)
        if not line and replay_error is not None:  # every line is a record: doctor finds nothing to move aside
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
        data = encode(logs, self.path)
        try:
            while True:
                try:
                    self._append(data)
                    return
                except LockLost:
                    continue  # nothing was cut or written: take the lock again
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreWriteError(
                    "", f"cannot write the results store: {e.strerror}; finished runs are kept", str(self.path)
                ) from None
            raise

    def _append(self, data: bytes) -> None:
        with _locked(self._lock):
            faults.held("append:locked")
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                repair_torn_tail(fd, self.path, self._lock)
                faults.held("append:checked")
                if not self._lock.still_held():
                    raise LockLost
                faults.write(_Appender(fd), data, "journal")
                faults.held("append:written")
                os.fsync(fd)
            finally:
                os.close(fd)


def repair_torn_tail(fd: int, path: Path, lock: JournalLock | None = None) -> int:
    """Make the journal open on `fd` (O_APPEND) end with a whole record; the caller holds `lock`. A last
    line that is not a journal record (torn by a kill or a full disk, or garbage appended) is moved to
    `<path>.torn` and cut off, only while the lock is still the caller's and nobody appended meanwhile
    (LockLost otherwise); a whole record that only lacks its newline gets it. Returns the bytes moved."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    newline = os.pread(fd, 1, size - 1) == b"\n"
    end = size - 1 if newline else size
    start = end
    chunk = 1 << 16
    while start > 0:  # find the newline before the last line, reading backwards
        read_from = max(0, start - chunk)
        block = os.pread(fd, start - read_from, read_from)
        nl = block.rfind(b"\n")
        if nl >= 0:
            start = read_from + nl + 1
            break
        start = read_from
    last = os.pread(fd, end - start, start)
    if is_record(last):
        if not newline:  # whole but for its newline: keep it, nothing is lost
            if lock is not None and not lock.still_held():
                raise LockLost
            _Appender(fd).write(b"\n")
            os.fsync(fd)
        return 0
    torn = last + (b"\n" if newline else b"")
    torn_path = path.with_name(path.name + TORN_SUFFIX)
    if lock is not None and not lock.still_held():
        raise LockLost
    with open(torn_path, "ab") as out:
        out.write(torn if newline else torn + b"\n")
        out.flush()
        os.fsync(out.fileno())
    if (lock is not None and not lock.still_held()) or os.fstat(fd).st_size != size:
        raise LockLost  # another writer: its bytes are not ours to cut (the copy in .torn is harmless)
    os.ftruncate(fd, start)
    os.fsync(fd)
    print(
        f"optbench: {path} ended in a broken record ({len(torn)} bytes, left by a killed or failed write); "
        f"moved it to {torn_path}",
        file=sys.stderr,
    )
    return len(torn)


def first_corrupt_line(path: Path) -> tuple[int, str]:
    """(1-based line number, why) of the first line that is not a record and is followed by more (a
    torn last line is skippable); (0, '') when there is none."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    # the last element is b"" when the file ends with a newline, else a torn tail (skippable)
    for number, line in enumerate(lines[:-1], start=1):
        record, why = parse_record(line)
        if record is None:
            return number, why
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
