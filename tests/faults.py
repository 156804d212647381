"""Crash tests at every write boundary of a small suite's life, not at random times.

    .venv/bin/python -m tests.faults          # the full sweep; prints the counts (docs/reliability.md)
    .venv/bin/python -m tests.faults --quick  # a few boundaries of each kind (what CI runs)
    .venv/bin/python -m tests.faults --pauses # only the pauses at lock-held points (all of them)
    .venv/bin/python -m tests.faults --deaths # only the worker deaths
    .venv/bin/python -m tests.faults --outages # only the database outages (needs OPTBENCH_TEST_POSTGRES)

A clean `optbench run` of a two-run suite (report included) is counted first: every journal append
(study creation, its attributes, each claim, intermediate values, record attributes, finish) and the
report's temporary file is a write boundary (bench/faults.py numbers them). Then:
- kill: SIGKILL of the runner's process group just before each write, at every boundary;
- torn: half of a journal append written, then SIGKILL of the process group (every 4th append);
- enospc: half of a journal append written, then "No space left on device", exit 2 (every 4th append);
each followed by a rerun, which must finish within RERUN_BOUND seconds with every run stored exactly once as
finished, nothing RUNNING, every journal line a record, no lock and no temporary file left. Torn writes
are also tried at every byte offset of the journal's last record (truncation, then a rerun), and a
read-only store must refuse in one line and stay as it was.

Pauses: a process SIGSTOPs itself at a lock-held point (bench/faults.py, `held`) and stays stopped for
PAUSE seconds, longer than every grace period the cases set (OPTBENCH_LOCK_GRACE and OPTBENCH_GRACE_PERIOD
at their minimum, 1 s), while a suite runs; then SIGCONT. While it is stopped it must still hold the lock
(the lock's record names it); afterwards the suite must finish, exit 0, with every run stored exactly
once and every journal line a record:
- every process of a two-worker `optbench run` pausing at its N-th reaching of each point of an append
  (the lock taken; the tail checked, the record not yet written; written, not yet synced);
- `optbench doctor --repair` pausing after its snapshot while a suite runs (the store in use: no rewrite);
- `optbench doctor --repair` pausing after its snapshot or with its repaired copy written, about to
  replace a journal with a corrupt middle, while `optbench run` starts (it waits for the rewrite, then
  reads the repaired store; nothing but the corrupt line may be lost).

Worker deaths, in a two-worker `optbench run` of a longer suite (DEATH_SUITE):
- SIGKILL, as the OOM killer sends it, of the worker training the k-th claim, for every k: the command must
  exit 0 with every run stored exactly once, the killed claim failed as `worker_died`;
- every worker process (replacements too) dying at its N-th write boundary, of a library's error (`raise`)
  or a crash in native code (`segv`), for N = 1-6, then ever more sparsely (8, 13, 21, ...) up to the last
  boundary a worker reaches: exit 0, or exit 3 with one line naming
  the run its deaths left unrun; no traceback; then a rerun without the fault stores every run once.

Database outages, where OPTBENCH_TEST_POSTGRES names a throwaway server this process may stop
(tests/postgres.py), in a two-worker `optbench run` of DEATH_SUITE: the server stopped while the k-th claim
trains, for 2 s and for 12 s (past the 4 s grace period), then started; backends terminated every 0.7 s for
a whole suite; the server away past OPTBENCH_DB_RETRY (6 s), then started and the command rerun. Each must
end with exit 0 (exit 3 naming the kept results, then 0 on the rerun, for the last), no traceback, every run
stored exactly once, no live worker's claim failed, no result left in results/pending/.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RERUN_BOUND = 180  # seconds a rerun may take before it counts as a hang
PAUSE = 3.0  # seconds a process stays stopped at a lock-held point
PAUSE_ENV = {"OPTBENCH_LOCK_GRACE": "1", "OPTBENCH_GRACE_PERIOD": "1"}  # every grace period below PAUSE
APPEND_POINTS = ("append:locked", "append:checked", "append:written")
SUITE = """
[suite]
name = "faults"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = 20
batch_size = 4
eval_interval = 10
eval_batches = 2
eval_batch_size = 4
schedule = "constant"
[axes]
optimizer = ["adamw", "lion"]
"""
JOURNAL = "results/optbench.journal"
CREATE_TRIAL = 4  # optuna's JournalOperation codes, to name the boundaries
OPERATIONS = {
    "journal:0": "study creation", "journal:2": "study attribute", "journal:4": "claim (trial creation)",
    "journal:5": "parameter", "journal:6": "finish (trial state)", "journal:7": "intermediate value",
    "journal:8": "trial attribute", "temporary file": "report's temporary file",
    "checkpoint": "checkpoint (torch.save's stream)", "report": "report (its HTML)",
}  # fmt: skip


@dataclass
class Tally:
    boundaries: int = 0  # write boundaries of a clean run
    killed_at: int = 0  # boundaries killed before
    torn_at: int = 0  # appends torn by a kill halfway
    enospc_at: int = 0
    torn_offsets: int = 0
    read_only: int = 0
    deaths_killed: int = 0  # workers SIGKILLed while training (one case each)
    deaths_injected: int = 0  # cases whose every worker died at its N-th write (raise or segv)
    deaths_reported: int = 0  # of those, the cases that ended exit 3 naming the run left
    outages: int = 0  # database outage cases (stops, terminated backends, past the retry bound)
    terminated: int = 0  # backends terminated in the loop case
    stopped_at: int = 0  # cases paused at a lock-held point
    paused: int = 0  # processes stopped there and resumed after PAUSE
    kept_lock: int = 0  # of those, still the lock's holder when resumed
    waits: int = 0  # waiters that said who held the lock (or that doctor was rewriting)
    hangs: int = 0
    runs_lost: int = 0
    problems: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)  # boundaries of a clean run, by what they write

    def line(self) -> str:
        return (
            f"boundaries {self.boundaries}; killed at {self.killed_at}; torn by a kill at {self.torn_at}; "
            f"full disk at {self.enospc_at}; "
            f"torn offsets {self.torn_offsets}; read-only {self.read_only}; "
            f"paused at {self.stopped_at} lock-held points ({self.paused} processes stopped {PAUSE:.0f} s, "
            f"{self.kept_lock} kept the lock, {self.waits} waiters said who held it); "
            f"workers killed {self.deaths_killed}; workers dying at a write {self.deaths_injected} "
            f"({self.deaths_reported} reported exit 3); database outages {self.outages} "
            f"({self.terminated} backends terminated); hangs {self.hangs}; "
            f"runs lost {self.runs_lost}; other problems {len(self.problems)}"
        )


def optbench_run(folder: Path, env: dict[str, str] | None = None, timeout: float = RERUN_BOUND):
    """`optbench run` of the suite in its own process group; None when it outlived `timeout` (a hang)."""
    args = [sys.executable, "-m", "bench", "run", "s.toml", "--storage", JOURNAL, "--workers", "1",
            "--threads", "1", "--quiet", "--no-sample"]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **(env or {})},
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return proc.returncode, err


def fresh(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "s.toml").write_text(SUITE)
    (folder / "results").mkdir()
    return folder


def count_boundaries(root: Path) -> list[str]:
    folder = fresh(root, "count")
    log = folder / "boundaries.log"
    done = optbench_run(folder, {"OPTBENCH_FAULT_COUNT": str(log)})
    assert done is not None and done[0] == 0, done
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines() if not line.startswith("held:")]


def check(folder: Path, tally: Tally, case: str, report: bool = True) -> None:
    """Every run stored exactly once as finished; a readable store; nothing RUNNING or left behind."""
    from bench import journal
    from bench.suite import Suite

    runs = {r.hash for r in Suite.load(folder / "s.toml").runs()}
    path = folder / JOURNAL
    data = path.read_bytes()
    if not data.endswith(b"\n") or not all(journal.is_record(line) for line in data.splitlines()):
        tally.problems.append(f"{case}: a journal line is not a record")
    check_runs(str(path), "faults", runs, tally, case)
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith((".part", ".lock", ".rename"))]
    if leftovers:
        tally.problems.append(f"{case}: left behind {leftovers}")
    if report and not (folder / "reports" / "faults.html").is_file():
        tally.problems.append(f"{case}: no report")


def check_runs(storage: str, name: str, runs: set[str], tally: Tally, case: str) -> list:
    """Every run stored exactly once as finished, nothing RUNNING; the study's trials."""
    from bench.store import Store

    study = Store.open(storage).existing_study(name)
    trials = study.get_trials(deepcopy=False) if study else []
    complete = [t.user_attrs.get("run_hash") for t in trials if t.state.name == "COMPLETE"]
    tally.runs_lost += sum(complete.count(h) == 0 for h in runs)
    if any(complete.count(h) > 1 for h in runs):
        tally.problems.append(f"{case}: a run stored twice")
    if any(t.state.name == "RUNNING" for t in trials):
        tally.problems.append(f"{case}: a trial left RUNNING")
    return trials


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def optbench_rerun(folder: Path, report: bool) -> tuple[int, str] | None:
    """The same `optbench run`, in this process (no interpreter start-up per case); None on a hang."""
    import torch

    from bench.cli import main

    err = io.StringIO()
    cwd = os.getcwd()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(RERUN_BOUND)
    try:
        os.chdir(folder)
        with contextlib.redirect_stderr(err):
            # this process's own thread count: changing it would change other tests' numerics (golden)
            threads = str(torch.get_num_threads())
            rc = main(["run", "s.toml", "--storage", JOURNAL, "--workers", "1", "--threads", threads, "--quiet",
                       "--no-sample", *([] if report else ["--no-report"])])  # fmt: skip
    except Hang:
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    return rc, err.getvalue()


