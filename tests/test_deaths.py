"""A worker that dies of anything (SIGKILL as the OOM killer sends it, a crash in native code, a library's
error) is noticed at once: its claim is handed back naming why, a fresh worker trains the run, a bounded
number of times; and `optbench run` / `optbench search` exit 0 only when everything asked for finished."""

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest

from bench.runner import MAX_DEATHS
from bench.store import Store
from bench.suite import Suite
from tests.journals import ROOT
from tests.processes import children
from tests.suite_files import write_suite

RUN = ["--workers", "2", "--threads", "1", "--quiet", "--no-report"]


def start(*args, env=None, cwd=None):
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, start_new_session=True,
    )  # fmt: skip


def trials(storage, name):
    study = Store.open(storage).existing_study(name)
    return study.get_trials(deepcopy=False) if study else []


def test_a_worker_killed_as_the_oom_killer_does_is_replaced_and_the_suite_finishes(tmp_path):
    path = write_suite(tmp_path, "oom", 'optimizer = ["adamw", "lion", "sgd"]', seeds="[0, 1]", steps=300)
    storage = str(tmp_path / "j.journal")
    runner = start("run", str(path), "--storage", storage, *RUN)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline:
        workers = set(children(runner.pid))
        for t in trials(storage, "oom"):
            pid = (t.user_attrs.get("worker") or {}).get("pid")
            if t.state.name == "RUNNING" and pid in workers:
                victim, killed_run = pid, t.user_attrs["run_hash"]
                os.kill(pid, signal.SIGKILL)  # this worker alone, by its pid
                break
        time.sleep(0.1)
    assert victim is not None
    out, err = runner.communicate(timeout=300)
    assert runner.returncode == 0, err
    said = rf"worker \d \(pid {victim}\) was killed by SIGKILL, as the OOM killer does; starting a fresh one"
    assert re.search(said, err), err
    stored = trials(storage, "oom")
    complete = [t.user_attrs["run_hash"] for t in stored if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(r.hash for r in Suite.load(path).runs())  # every run once
    (dead,) = [t for t in stored if t.state.name == "FAIL"]
    assert dead.user_attrs["run_hash"] == killed_run and dead.user_attrs["worker_died"]
    # handed back by the runner, which saw it die; or by the other worker, had it found the claim's worker gone first
    assert dead.user_attrs["error"] in (f"its worker (pid {victim}) was killed by SIGKILL, as the OOM killer does",
                                        f"its worker (pid {victim}) is gone")  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "why"),
    [("segv", "was killed by SIGSEGV (a crash in native code)"),
     ("raise", "died of RuntimeError: injected: a library's own error")],
)  # fmt: skip
def test_a_run_whose_every_worker_dies_is_retried_a_bounded_number_of_times_then_named_exit_3(tmp_path, mode, why):
    """Every worker dies at its third write (the first after its claim): the run is claimed MAX_DEATHS times,
    then named in one line, and the command exits 3; the same command without the fault finishes it."""
    path = write_suite(tmp_path, "dies", 'optimizer = ["adamw"]', seeds="[0]")
    storage = str(tmp_path / "j.journal")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(path), "--storage", storage, *RUN], capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OPTBENCH_FAULT": f"{mode}:3"}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("optbench: 1 of 1 runs did not finish: run optimizer=adamw (seed 0) was interrupted: ")
    # the runner that saw it die says why; another worker that found the claim's worker gone first, that it is
    gone = r"its worker \(pid \d+\) is gone"
    assert why in last or re.search(gone, last), last
    assert f"({MAX_DEATHS} attempts)" in last and "the same command runs them again" in last
    assert "Traceback" not in done.stderr
    stored = trials(storage, "dies")
    assert len(stored) == MAX_DEATHS and all(t.user_attrs.get("worker_died") for t in stored)
    assert all(why in t.user_attrs["error"] or re.fullmatch(gone, t.user_attrs["error"]) for t in stored)
    again = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(path), "--storage", storage, *RUN], capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert [t.state.name for t in trials(storage, "dies")][-1] == "COMPLETE"


def test_a_worker_in_this_process_that_dies_of_a_library_error_hands_its_run_back_and_starts_again(
    tmp_path, monkeypatch, capsys
):
    from bench.cli import main
    from bench.runner import SuiteWork

    path = write_suite(tmp_path, "inproc", 'optimizer = ["adamw", "sgd"]', seeds="[0]")
    finish, calls = SuiteWork.finish, []

    def fails_once(self, job, records):
        calls.append(job.trial_id)
        if len(calls) == 1:
            raise optuna.exceptions.StorageInternalError("the commit failed")
        finish(self, job, records)

    monkeypatch.setattr(SuiteWork, "finish", fails_once)
    assert main(["run", str(path), "--workers", "1", "--quiet", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "died of StorageInternalError: the commit failed; its run is handed back" in err
    stored = trials(None, "inproc")
    assert [t.state.name for t in stored].count("COMPLETE") == 2
    (dead,) = [t for t in stored if t.state.name == "FAIL"]
    assert dead.user_attrs["error"].startswith(f"its worker (pid {os.getpid()}) died of StorageInternalError")


def test_a_failed_run_is_exit_1_naming_it(tmp_path, monkeypatch, capsys):
    from bench.cli import main
    from bench.train import RunRecord

    path = write_suite(tmp_path, "fails", 'optimizer = ["adamw", "sgd"]', seeds="[0]")

    def failing(cfg, *a, **k):
        if cfg.optimizer.name == "sgd":
            return RunRecord(cfg.to_dict(), cfg.hash, error="Traceback ...\nValueError: sgd broke"), None
        return real(cfg, *a, **k)

    import bench.train

    real = bench.train.run_training
    monkeypatch.setattr(bench.train, "run_training", failing)
    assert main(["run", str(path), "--workers", "1", "--quiet", "--no-report"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("optbench: 1 of 2 runs did not finish: run optimizer=sgd (seed 0) failed: ValueError: sgd")


SEARCH = '\n[search]\noptimizer = ["adamw", "lion"]\n"optimizer.lr" = { low = 1e-4, high = 1e-2, log = true }\n'


@pytest.mark.parametrize("mode", ["segv", "raise"])
def test_a_search_whose_workers_all_die_is_exit_3_naming_why_not_exit_0(tmp_path, mode):
    """The search that once "trained nothing, exited 0": every worker dies after its claim; the search stops
    claiming once as many trials died as it was asked for, names why in one line, and exits 3."""
    path = write_suite(tmp_path, "sdies", 'optimizer = ["adamw"]', seeds="[0]")
    path.write_text(path.read_text().split("\n[axes]")[0] + SEARCH)
    storage = str(tmp_path / "j.journal")
    args = [sys.executable, "-m", "bench", "search", str(path), "--storage", storage, "--trials", "2",
            "--workers", "2", "--threads", "1", "--quiet", "--no-report", "--pruner", "none"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(args, capture_output=True, text=True, env={**env, "OPTBENCH_FAULT": f"{mode}:3"}, timeout=600)
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("optbench: the search did not finish: sdies.search: 0 of 2 trials finished: "), last
    assert "lost their worker" in last and "the same command resumes it" in last
    assert "Traceback" not in done.stderr
    stored = trials(storage, "sdies.search")
    assert stored and all(t.state.name == "FAIL" and t.user_attrs.get("worker_died") for t in stored), [
        (t.state.name, t.user_attrs.get("error")) for t in stored
    ]
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert [t.state.name for t in trials(storage, "sdies.search")].count("COMPLETE") == 2
