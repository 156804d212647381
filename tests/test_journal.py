"""bench/journal.py: torn tails, corrupt and too-deep records, and the journal lock that knows its holder,
tried against live processes: ten appenders at once, a holder paused (SIGSTOP) longer than every grace
period, one killed (SIGKILL), one in another PID namespace, a writer that lost its lock."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import faults, journal
from bench.registry import ConfigError
from bench.store import Store
from tests.journals import (
    ROOT,
    appender,
    fabricated,
    hashes,
    one_line_error,
    optbench,
    records,
    resume,
    state,
    wait_said,
    wait_stopped,
)
from tests.suite_files import GRID_12, write_suite

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
POINTS = ["append:locked", "append:checked", "append:written"]  # where an append holds the lock


# -- torn tails ------------------------------------------------------------------------------------------


@FAST
@given(cut=st.integers(min_value=1, max_value=10_000), garbage=st.binary(max_size=40), newline=st.booleans())
def test_a_torn_or_garbage_tail_is_moved_aside_before_the_next_append(tmp_path_factory, cut, garbage, newline):
    path = tmp_path_factory.mktemp("torn") / "j.journal"
    fabricated(path)
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # the last record
    whole = len(data) - last
    cut = 1 + cut % whole  # 1 (only its newline) .. the whole record
    tail = garbage.replace(b"\n", b"") + (b"\n" if newline else b"")
    if cut < whole or journal.is_record(tail.strip()):
        tail = b""  # garbage only after a whole record
    path.write_bytes(data[: len(data) - cut] + tail)
    store = Store.open(str(path))
    store.study("fab").add_trial(optuna.trial.create_trial(value=9.0, user_attrs={"run_hash": "new"}))
    kept = hashes(path)  # readable: no JSONDecodeError, ever
    assert kept[-1] == "new" and kept[:2] == ["h0", "h1"]
    assert kept.count("h2") == (1 if cut == 1 else 0)  # a record missing only its newline is kept
    assert all(journal.is_record(line) for line in path.read_bytes().splitlines())
    torn = path.with_name("j.journal.torn")
    assert torn.exists() == (1 < cut < whole or bool(tail))


def test_the_torn_tail_is_named_on_stderr(tmp_path, capsys):
    path = tmp_path / "j.journal"
    fabricated(path)
    with open(path, "ab") as f:
        f.write(b"garbage!!\n")
    fabricated(path, 1)
    err = capsys.readouterr().err
    assert f"{path} ended in a broken record (10 bytes" in err and f"{path}.torn" in err
    assert path.with_name("j.journal.torn").read_bytes() == b"garbage!!\n"


# -- corrupt and too-deep records ------------------------------------------------------------------------


@FAST
@given(line=st.integers(min_value=0, max_value=3), junk=st.binary(min_size=1, max_size=30))
def test_a_corrupt_middle_is_refused_naming_the_file_and_line(tmp_path_factory, line, junk):
    path = tmp_path_factory.mktemp("mid") / "j.journal"
    fabricated(path)
    lines = path.read_bytes().splitlines(keepends=True)
    bad = junk.replace(b"\n", b"") + b"\n"
    if journal.is_record(bad.strip()):
        return
    lines.insert(line, bad)
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=f"line {line + 1} of the results store is corrupt"):
        Store.open(str(path)).existing_study("fab")
    assert path.read_bytes() == before


def test_cli_refuses_a_corrupt_store_in_one_line(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path)
    records_ = path.read_bytes().splitlines(keepends=True)
    with open(path, "ab") as f:  # the old bug: an append glued onto a torn tail, then more appends
        f.write(b"garbage!!" + records_[-1] + records_[-1])
    suite = write_suite(tmp_path, "fab", GRID_12)
    line = one_line_error(optbench("results", str(suite), "--storage", str(path)))
    assert str(path) in line and "line 5" in line


def test_json_records_in_a_journal_are_checked_by_op_code():
    assert journal.is_record(json.dumps({"op_code": 1}).encode())
    assert not journal.is_record(b"[1, 2]") and not journal.is_record(b"garbage")


def nested(depth: int) -> bytes:
    """A journal record whose deepest value is `depth` levels down (the record itself is level 1)."""
    return b'{"op_code":8,"v":' + (b"[" * (depth - 1) + b"]" * (depth - 1) or b"0") + b"}"


@pytest.mark.parametrize("depth", [1, 2, journal.MAX_DEPTH - 1, journal.MAX_DEPTH, journal.MAX_DEPTH + 1,
                                   998, 999, 1000, 1001, 5000, 100_000])  # fmt: skip
def test_a_record_deeper_than_max_depth_is_no_record_and_json_never_raises(depth):
    assert journal.is_record(nested(depth)) == (depth <= journal.MAX_DEPTH)
    assert journal.too_deep(nested(depth)) == (depth > journal.MAX_DEPTH)


def test_brackets_inside_strings_do_not_count_as_nesting():
    line = json.dumps({"op_code": 8, "v": "[{" * 5000, "w": ["]" * 300, '\\"[[[[']}).encode()
    assert journal.is_record(line) and not journal.too_deep(line)


@FAST
@given(value=st.recursive(st.none() | st.integers() | st.text(alphabet="[]{}\"\\ab", max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=3),
                          max_leaves=200))  # fmt: skip
def test_too_deep_agrees_with_the_nesting_of_the_parsed_value(value):
    def depth(v) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else []
        return (1 + max(map(depth, children), default=0)) if isinstance(v, dict | list) else 0

    line = json.dumps({"op_code": 8, "v": value}).encode()
    assert journal.too_deep(line) == (1 + depth(value) > journal.MAX_DEPTH)


@pytest.mark.parametrize("depth", [journal.MAX_DEPTH + 1, 1000, 5000, 100_000])
def test_a_deep_record_in_the_middle_is_one_line_naming_file_and_line(tmp_path, depth):
    path = tmp_path / "j.journal"
    fabricated(path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, nested(depth) + b"\n")
    path.write_bytes(b"".join(lines))
    suite = write_suite(tmp_path, "fab", GRID_12)
    line = one_line_error(optbench("results", str(suite), "--storage", str(path)))
    assert str(path) in line and "line 3 of the results store is corrupt" in line and "nested" in line


def test_a_deep_torn_tail_is_moved_aside_by_the_next_append(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path)
    with open(path, "ab") as f:
        f.write(nested(100_000) + b"\n")
    fabricated(path, 1)
    assert hashes(path) == ["h0", "h1", "h2", "h0"]
    assert path.with_name("j.journal.torn").read_bytes() == nested(100_000) + b"\n"


def test_a_record_too_deep_to_store_is_refused_and_nothing_written(tmp_path):
    path = tmp_path / "j.journal"
    backend = journal.CheckedJournal(path)
    deep: list = []
    for _ in range(2000):
        deep = [deep]
    for value in (deep, json.loads(nested(journal.MAX_DEPTH))):
        with pytest.raises(ConfigError, match=f"nested deeper than {journal.MAX_DEPTH} levels"):
            backend.append_logs([{"op_code": 8, "ok": 1}, {"op_code": 8, "v": value}])
    assert path.read_bytes() == b""
    backend.append_logs([json.loads(nested(journal.MAX_DEPTH))])
    assert path.read_bytes() == nested(journal.MAX_DEPTH) + b"\n"


# -- OPTBENCH_LOCK_GRACE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "0.999", "abc", "", " ", "nan", "inf", "-inf", "1e400", "0x10"])
def test_a_bad_lock_grace_is_refused_naming_the_variable(monkeypatch, tmp_path, value):
    monkeypatch.setenv("OPTBENCH_LOCK_GRACE", value)
    with pytest.raises(ConfigError, match="OPTBENCH_LOCK_GRACE.*finite number of seconds >= 1") as e:
        Store.open(str(tmp_path / "j.journal"))
    assert e.value.key == "OPTBENCH_LOCK_GRACE" and not (tmp_path / "j.journal").exists()


@pytest.mark.parametrize("value", ["1", "1.0", "1.5", "10", "3600", "1e6"])
def test_every_lock_grace_from_one_second_is_allowed(monkeypatch, value):
    monkeypatch.setenv("OPTBENCH_LOCK_GRACE", value)
    assert journal.lock_grace() == float(value)


def test_cli_refuses_a_bad_lock_grace_in_one_line(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path)
    suite = write_suite(tmp_path, "fab", GRID_12)
    for args in (["results", str(suite), "--storage", str(path)], ["doctor", "--storage", str(path)],
                 ["run", str(suite), "--storage", str(path), "--no-report"]):  # fmt: skip
        line = one_line_error(optbench(*args, env={"OPTBENCH_LOCK_GRACE": "abc"}))
        assert "OPTBENCH_LOCK_GRACE" in line and "'abc'" in line and "Traceback" not in line


# -- the lock: its holder --------------------------------------------------------------------------------


def test_the_lock_records_its_holder_and_forgets_it_on_release(tmp_path):
    path = tmp_path / "j.journal"
    lock = journal.JournalLock(path)
    lock.acquire()
    try:
        holder = journal.holder_of(path)
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        assert holder["pid"] == os.getpid() and holder["start"] == stat[19]
        assert holder["pidns"] == os.readlink("/proc/self/ns/pid")
        assert holder["boot"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        assert holder["symlink"] == [os.lstat(f"{path}.lock").st_ino, os.lstat(f"{path}.lock").st_mtime_ns]
        assert abs(holder["since"] - time.time()) < 60 and lock.still_held()
        assert os.readlink(f"{path}.lock") == str(path)  # Optuna's symlink lock, on the absolute path
    finally:
        lock.release()
    assert journal.holder_of(path) is None and not os.path.lexists(f"{path}.lock") and not lock.still_held()
    assert journal.read_holder(os.open(f"{path}.write-lock", os.O_RDONLY)) is None


def test_journal_locks_point_at_absolute_paths(tmp_path, monkeypatch):
    targets = []
    real = os.symlink
    monkeypatch.setattr(os, "symlink", lambda src, dst: (targets.append(src), real(src, dst))[1])
    monkeypatch.chdir(tmp_path)
    Store.open("rel.journal").study("x")
    assert targets and all(os.path.isabs(t) for t in targets)


def test_ten_processes_appending_at_once_keep_every_record(tmp_path):
    """(a) With the smallest grace period allowed: no value turns mutual exclusion off."""
    path, go = tmp_path / "j.journal", tmp_path / "go"
    procs = [appender(path, f"w{n}", 20, go, env={"OPTBENCH_LOCK_GRACE": "1"}) for n in range(10)]
    time.sleep(1)
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    kept = records(path)
    assert sorted(kept) == sorted((f"w{n}", i) for n in range(10) for i in range(20))
    for n in range(10):  # each writer's records in its own order
        assert [i for w, i in kept if w == f"w{n}"] == list(range(20))


def test_threads_appending_at_once_keep_every_record(tmp_path):
    import threading

    path = tmp_path / "j.journal"
    shared, own = journal.CheckedJournal(path), [journal.CheckedJournal(path) for _ in range(2)]

    def work(backend, name):
        for i in range(30):
            backend.append_logs([{"op_code": 99, "writer": name, "i": i}])

    threads = [threading.Thread(target=work, args=(b, f"t{n}")) for n, b in enumerate([shared, shared, *own])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(records(path)) == sorted((f"t{n}", i) for n in range(4) for i in range(30))


@pytest.mark.parametrize("point", POINTS)
def test_a_paused_holder_keeps_its_lock_and_a_waiter_says_who(tmp_path, point):
    """(b) A holder SIGSTOPped at a lock-held point longer than every grace period: the waiter waits
    (saying once who holds the lock and since when), nothing is taken over, and after SIGCONT both
    records are stored whole, the holder's first."""
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    before = path.read_bytes()
    env = {"OPTBENCH_LOCK_GRACE": "1"}
    holder = appender(path, "holder", env={**env, "OPTBENCH_FAULT": f"stop:{point}:1"})
    waiter = None
    try:
        wait_stopped(holder)
        log = (tmp_path / "waiter.log").open("w+")
        waiter = appender(path, "waiter", env=env, stderr=log)
        wait_said(log, "waiting for the journal lock")
        assert waiter.poll() is None and state(holder.pid) == "T"
        assert journal.holder_of(path)["pid"] == holder.pid
        log.seek(0)
        lines = log.read().splitlines()
        assert len(lines) == 1 and "waiting for the journal lock" in lines[0], lines
        assert f"held by pid {holder.pid} (`python -c" in lines[0] and " since " in lines[0]
        assert path.read_bytes()[: len(before)] == before
    finally:
        resume(holder)
    assert holder.wait(timeout=60) == 0 and waiter.wait(timeout=60) == 0
    assert path.read_bytes().startswith(before) and records(path) == [("holder", 0), ("waiter", 0)]
    assert not os.path.lexists(f"{path}.lock")


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_holder_is_taken_over_at_once(tmp_path, point):
    """(c) SIGKILL while holding: the kernel frees the flock, and the symlink the holder recorded is
    broken without waiting for a grace period (an hour here: waiting for it would hang the test)."""
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    holder = appender(path, "holder", env={"OPTBENCH_FAULT": f"stop:{point}:1"})
    wait_stopped(holder)
    assert os.path.lexists(f"{path}.lock")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    waiter = appender(path, "waiter", env={"OPTBENCH_LOCK_GRACE": "3600"})
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert f"took over the journal lock {path}.lock of pid {holder.pid}" in err.decode()
    assert "its process is gone" in err.decode()
    # a record the killed holder wrote before its fsync is whole; none is torn by the takeover
    assert records(path) == ([("holder", 0)] if point == "append:written" else []) + [("waiter", 0)]
    assert not os.path.lexists(f"{path}.lock")