def rerun_and_check(folder: Path, tally: Tally, case: str, report: bool = False) -> None:
    """Rerun; `report`: with the report (when the fault hit its temporary file), checked too."""
    done = optbench_rerun(folder, report)
    if done is None:
        tally.hangs += 1
        tally.problems.append(f"{case}: the rerun hung")
        return
    if done[0] != 0:
        tally.problems.append(f"{case}: the rerun exited {done[0]}: {done[1][-300:]}")
    check(folder, tally, case, report)


def fault_case(root: Path, tally: Tally, mode: str, n: int, report: bool = False) -> None:
    folder = fresh(root, f"{mode}-{n}")
    done = optbench_run(folder, {"OPTBENCH_FAULT": f"{mode}:{n}"})
    expected = 2 if mode == "enospc" else -signal.SIGKILL
    if done is None:
        tally.hangs += 1
        tally.problems.append(f"{mode} at {n}: hung")
    elif done[0] != expected and not (mode == "enospc" and done[0] == -signal.SIGKILL):
        tally.problems.append(f"{mode} at {n}: exited {done[0]}, expected {expected}: {done[1][-300:]}")
    elif mode == "enospc" and not one_line_naming(done[1]):
        tally.problems.append(f"enospc at {n}: no one-line message naming the file: {done[1][-300:]}")
    tally.killed_at += mode == "kill"
    tally.torn_at += mode == "torn"
    tally.enospc_at += mode == "enospc"
    rerun_and_check(folder, tally, f"{mode} at {n}", report)
    shutil.rmtree(folder)


