"""Helpers for tests that start optbench in other processes and stop them."""

import subprocess
import sys
import time
from pathlib import Path

import optuna

from bench.store import Store


def optbench(*args, log=None, **kw):
    """`optbench ARGS` in its own process group; stderr to `log` (a path) when given."""
    stderr = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 -- closed with the process
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True, **kw)  # fmt: skip


def logs(tmp_path):
    return "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in sorted(tmp_path.glob("*.log")))


def stat_fields(pid):
    """/proc/PID/stat after the command name: state, ppid, ...; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_running(pid):
    """Alive and not a zombie (a container's init may not reap orphans)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid):
    """The running child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(entry.name)
            if fields and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def wait_until_gone(pids, timeout=60):
    """The pids still running after up to `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(process_running(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if process_running(p)]


def running_trials(storage, study_name, count, timeout=120, attr=None):
    """Wait until `count` trials of the study are running (and carry the user attribute `attr`, which a
    claim writes just after its trial starts); those trials."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        study = Store.open(storage).existing_study(study_name)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if study else []
        running = [t for t in running if attr is None or attr in t.user_attrs]
        if len(running) >= count:
            return running
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} trials of {study_name} running within {timeout} s")


def exit_poisoned_once(marker: str) -> None:
    """A worker target (spawned): the first process exits as one whose CUDA context broke, the next finishes."""
    from bench.devices import CUDA_POISONED_EXIT

    path = Path(marker)
    if not path.exists():
        path.write_text("first")
        raise SystemExit(CUDA_POISONED_EXIT)
    path.write_text("replaced")