def test_a_plain_optuna_clients_symlink_is_left_to_optunas_rule(tmp_path):
    """A symlink lock no optbench process recorded is taken over only once unchanged for the grace period."""
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    os.symlink(str(path), f"{path}.lock")  # a live plain Optuna client's, as far as anyone can tell
    waiter = appender(path, "waiter", env={"OPTBENCH_LOCK_GRACE": "3"})
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0 and records(path) == [("waiter", 0)]
    assert "held by a plain Optuna client" in err.decode() and "taking over the journal lock" in err.decode()


def test_a_stale_relative_lock_is_taken_over_after_the_grace_period(tmp_path):
    """The leftover of a killed writer under the old relative lock: Optuna spun forever on it."""
    (tmp_path / "results").mkdir()
    os.symlink("results/optbench.journal", tmp_path / "results" / "optbench.journal.lock")
    code = "from bench.store import Store; Store.open('results/optbench.journal').study('x'); print('done')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "OPTBENCH_LOCK_GRACE": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.stdout.strip() == "done", done.stderr
    assert "waiting for the journal lock" in done.stderr or "taking over the journal lock" in done.stderr
    assert not os.path.lexists(tmp_path / "results" / "optbench.journal.lock")


# -- another PID namespace -------------------------------------------------------------------------------