def one_line_naming(err: str) -> bool:
    """A full disk said in one line that names the file (torch.save's own error names no cause: a real
    full disk adds it, read from the disk; an injected one leaves the disk with room)."""
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return "Traceback" not in err and "cannot write" in last and ("No space left on device" in last or ".pt: " in last)


def torn_offsets(root: Path, tally: Tally, offsets: list[int] | None) -> None:
    """Truncate a finished store's journal at byte offsets of its last record; each time, a rerun."""
    base = fresh(root, "torn-base")
    done = optbench_run(base)
    assert done is not None and done[0] == 0, done
    data = (base / JOURNAL).read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    cuts = range(last, len(data)) if offsets is None else [last + o for o in offsets if last + o < len(data)]
    for cut in cuts:
        folder = root / f"torn-{cut}"
        shutil.copytree(base, folder)
        (folder / JOURNAL).write_bytes(data[:cut])
        tally.torn_offsets += 1
        rerun_and_check(folder, tally, f"torn at byte {cut - last} of {len(data) - last}", report=False)
        shutil.rmtree(folder)


def read_only(root: Path, tally: Tally) -> None:
    """A store that cannot be written (injected: as root, chmod cannot make one) refuses in one line."""
    folder = fresh(root, "read-only")
    done = optbench_run(folder)
    before = (folder / JOURNAL).read_bytes()
    done = optbench_run(folder, {"OPTBENCH_FAULT": "erofs:1"})
    tally.read_only += 1
    if done is None or done[0] != 2 or "Read-only file system" not in done[1].splitlines()[-1]:
        tally.problems.append(f"read-only: {done}")
    if (folder / JOURNAL).read_bytes() != before:
        tally.problems.append("read-only: the store changed")


