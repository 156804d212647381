"""Helpers for tests that start optbench in other processes and stop them."""

import os
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


def run_optbench(*args, env=None, cwd=None, timeout=180):
    """`optbench ARGS` run to its end in another process: its CompletedProcess (stdout and stderr as text)."""
    root = str(Path(__file__).resolve().parent.parent)  # importable from any working folder
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "PYTHONPATH": root, **(env or {})},
    )  # fmt: skip


def one_line_error(done, after_start: int = 0) -> str:
    """The error line of a command that exited 2; `after_start`: it may have printed its plan first (the
    optimizer-kernel choices `optbench run` announces with its plan are not counted)."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and " kernels for " not in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 + int(after_start) and lines[-1].startswith("optbench: error:"), done.stderr[-2000:]
    return lines[-1]


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


def write_threads(path: str) -> None:
    """A worker target (spawned): writes the thread count its environment gave it and torch's."""
    import torch

    Path(path).write_text(f"{os.environ.get('OMP_NUM_THREADS')} {torch.get_num_threads()}")


def raise_bad_input(message: str) -> None:
    """A worker target (spawned): bad input found while running, as an unwritable store is."""
    from bench.registry import ConfigError

    raise ConfigError("--storage", message)


def wait_for_stop(started: str) -> None:
    """A worker target (spawned): says it started, then runs until it is stopped."""
    Path(started).write_text("started")
    while True:
        time.sleep(0.1)