HOLDER = """
import json, sys
from bench import journal
lock = journal.JournalLock(sys.argv[1])
lock.acquire()
print(json.dumps(journal.this_process()), flush=True)
sys.stdin.read()  # held until the test closes stdin, or kills this process
lock.release()
"""


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not unshare_works(), reason="needs `unshare --pid --fork` (root); see the simulated test below")
def test_a_holder_in_another_pid_namespace_is_judged_by_its_flock_not_its_pid(tmp_path):
    """(d) A holder whose pid means another process here (or none): a waiter waits while it lives, says
    where it is, and takes over at once when it dies."""
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    holder = subprocess.Popen(  # `sh -c '...; true'`: python is not the namespace's init, which ignores signals
        ["unshare", "--pid", "--fork", "sh", "-c", f'"{sys.executable}" -c "$0" "$1"; true', HOLDER, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        inside = json.loads(holder.stdout.readline())
        assert inside["pidns"] != os.readlink("/proc/self/ns/pid") and inside["pid"] <= 3
        recorded = journal.holder_of(path)
        assert (recorded["pid"], recorded["pidns"]) == (inside["pid"], inside["pidns"])
        log = (tmp_path / "waiter.log").open("w+")
        waiter = appender(path, "waiter", env={"OPTBENCH_LOCK_GRACE": "1"}, stderr=log)
        wait_said(log, "waiting for the journal lock")
        assert waiter.poll() is None and records(path) == []  # pid 2 here is not the holder; the flock is
        log.seek(0)
        said = log.read()
        assert f"held by pid {inside['pid']} " in said and "in another PID namespace" in said, said
        doctor = optbench("doctor", "--storage", str(path), env={"OPTBENCH_LOCK_GRACE": "1"})
        assert "in another PID namespace" in doctor.stdout and "a live process" in doctor.stdout, doctor.stdout
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    _, err = waiter.communicate(timeout=120)  # the grace period is an hour away: only the flock lets it in
    assert waiter.returncode == 0 and records(path) == [("waiter", 0)]


def test_a_holder_record_naming_a_foreign_namespace_is_judged_by_the_flock(tmp_path):
    """(d, simulated: without unshare) The record names a pid that is gone here, in another namespace: while
    a live process holds the flock the waiter waits; once it is freed the recorded symlink goes at once."""
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    fd = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # this process holds it; the record lies about who
    os.symlink(str(path), f"{path}.lock")
    link = os.lstat(f"{path}.lock")
    record = {"host": os.uname().nodename, "boot": None, "pid": 999_999_999, "start": "1", "since": time.time(),
              "pidns": "pid:[1]", "command": "optbench run elsewhere.toml",
              "symlink": [link.st_ino, link.st_mtime_ns]}  # fmt: skip
    os.pwrite(fd, json.dumps(record).encode().ljust(journal.RECORD_SIZE), 0)
    log = (tmp_path / "waiter.log").open("w+")
    waiter = appender(path, "waiter", env={"OPTBENCH_LOCK_GRACE": "1"}, stderr=log)
    wait_said(log, "waiting for the journal lock")
    assert waiter.poll() is None and records(path) == []
    log.seek(0)
    assert "held by pid 999999999 (`optbench run elsewhere.toml`)" in log.read()
    os.close(fd)  # as the holder's death would
    assert waiter.wait(timeout=120) == 0 and records(path) == [("waiter", 0)]
    assert not os.path.lexists(f"{path}.lock")


# -- appends: O_APPEND, and a lock that is still one's own -----------------------------------------------


def test_a_record_written_while_another_wrote_lands_after_it_whole(tmp_path, monkeypatch):
    """A writer that appends between this one's tail check and its write (a lock ignored, as the old
    seek-then-write let a stale lock be): O_APPEND puts this record after it, never over it."""
    path = tmp_path / "j.journal"
    backend = journal.CheckedJournal(path)
    backend.append_logs([{"op_code": 99, "writer": "first", "i": 0}])
    intruder = b'{"op_code":99,"writer":"intruder","i":0}\n'
    real = faults.held

    def held(point):
        real(point)
        if point == "append:checked":
            with open(path, "ab") as f:
                f.write(intruder)

    monkeypatch.setattr(faults, "held", held)
    backend.append_logs([{"op_code": 99, "writer": "this", "i": 0}])
    assert records(path) == [("first", 0), ("intruder", 0), ("this", 0)]


def test_a_writer_that_lost_its_lock_cuts_nothing_and_starts_over(tmp_path, monkeypatch):
    """A plain Optuna client breaks the symlink (its grace period) while an in-progress append of its own
    looks like a torn tail: the writer that lost its lock leaves those bytes, takes the lock again, and only
    then (the lock its own) moves them aside."""
    path = tmp_path / "j.journal"
    backend = journal.CheckedJournal(path)
    backend.append_logs([{"op_code": 99, "writer": "first", "i": 0}])
    partial = b'{"op_code":99,"wri'
    seen = []
    real = faults.held

    def held(point):
        real(point)
        if point == "append:locked":
            seen.append(path.read_bytes().endswith(partial))
            if len(seen) == 1:
                journal.break_lock(Path(f"{path}.lock"))
                with open(path, "ab") as f:
                    f.write(partial)

    monkeypatch.setattr(faults, "held", held)
    backend.append_logs([{"op_code": 99, "writer": "this", "i": 0}])
    assert seen == [False, True]  # the second acquisition still found the other's bytes in place
    assert records(path) == [("first", 0), ("this", 0)]
    assert path.with_name("j.journal.torn").read_bytes() == partial + b"\n"


def test_appends_open_the_journal_with_o_append(tmp_path, monkeypatch):
    path = tmp_path / "j.journal"
    backend = journal.CheckedJournal(path)
    flags = []
    real = os.open
    monkeypatch.setattr(os, "open", lambda p, f, *a: (str(p) == str(path) and flags.append(f), real(p, f, *a))[1])
    backend.append_logs([{"op_code": 99, "writer": "w", "i": 0}])
    assert flags and all(f & os.O_APPEND for f in flags)


# -- a store that cannot be written ----------------------------------------------------------------------


def test_a_read_only_or_full_store_is_one_line_and_stays_readable(tmp_path):
    suite = write_suite(tmp_path, "ro", 'optimizer = ["adamw"]', seeds="[0]")
    storage = tmp_path / "j.journal"
    args = ("run", str(suite), "--storage", str(storage), "--workers", "1", "--quiet", "--no-report")
    read_only = optbench(*args, env={"OPTBENCH_FAULT": "erofs:1"})  # as root, chmod cannot make one
    assert "Read-only file system" in one_line_error(read_only, after_start=True)
    assert storage.read_bytes() == b""
    full = optbench(*args, env={"OPTBENCH_FAULT": "enospc:3"})
    assert "No space left on device" in one_line_error(full, after_start=True)
    done = optbench(*args)
    assert done.returncode == 0 and "broken record" in done.stderr, done.stderr
    assert Store.open(str(storage)).existing_study("ro").get_trials()[-1].state.name == "COMPLETE"


# -- stop signals ----------------------------------------------------------------------------------------

STOPPABLE = """
import sys
from pathlib import Path
from bench import interrupts
from bench.journal import CheckedJournal
journal = CheckedJournal(Path(sys.argv[1]))
interrupts.install()
try:
    with interrupts.deferred() if sys.argv[2] == "whole" else interrupts.allowed():
        journal.append_logs([{"op_code": 99, "writer": "waiter", "i": 0}])
except KeyboardInterrupt:
    print("stopped", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.parametrize("caller", ["stoppable", "whole"])
def test_ctrl_c_while_waiting_for_the_lock_is_as_interruptible_as_the_caller(tmp_path, caller):
    """A waiter whose caller allows stops (training) stops at once, writing nothing; one whose caller runs
    the write whole (a claim, a finish) goes on waiting, writes, and only then stops."""
    path = tmp_path / "j.journal"
    holder = appender(path, "holder", env={"OPTBENCH_FAULT": "stop:append:checked:1"})
    try:
        wait_stopped(holder)
        log = (tmp_path / "waiter.log").open("w+")
        waiter = subprocess.Popen([sys.executable, "-c", STOPPABLE, str(path), caller], stderr=log,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        wait_said(log, "waiting for the journal lock")
        os.kill(waiter.pid, signal.SIGINT)
        if caller == "stoppable":
            assert waiter.wait(timeout=60) == 130 and state(holder.pid) == "T"
        else:
            time.sleep(1)
            assert waiter.poll() is None
    finally:
        resume(holder)
    assert holder.wait(timeout=60) == 0 and waiter.wait(timeout=60) == 130
    log.seek(0)
    assert log.read().count("stopped") == 1
    assert records(path) == [("holder", 0)] + ([("waiter", 0)] if caller == "whole" else [])


def test_a_stop_signal_as_the_lock_is_let_go_never_leaves_it_held(tmp_path, monkeypatch):
    """SIGINT arriving just as the lock's file is closed (its flock freed): the append and its release run
    whole, the stop comes after, and nothing of the lock is left held, for this process or others."""
    from bench import interrupts

    path = tmp_path / "j.journal"
    backend = journal.CheckedJournal(path)
    real_close = os.close

    def close(fd):
        lock_file = os.readlink(f"/proc/self/fd/{fd}").endswith(".write-lock")
        real_close(fd)
        if lock_file:
            os.kill(os.getpid(), signal.SIGINT)

    with interrupts.on_stop_signals():
        monkeypatch.setattr(os, "close", close)
        with pytest.raises(KeyboardInterrupt):
            backend.append_logs([{"op_code": 99, "writer": "w", "i": 0}])
        monkeypatch.setattr(os, "close", real_close)
    assert backend._lock._threads.acquire(timeout=5)
    backend._lock._threads.release()
    assert journal.holder_of(path) is None and not os.path.lexists(f"{path}.lock")
    backend.append_logs([{"op_code": 99, "writer": "w", "i": 1}])
    assert records(path) == [("w", 0), ("w", 1)]