def start(folder: Path, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`optbench ARGS` in `folder`, in its own process group, stderr to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args], cwd=folder, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **PAUSE_ENV, **(env or {})},
    )  # fmt: skip


RUN = ["run", "s.toml", "--storage", JOURNAL, "--workers", "2", "--threads", "1", "--quiet", "--no-sample"]
DOCTOR = ["doctor", "--repair", "--storage", JOURNAL, "--reports", "reports"]


def stopped(group: int) -> list[int]:
    """The processes of a process group that are stopped (state T)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "T" and fields[2] == str(group):
                found.append(int(entry.name))
    return found


def supervise(procs: list[subprocess.Popen], folder: Path, tally: Tally, case: str) -> bool:
    """Resume each process of these groups that stops itself, PAUSE seconds after it stopped, checking that
    it still holds the journal lock then; False when they outlive RERUN_BOUND (a hang: all killed)."""
    from bench import journal

    deadline = time.monotonic() + RERUN_BOUND
    since: dict[int, float | None] = {}
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            return False
        for p in procs:
            for pid in stopped(p.pid):
                since.setdefault(pid, time.monotonic())
        for pid, at in since.items():
            if at is not None and time.monotonic() - at >= PAUSE:
                holder = journal.holder_of(folder / JOURNAL)
                if holder and holder.get("pid") == pid:
                    tally.kept_lock += 1
                else:
                    tally.problems.append(f"{case}: pid {pid}, paused, no longer held the lock ({holder})")
                os.kill(pid, signal.SIGCONT)
                since[pid] = None
                tally.paused += 1
        time.sleep(0.05)
    return True


def pause_case(root: Path, tally: Tally, point: str, n: int) -> None:
    """Every process of a two-worker suite pauses the `n`-th time it reaches `point` of an append."""
    case = f"stop at {point} {n}"
    folder = fresh(root, f"stop-{point.replace(':', '-')}-{n}")
    log = root / f"{folder.name}.log"
    proc = start(folder, RUN, log, {"OPTBENCH_FAULT": f"stop:{point}:{n}"})
    paused = tally.paused
    tally.stopped_at += 1
    if not supervise([proc], folder, tally, case):
        tally.hangs += 1
        tally.problems.append(f"{case}: hung")
        return
    err = log.read_text()
    tally.waits += err.count("optbench: waiting for the journal lock")
    if proc.returncode != 0:
        tally.problems.append(f"{case}: exited {proc.returncode}: {err[-300:]}")
    if tally.paused == paused:
        tally.problems.append(f"{case}: no process reached it")
    check(folder, tally, case)
    shutil.rmtree(folder)


def read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def wait_for(predicate, what: str, timeout: float | None = None) -> bool:
    """Wait until `predicate()`; False after `timeout` seconds, an AssertionError after RERUN_BOUND."""
    deadline = time.monotonic() + (timeout or RERUN_BOUND)
    while not predicate():
        if time.monotonic() > deadline:
            if timeout:
                return False
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return True


def doctor_while_running(root: Path, tally: Tally) -> None:
    """`doctor --repair` pauses after its snapshot while a suite (long enough to outlast it) runs."""
    case = "doctor paused at its snapshot while a suite runs"
    folder = fresh(root, "doctor-running")
    (folder / "s.toml").write_text(SUITE.replace("steps = 20", "steps = 600").replace("interval = 10", "interval = 50"))
    log = root / "doctor-running-suite.log"
    suite = start(folder, RUN, log)
    wait_for(lambda: b'"op_code":4' in read(folder / JOURNAL) or suite.poll() is not None, "a claim")
    doctor = start(folder, DOCTOR, root / "doctor-running-doctor.log", {"OPTBENCH_FAULT": "stop:doctor:snapshot:1"})
    wait_for(lambda: stopped(doctor.pid) or doctor.poll() is not None, "doctor to stop")
    # a worker's next append waits for doctor's lock (it appends at every evaluation)
    wait_for(lambda: "waiting for the journal lock" in log.read_text() or suite.poll() is not None, "a waiter", 60)
    if suite.poll() is not None:
        tally.problems.append(f"{case}: the suite had finished before doctor paused (make it longer)")
    paused = tally.paused
    tally.stopped_at += 1
    if not supervise([suite, doctor], folder, tally, case):
        tally.hangs += 1
        tally.problems.append(f"{case}: hung")
        return
    err = (root / "doctor-running-suite.log").read_text()
    tally.waits += err.count("optbench: waiting for the journal lock")
    said = (root / "doctor-running-doctor.log").read_text()
    if tally.paused == paused:
        tally.problems.append(f"{case}: doctor never paused")
    if doctor.returncode != 0 or suite.returncode != 0:
        tally.problems.append(f"{case}: doctor exited {doctor.returncode}, the suite {suite.returncode}: "
                              f"{said[-300:]} {err[-300:]}")  # fmt: skip
    check(folder, tally, case)
    shutil.rmtree(folder)


def doctor_while_starting(root: Path, tally: Tally, point: str, kill_at: int) -> None:
    """`doctor --repair` pauses at `point` about to rewrite a journal with a corrupt middle (left by a kill
    at boundary `kill_at`, then a line of garbage), while `optbench run` starts on it."""
    case = f"doctor paused at {point} while a suite starts"
    folder = fresh(root, f"doctor-{point.replace(':', '-')}")
    optbench_run(folder, {"OPTBENCH_FAULT": f"kill:{kill_at}"})
    path = folder / JOURNAL
    lines = path.read_bytes().splitlines(keepends=True)
    garbage = b"garbage, as a hostile edit or a bad disk leaves it\n"
    path.write_bytes(b"".join(lines[:2]) + garbage + b"".join(lines[2:]))
    kept = b"".join(line for line in lines if line.endswith(b"\n"))  # a torn tail is moved aside
    doctor = start(folder, DOCTOR, root / "doctor-starting-doctor.log", {"OPTBENCH_FAULT": f"stop:{point}:1"})
    wait_for(lambda: stopped(doctor.pid) or doctor.poll() is not None, "doctor to stop")
    log = root / "doctor-starting-suite.log"
    suite = start(folder, RUN, log)
    wait_for(lambda: "is rewriting it" in log.read_text() or suite.poll() is not None, "the suite to wait", 60)
    paused = tally.paused
    tally.stopped_at += 1
    if not supervise([suite, doctor], folder, tally, case):
        tally.hangs += 1
        tally.problems.append(f"{case}: hung")
        return
    err = (root / "doctor-starting-suite.log").read_text()
    said = (root / "doctor-starting-doctor.log").read_text()
    tally.waits += err.count("`optbench doctor --repair` is rewriting it")
    if tally.paused == paused:
        tally.problems.append(f"{case}: doctor never paused")
    if doctor.returncode != 0 or suite.returncode != 0:
        tally.problems.append(f"{case}: doctor exited {doctor.returncode}, the suite {suite.returncode}: "
                              f"{said[-300:]} {err[-300:]}")  # fmt: skip
    if not path.read_bytes().startswith(kept):
        tally.problems.append(f"{case}: a record before the repair was lost or moved")
    check(folder, tally, case)
    shutil.rmtree(folder)


# six runs long enough for a worker to be caught training
DEATH_SUITE = SUITE.replace("steps = 20", "steps = 300").replace("eval_interval = 10", "eval_interval = 50")
DEATH_SUITE = DEATH_SUITE.replace('optimizer = ["adamw", "lion"]', 'optimizer = ["adamw", "lion", "sgd"]')
DEATH_SUITE = DEATH_SUITE.replace("seeds = [0]", "seeds = [0, 1]")
OUTAGE_ENV = {"OPTBENCH_HEARTBEAT_INTERVAL": "1", "OPTBENCH_GRACE_PERIOD": "4"}


def death_folder(root: Path, name: str, suite_name: str = "faults", seeds: str = "[0, 1]") -> tuple[Path, set[str]]:
    from bench.suite import Suite

    folder = fresh(root, name)
    suite = DEATH_SUITE.replace('name = "faults"', f'name = "{suite_name}"')
    suite = suite.replace("seeds = [0, 1]", f"seeds = {seeds}")
    (folder / "s.toml").write_text(suite)
    return folder, {r.hash for r in Suite.load(folder / "s.toml").runs()}


def run_args(storage: str) -> list[str]:
    return ["run", "s.toml", "--storage", storage, "--workers", "2", "--threads", "1", "--quiet", "--no-report"]


def finish(proc: subprocess.Popen, log: Path, tally: Tally, case: str) -> tuple[int | None, str]:
    """Wait for `proc` (RERUN_BOUND); its exit code (None: it hung, and was killed) and stderr."""
    try:
        proc.wait(timeout=RERUN_BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        tally.hangs += 1
        tally.problems.append(f"{case}: hung")
        return None, log.read_text()
    err = log.read_text()
    if "Traceback" in err:
        tally.problems.append(f"{case}: a traceback: {err[-300:]}")
    return proc.returncode, err


def running_claims(storage: str, name: str) -> list:
    from optuna.trial import TrialState

    from bench.store import Store

    with contextlib.suppress(Exception):  # not created yet, or the database away
        study = Store.open(storage).existing_study(name)
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if study else []
    return []


def worker_killed(root: Path, tally: Tally, k: int) -> None:
    """SIGKILL (as the OOM killer sends it) of the worker that trains the k-th claim of the suite."""
    from tests.processes import children

    case = f"the worker of claim {k} killed"
    folder, runs = death_folder(root, f"killed-{k}")
    storage = str(folder / JOURNAL)
    log = root / f"killed-{k}.log"
    proc = start(folder, run_args(JOURNAL), log, {"OPTBENCH_LOCK_GRACE": "10", "OPTBENCH_GRACE_PERIOD": "20"})
    victim = None

    def claimed() -> bool:
        nonlocal victim
        workers = set(children(proc.pid))
        for t in running_claims(storage, "faults"):
            pid = (t.user_attrs.get("worker") or {}).get("pid")
            if t.number == k - 1 and pid in workers:
                os.kill(pid, signal.SIGKILL)
                victim = pid
        return victim is not None or proc.poll() is not None

    wait_for(claimed, f"claim {k}")
    tally.deaths_killed += victim is not None
    code, err = finish(proc, log, tally, case)
    if victim is None:
        tally.problems.append(f"{case}: the suite ended before claim {k} could be caught")
    elif code != 0:
        tally.problems.append(f"{case}: exited {code}: {err[-300:]}")
    elif f"(pid {victim}) was killed by SIGKILL" not in err:
        tally.problems.append(f"{case}: the death was not said: {err[-300:]}")
    trials = check_runs(storage, "faults", runs, tally, case)
    if victim is not None and not any((t.user_attrs.get("worker") or {}).get("pid") == victim
                                      and t.user_attrs.get("worker_died") for t in trials):  # fmt: skip
        tally.problems.append(f"{case}: the killed claim was not handed back as its worker's death")
    shutil.rmtree(folder)


def worker_boundaries(root: Path) -> int:
    """The most write boundaries one process of a clean two-worker run reaches (each counts from 1)."""
    folder, _ = death_folder(root, "count-workers")
    log = folder / "boundaries.log"
    proc = start(folder, run_args(JOURNAL), root / "count-workers.log", {"OPTBENCH_FAULT_COUNT": str(log)})
    code, err = finish(proc, root / "count-workers.log", Tally(), "count")
    assert code == 0, err
    most = max(int(line.split(" ", 1)[0]) for line in log.read_text().splitlines() if not line.startswith("held:"))
    shutil.rmtree(folder)
    return most


def worker_dies(root: Path, tally: Tally, mode: str, n: int) -> None:
    """Every worker process dies at its n-th write boundary (`raise`: a library's error; `segv`: a crash)."""
    case = f"every worker dying of {mode} at its write {n}"
    folder, runs = death_folder(root, f"{mode}-worker-{n}")
    log = root / f"{mode}-worker-{n}.log"
    code, err = finish(start(folder, run_args(JOURNAL), log, {"OPTBENCH_FAULT": f"{mode}:{n}"}), log, tally, case)
    tally.deaths_injected += 1
    last = err.strip().splitlines()[-1] if err.strip() else ""
    if code == 3:
        tally.deaths_reported += 1
        if "runs did not finish: run " not in last or "the same command runs them again" not in last:
            tally.problems.append(f"{case}: exit 3 without the line naming what did not run: {last}")
    elif code == 0:
        pass  # the deaths came after every run was stored, or each run survived them
    else:
        tally.problems.append(f"{case}: exited {code}: {err[-300:]}")
    again = root / f"{mode}-worker-{n}-again.log"
    code, err = finish(start(folder, run_args(JOURNAL), again), again, tally, f"{case}, rerun")
    if code != 0:
        tally.problems.append(f"{case}: the rerun exited {code}: {err[-300:]}")
    check_runs(str(folder / JOURNAL), "faults", runs, tally, case)
    shutil.rmtree(folder)


def deaths(root: Path, tally: Tally, quick: bool) -> None:
    for k in [2] if quick else range(1, 7):
        worker_killed(root, tally, k)
    most = worker_boundaries(root)
    # a worker's first claim, its attributes and first values lie in its first few writes; later ones repeat
    # those kinds, so they are tried ever more sparsely, up to its last
    spread = sorted({n for n in (1, 2, 3, 4, 5, 6, 8, 13, 21, 34, 55, 89, 144, most) if n <= most})
    for mode in ("raise", "segv"):
        for n in [3] if quick else spread:
            worker_dies(root, tally, mode, n)


def outage_case(root: Path, tally: Tally, case: str, act: Any, env: dict[str, str] | None = None) -> None:
    """A two-worker suite on the test database while `act(name, proc)` takes the database away."""
    import uuid

    from tests import postgres

    name = f"faults_{uuid.uuid4().hex[:8]}"
    # seeds no study of the shared database holds: else its runs are copied from there, not trained
    seed = uuid.uuid4().int % 2**40
    folder, runs = death_folder(root, name, name, seeds=f"[{seed}, {seed + 1}]")
    log = root / f"{name}.log"
    tally.outages += 1
    with postgres.server().kept():
        proc = start(folder, run_args(postgres.URL), log, {**OUTAGE_ENV, **(env or {})})
        expected = act(name, proc)
        code, err = finish(proc, log, tally, case)
    if code != expected:
        tally.problems.append(f"{case}: exited {code}, expected {expected}: {err[-300:]}")
    if code == 3:  # away past the retry bound: its kept results are stored by the next command
        if "is kept in" not in err:
            tally.problems.append(f"{case}: exit 3 without naming the kept results: {err[-300:]}")
        again = root / f"{name}-again.log"
        code, err = finish(start(folder, run_args(postgres.URL), again, OUTAGE_ENV), again, tally, f"{case}, rerun")
        if code != 0:
            tally.problems.append(f"{case}: the rerun exited {code}: {err[-300:]}")
    trials = check_runs(postgres.URL, name, runs, tally, case)
    if "taken from other suites" in err:
        tally.problems.append(f"{case}: runs were copied from other suites, not trained")
    if expected == 0 and any(t.state.name == "FAIL" for t in trials):
        tally.problems.append(f"{case}: a live worker's claim was failed")
    if list((folder / "results").glob("pending/*")):
        tally.problems.append(f"{case}: a result left in results/pending")
    shutil.rmtree(folder)


def outages(root: Path, tally: Tally, quick: bool) -> None:
    from tests import postgres

    server = postgres.server()
    if server is None:
        tally.problems.append("outages: no OPTBENCH_TEST_POSTGRES server this process may stop")
        return

    def stopped_at(k: int, away: float) -> Any:
        def act(name: str, proc: subprocess.Popen) -> int:
            wait_for(lambda: any(t.number >= k - 1 for t in running_claims(postgres.URL, name))
                     or proc.poll() is not None, f"claim {k}")  # fmt: skip
            time.sleep(1.0)
            server.stop()
            time.sleep(away)
            server.start()
            return 0

        return act

    def terminated(name: str, proc: subprocess.Popen) -> int:
        with postgres.terminating(postgres.URL, every=0.7) as counted:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=RERUN_BOUND)
        tally.terminated += sum(counted)
        return 0

    def past_bound(name: str, proc: subprocess.Popen) -> int:
        wait_for(lambda: len(running_claims(postgres.URL, name)) == 2 or proc.poll() is not None, "two claims")
        server.stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=RERUN_BOUND)
        server.start()
        return 3

    for k in [2] if quick else [1, 3, 5]:
        for away in (2.0, 12.0):
            outage_case(root, tally, f"the database stopped {away:.0f} s at claim {k}", stopped_at(k, away))
    outage_case(root, tally, "backends terminated in a loop", terminated)
    outage_case(root, tally, "the database away past the retry bound", past_bound, {"OPTBENCH_DB_RETRY": "6"})


