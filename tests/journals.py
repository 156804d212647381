"""Helpers for tests of the journal store: made-up stores, optbench and Python in other processes, and
processes that hold or wait for a journal's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from processes import one_line_error  # noqa: F401 -- the journal tests import it from here
from processes import run_optbench as optbench  # noqa: F401 -- likewise

from bench.store import Store

ROOT = Path(__file__).resolve().parent.parent


def fabricated(path: Path, runs: int = 3) -> Store:
    """A journal holding `runs` finished trials (no training needed)."""
    store = Store.open(str(path))
    study = store.study("fab")
    for i in range(runs):
        study.add_trial(optuna.trial.create_trial(value=float(i), user_attrs={"run_hash": f"h{i}"}))
    return store


def hashes(path: Path) -> list[str]:
    return [t.user_attrs.get("run_hash") for t in Store.open(str(path)).existing_study("fab").get_trials()]


# A process appending records to a journal: `python -c APPENDER JOURNAL NAME COUNT [GO_FILE]`. Each record
# names its writer and number; with GO_FILE it starts once that file exists (so that all contend at once).
APPENDER = """
import os, sys, time
from pathlib import Path
from bench.journal import CheckedJournal
path, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if len(sys.argv) > 4:
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.005)
journal = CheckedJournal(path)
for i in range(count):
    journal.append_logs([{"op_code": 99, "writer": name, "i": i}])
"""


def appender(path: Path, name: str, count: int = 1, go: Path | None = None, env=None, stderr=None):
    """A process running APPENDER in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(path), name, str(count), *([str(go)] if go else [])],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=stderr if stderr is not None else subprocess.PIPE,
    )  # fmt: skip


def state(pid: int) -> str | None:
    """The process's state letter (T: stopped) or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_stopped(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until `proc` has stopped itself (SIGSTOP at a planned lock-held point)."""
    deadline = time.monotonic() + timeout
    while state(proc.pid) != "T":
        assert proc.poll() is None, f"exited {proc.returncode} before stopping: {proc.stderr and proc.stderr.read()}"
        assert time.monotonic() < deadline, "never stopped"
        time.sleep(0.02)


def resume(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGCONT)


def records(path: Path) -> list[tuple[str, int]]:
    """(writer, number) of every APPENDER record in a journal; asserts every line is a whole record."""
    import json

    from bench import journal

    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    lines = data.splitlines()
    assert all(journal.is_record(line) for line in lines)
    return [(r["writer"], r["i"]) for r in map(json.loads, lines) if r.get("op_code") == 99]


def wait_said(log, text: str, timeout: float = 120) -> None:
    """Wait until the file `log` (open for reading) holds `text`, and then a grace period (1 s) more: a
    waiter says so after 2 s, so by then it has waited past the smallest OPTBENCH_LOCK_GRACE twice over."""
    deadline = time.monotonic() + timeout
    while True:
        log.seek(0)
        if text in log.read():
            break
        assert time.monotonic() < deadline, f"never said {text!r}"
        time.sleep(0.05)
    time.sleep(1.0)
