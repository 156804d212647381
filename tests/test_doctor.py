"""bench/doctor.py: what crashes and hostile edits leave in a store, and its repair, which never replaces a
journal that another live process has open and never takes a lock from a live holder."""

import os
import signal
import subprocess
import sys
import time

import optuna

from bench import journal
from bench.store import Store
from tests import faults
from tests.journals import appender, fabricated, hashes, optbench, records, resume, state, wait_said, wait_stopped

# A process that has the store open (as a runner or a reader does) until its stdin closes.
USER = """
import sys
from bench.store import Store
store = Store.open(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
"""


def with_garbage_at_line_3(path):
    fabricated(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + b"garbage\n" + b"".join(lines[2:]))
    return b"".join(lines)


def test_doctor_finds_and_repairs_what_crashes_leave(tmp_path):
    path = tmp_path / "results" / "optbench.journal"
    path.parent.mkdir()
    fabricated(path)
    optuna.load_study(study_name="fab", storage=Store.open(str(path)).storage).ask()  # an orphaned claim
    records_ = path.read_bytes().splitlines(keepends=True)
    with open(path, "ab") as f:  # a torn record with the next append glued on, then one more
        f.write(records_[2][:20] + records_[-2] + records_[-1])
    os.symlink("results/optbench.journal", f"{path}.lock")  # the old relative lock, left by a kill
    os.utime(f"{path}.lock", (0, 0), follow_symlinks=False)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / ".fab.html.999999999.part").write_text("half")
    # temporary files that are not optbench's, beside and below the store: never touched
    not_ours = [tmp_path / "results" / ".thesis.tex.999999999.part",
                tmp_path / "reports" / "deep" / ".x.html.999999999.part",
                tmp_path / "results" / "notes" / ".optbench.journal.999999999.part"]  # fmt: skip
    for other in not_ours:
        other.parent.mkdir(exist_ok=True)
        other.write_text("precious")
    env = {"OPTBENCH_GRACE_PERIOD": "0"}
    found = optbench("doctor", "--storage", str(path), "--reports", str(tmp_path / "reports"), env=env)
    assert found.returncode == 1 and "glued onto 20 bytes" in found.stdout and "journal lock" in found.stdout
    repaired = optbench("doctor", "--repair", "--storage", str(path), "--reports", str(tmp_path / "reports"), env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    for what in ("glued", "journal lock", "names no worker", ".part"):
        assert any(line.startswith("repaired: ") and what in line for line in repaired.stdout.splitlines())
    assert optbench("doctor", "--storage", str(path), "--reports", str(tmp_path / "reports")).returncode == 0
    assert all(other.read_text() == "precious" for other in not_ours)
    assert not any(str(other) in repaired.stdout for other in not_ours)
    study = Store.open(str(path)).existing_study("fab")
    assert [t.user_attrs.get("run_hash") for t in study.get_trials()].count("h2") == 2  # the glued record kept
    assert not any(t.state.name == "RUNNING" for t in study.get_trials())


def test_a_store_open_elsewhere_is_repaired_in_place_only_and_says_by_whom(tmp_path):
    """A rewrite would shift the byte offsets a live reader keeps: with the store open in another process,
    doctor only cuts a torn tail (as every append does), names that process, and leaves the file in place."""
    path = tmp_path / "j.journal"
    original = with_garbage_at_line_3(path)
    with open(path, "ab") as f:
        f.write(b'{"op_code":4,"torn')
    inode = path.stat().st_ino
    # what Store.open holds (a store with a corrupt middle cannot be opened, so the lock alone)
    hold = "import sys, fcntl; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_SH); print('open', flush=True)"
    user = subprocess.Popen([sys.executable, "-c", hold + "; sys.stdin.read()", f"{path}.users-lock"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert user.stdout.readline() == "open\n"
        done = optbench("doctor", "--repair", "--storage", str(path))
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert f"repaired: {path}: a torn last record (18 bytes)" in lines
        assert any(line.startswith(f"problem: {path} line 3: not a JSON record") for line in lines)
        said = [line for line in lines if "not moved aside" in line]
        assert len(said) == 1 and f"line(s) 3 not moved aside: the store is open in pid {user.pid} (`" in said[0]
        assert "rerun `optbench doctor --repair`" in said[0]
        assert path.stat().st_ino == inode and b"garbage\n" in path.read_bytes()
        assert not path.read_bytes().endswith(b"torn")
    finally:
        user.stdin.close()
        user.wait(timeout=60)
    done = optbench("doctor", "--repair", "--storage", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.stat().st_ino != inode and path.read_bytes() == original
    assert hashes(path) == ["h0", "h1", "h2"]


def test_a_store_opened_during_a_rewrite_waits_for_it_and_reads_the_repaired_journal(tmp_path):
    path = tmp_path / "j.journal"
    with_garbage_at_line_3(path)
    doctor = subprocess.Popen([sys.executable, "-m", "bench", "doctor", "--repair", "--storage", str(path)],
                              env={**os.environ, "OPTBENCH_FAULT": "stop:doctor:rewritten:1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        wait_stopped(doctor)
        log = (tmp_path / "user.log").open("w+")
        user = subprocess.Popen([sys.executable, "-c", USER, str(path)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=log, text=True)  # fmt: skip
        wait_said(log, "is rewriting it")
        assert user.poll() is None and state(doctor.pid) == "T"
        log.seek(0)
        said = log.read().splitlines()
        assert len(said) == 1 and "`optbench doctor --repair` is rewriting it" in said[0]
        assert f"held by pid {doctor.pid} (`optbench doctor --repair" in said[0]
    finally:
        resume(doctor)
    assert doctor.wait(timeout=60) == 0
    assert user.wait(timeout=60) == 0 and user.stdout.read() == "open\n"  # a corrupt middle would have failed it


def test_a_deep_record_is_moved_aside_like_a_torn_one(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path)
    lines = path.read_bytes().splitlines(keepends=True)
    deep = b'{"op_code":8,"v":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    path.write_bytes(b"".join(lines[:2]) + deep + b"".join(lines[2:]))
    found = optbench("doctor", "--storage", str(path))
    assert found.returncode == 1 and f"{path} line 3: nested deeper than {journal.MAX_DEPTH} levels" in found.stdout
    done = optbench("doctor", "--repair", "--storage", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.read_bytes() == b"".join(lines) and path.with_name("j.journal.torn").read_bytes() == deep
    assert hashes(path) == ["h0", "h1", "h2"]


def test_a_lock_left_by_a_killed_holder_is_reported_and_removed_at_once(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    holder = appender(path, "holder", env={"OPTBENCH_FAULT": "stop:append:checked:1"})
    wait_stopped(holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    env = {"OPTBENCH_LOCK_GRACE": "3600"}  # its flock says it is gone: no grace period is waited for
    found = optbench("doctor", "--storage", str(path), env=env)
    assert found.returncode == 1 and f"a journal lock left by pid {holder.pid} (`python -c" in found.stdout
    assert "which is gone" in found.stdout
    done = optbench("doctor", "--repair", "--storage", str(path), env=env, timeout=120)
    assert done.returncode == 0 and not os.path.lexists(f"{path}.lock"), done.stdout + done.stderr
    assert records(path) == []


def test_a_live_holder_paused_for_long_is_noted_never_taken_over(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path, 1)
    holder = appender(path, "holder", env={"OPTBENCH_FAULT": "stop:append:locked:1"})
    try:
        wait_stopped(holder)
        time.sleep(1.5)
        done = optbench("doctor", "--storage", str(path), env={"OPTBENCH_LOCK_GRACE": "1"})
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"note: {path}.lock: held by pid {holder.pid} (`python -c" in done.stdout and "paused?" in done.stdout
        assert journal.holder_of(path)["pid"] == holder.pid
    finally:
        resume(holder)
    assert holder.wait(timeout=60) == 0 and records(path) == [("holder", 0)]


def test_doctor_paused_inside_its_lock_while_a_suite_runs_loses_nothing(tmp_path):
    """(e) The issue's case: doctor --repair SIGSTOPped after its snapshot, longer than every grace period,
    while a two-worker suite runs: the workers wait for it (saying so), nothing is taken over or replaced,
    every run is stored exactly once, nothing hangs."""
    tally = faults.Tally()
    faults.doctor_while_running(tmp_path, tally)
    assert tally.problems == [] and tally.hangs == 0 and tally.runs_lost == 0
    assert tally.paused == tally.kept_lock == 1 and tally.waits >= 1


def test_a_rewrite_whose_lock_was_taken_meanwhile_replaces_nothing(tmp_path, monkeypatch):
    """A plain Optuna client breaks doctor's symlink lock (its grace period) before the replace: doctor
    leaves the journal as it was, says so, and the next --repair does it."""
    import gc

    from bench import doctor, faults

    path = tmp_path / "j.journal"
    with_garbage_at_line_3(path)
    gc.collect()  # no store of this process left holding the users lock
    before, inode = path.read_bytes(), path.stat().st_ino
    real = faults.held

    def held(point):
        real(point)
        if point == "doctor:rewritten":
            journal.break_lock(path.with_name("j.journal.lock"))

    monkeypatch.setattr(faults, "held", held)
    findings = doctor.check_journal(path, repair=True)
    assert [f.open for f in findings] == [True, True] and "a plain Optuna client took" in findings[-1].problem
    assert path.read_bytes() == before and path.stat().st_ino == inode and not list(tmp_path.glob(".*.part"))
    monkeypatch.setattr(faults, "held", real)
    assert [f.repaired for f in doctor.check_journal(path, repair=True)] == [True]
    assert path.stat().st_ino != inode and b"garbage" not in path.read_bytes()