def pauses(root: Path, tally: Tally, kinds: list[str], quick: bool) -> None:
    """SIGSTOP at every lock-held point, with a suite running (module docstring)."""
    for point in APPEND_POINTS:
        for n in [2] if quick else [1, 2, 3, 8, 20]:
            pause_case(root, tally, point, n)
    finish = kinds.index("journal:6") + 1  # the first finish: a kill after it leaves one run to do
    for point in ["doctor:rewritten"] if quick else ["doctor:snapshot", "doctor:rewritten"]:
        doctor_while_starting(root, tally, point, finish + 1)
    if not quick:
        doctor_while_running(root, tally)


def sweep(quick: bool = False, root: Path | None = None, progress: bool = False, only: str | None = None) -> Tally:
    """Every case (or, `quick`, a few of each kind; `only`: "writes" (with the pauses), "pauses", "deaths"
    or "outages" alone); `progress`
    prints the tally after each phase. Outages are left out, saying so, where no test database may be stopped."""
    tally = Tally()

    def phase(name: str) -> None:
        if progress:
            print(f"after {name}: {tally.line()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="optbench-faults-") as tmp:
        base = root or Path(tmp)
        if only in (None, "writes", "pauses"):
            writes(base, tally, quick, only, phase)
        if only in (None, "deaths"):
            deaths(base, tally, quick)
            phase("worker deaths")
        if only == "outages" or (only is None and os.environ.get("OPTBENCH_TEST_POSTGRES")):
            outages(base, tally, quick)
            phase("database outages")
        elif only is None and progress:
            print("database outages left out: no OPTBENCH_TEST_POSTGRES", flush=True)
    return tally


def writes(base: Path, tally: Tally, quick: bool, only: str | None, phase: Any) -> None:
    """Faults at the write boundaries of a clean run, and pauses at lock-held points."""
    kinds = count_boundaries(base)
    tally.boundaries = len(kinds)
    tally.kinds = {OPERATIONS.get(k, k): kinds.count(k) for k in dict.fromkeys(kinds)}
    appends = [i + 1 for i, k in enumerate(kinds) if k.startswith("journal")]
    files = [i + 1 for i, k in enumerate(kinds) if k in ("checkpoint", "report")]  # written inside a library
    claim = kinds.index(f"journal:{CREATE_TRIAL}") + 1
    middle = appends[len(appends) // 2]
    if only == "pauses":
        kills, torn, full, offsets = [], [], [], []
    elif quick:  # study creation, the first claim, one in the middle, the finish, the report's file
        kills = sorted({1, claim, middle, appends[-1], len(kinds)})
        torn, full, offsets = [claim, middle], [middle, *files[:1]], [0, 7, 60]
    else:  # every boundary killed, every offset torn; half-writes (torn, full disk) at every 4th append
        kills, torn, offsets = list(range(1, len(kinds) + 1)), appends[::4], None
        full = appends[2::4] + files
    for n in kills:
        fault_case(base, tally, "kill", n, report=kinds[n - 1] in ("temporary file", "report"))
    phase("kills")
    for n in torn:
        fault_case(base, tally, "torn", n)
    phase("torn writes")
    for n in full:
        fault_case(base, tally, "enospc", n, report=kinds[n - 1] == "report")
    phase("full disk")
    if only != "pauses":
        torn_offsets(base, tally, offsets)
        read_only(base, tally)
        phase("torn offsets and a read-only store")
    pauses(base, tally, kinds, quick)
    phase("pauses")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few boundaries of each kind")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--pauses", action="store_const", const="pauses", dest="only", help="only the pauses")
    only.add_argument("--deaths", action="store_const", const="deaths", dest="only", help="only worker deaths")
    only.add_argument("--outages", action="store_const", const="outages", dest="only", help="only database outages")
    args = parser.parse_args()
    tally = sweep(args.quick, progress=True, only=args.only)
    for problem in tally.problems:
        print(f"  {problem}")
    if tally.kinds:
        print("write boundaries of a clean run: " + ", ".join(f"{k} {n}" for k, n in tally.kinds.items()))
    print(tally.line())
    return 0 if not tally.problems and not tally.hangs and not tally.runs_lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
