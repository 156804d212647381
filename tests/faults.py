"""Crash tests at every write boundary of a small suite's life, not at random times.

    .venv/bin/python -m tests.faults          # the full sweep; prints the counts (docs/reliability.md)
    .venv/bin/python -m tests.faults --quick  # a few boundaries of each kind (what CI runs)
    .venv/bin/python -m tests.faults --pauses # only the pauses at lock-held points (all of them)

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
}  # fmt: skip


@dataclass
class Tally:
    boundaries: int = 0  # write boundaries of a clean run
    killed_at: int = 0  # boundaries killed before
    torn_at: int = 0  # appends torn by a kill halfway
    enospc_at: int = 0
    torn_offsets: int = 0
    read_only: int = 0
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
            f"{self.kept_lock} kept the lock, {self.waits} waiters said who held it); hangs {self.hangs}; "
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
    from bench.store import Store
    from bench.suite import Suite

    runs = {r.hash for r in Suite.load(folder / "s.toml").runs()}
    path = folder / JOURNAL
    data = path.read_bytes()
    if not data.endswith(b"\n") or not all(journal.is_record(line) for line in data.splitlines()):
        tally.problems.append(f"{case}: a journal line is not a record")
    study = Store.open(str(path)).existing_study("faults")
    trials = study.get_trials(deepcopy=False) if study else []
    complete = [t.user_attrs.get("run_hash") for t in trials if t.state.name == "COMPLETE"]
    tally.runs_lost += sum(complete.count(h) == 0 for h in runs)
    if any(complete.count(h) > 1 for h in runs):
        tally.problems.append(f"{case}: a run stored twice")
    if any(t.state.name == "RUNNING" for t in trials):
        tally.problems.append(f"{case}: a trial left RUNNING")
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith((".part", ".lock", ".rename"))]
    if leftovers:
        tally.problems.append(f"{case}: left behind {leftovers}")
    if report and not (folder / "reports" / "faults.html").is_file():
        tally.problems.append(f"{case}: no report")


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
    elif mode == "enospc" and "No space left on device" not in done[1]:
        tally.problems.append(f"enospc at {n}: no one-line message: {done[1][-300:]}")
    tally.killed_at += mode == "kill"
    tally.torn_at += mode == "torn"
    tally.enospc_at += mode == "enospc"
    rerun_and_check(folder, tally, f"{mode} at {n}", report)
    shutil.rmtree(folder)


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


def sweep(quick: bool = False, root: Path | None = None, progress: bool = False, only_pauses: bool = False) -> Tally:
    """Every case (or, `quick`, a few of each kind; `only_pauses`, the pauses alone); `progress` prints the
    tally after each phase."""
    tally = Tally()

    def phase(name: str) -> None:
        if progress:
            print(f"after {name}: {tally.line()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="optbench-faults-") as tmp:
        base = root or Path(tmp)
        kinds = count_boundaries(base)
        tally.boundaries = len(kinds)
        tally.kinds = {OPERATIONS.get(k, k): kinds.count(k) for k in dict.fromkeys(kinds)}
        appends = [i + 1 for i, k in enumerate(kinds) if k.startswith("journal")]
        claim = kinds.index(f"journal:{CREATE_TRIAL}") + 1
        middle = appends[len(appends) // 2]
        if only_pauses:
            kills, torn, full, offsets = [], [], [], []
        elif quick:  # study creation, the first claim, one in the middle, the finish, the report's file
            kills = sorted({1, claim, middle, appends[-1], len(kinds)})
            torn, full, offsets = [claim, middle], [middle], [0, 7, 60]
        else:  # every boundary killed, every offset torn; half-writes (torn, full disk) at every 4th append
            kills, torn, offsets = list(range(1, len(kinds) + 1)), appends[::4], None
            full = appends[2::4]
        for n in kills:
            fault_case(base, tally, "kill", n, report=kinds[n - 1] == "temporary file")
        phase("kills")
        for n in torn:
            fault_case(base, tally, "torn", n)
        phase("torn writes")
        for n in full:
            fault_case(base, tally, "enospc", n)
        phase("full disk")
        if not only_pauses:
            torn_offsets(base, tally, offsets)
            read_only(base, tally)
            phase("torn offsets and a read-only store")
        pauses(base, tally, kinds, quick)
        phase("pauses")
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few boundaries of each kind")
    parser.add_argument("--pauses", action="store_true", help="only the pauses at lock-held points")
    args = parser.parse_args()
    tally = sweep(args.quick, progress=True, only_pauses=args.pauses)
    for problem in tally.problems:
        print(f"  {problem}")
    print("write boundaries of a clean run: " + ", ".join(f"{k} {n}" for k, n in tally.kinds.items()))
    print(tally.line())
    return 0 if not tally.problems and not tally.hangs and not tally.runs_lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
