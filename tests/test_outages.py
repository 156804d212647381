"""Database outages wait, not lose: a real PostgreSQL stopped mid-suite and started again, its backends
terminated in a loop, or gone for longer than OPTBENCH_DB_RETRY; every run is stored exactly once, and
the messages and exit codes are the README's. These tests stop the server OPTBENCH_TEST_POSTGRES names
(a throwaway one, as .ci/postgres.sh starts)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import optuna
import pytest

from bench.store import Store
from bench.suite import Suite
from tests import postgres
from tests.journals import ROOT
from tests.suite_files import write_suite

SERVER = postgres.server()
needs_server = pytest.mark.skipif(SERVER is None, reason="needs OPTBENCH_TEST_POSTGRES on a server this test may stop")
# heartbeats every second, stale after 4 s: every outage below outlasts the grace period
FAST = {"OPTBENCH_HEARTBEAT_INTERVAL": "1", "OPTBENCH_GRACE_PERIOD": "4"}


def suite(tmp_path, steps=300):
    """A suite of 6 runs no study of the shared database holds yet (else they are copied, not trained)."""
    name = f"outage_{uuid.uuid4().hex[:8]}"
    seed = uuid.uuid4().int % 2**40
    axes = 'optimizer = ["adamw", "lion", "sgd"]'
    return name, write_suite(tmp_path, name, axes, seeds=f"[{seed}, {seed + 1}]", steps=steps)


def start(path, env=None, workers="2"):
    args = [sys.executable, "-m", "bench", "run", str(path), "--storage", postgres.URL, "--workers", workers,
            "--threads", "1", "--quiet", "--no-report"]  # fmt: skip
    return subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=path.parent,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **FAST, **(env or {})})  # fmt: skip


def running(name):
    study = Store.open(postgres.URL).existing_study(name)
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if study else []


def stored_once(name, path):
    """Every run of the suite stored exactly once as finished."""
    trials = Store.open(postgres.URL).existing_study(name).get_trials()
    complete = Counter(t.user_attrs["run_hash"] for t in trials if t.state.name == "COMPLETE")
    return complete == Counter(r.hash for r in Suite.load(path).runs()), trials


@needs_server
@pytest.mark.parametrize("away", [12.0, 2.0])
def test_a_database_stopped_mid_suite_then_started_again_loses_nothing(tmp_path, away):
    name, path = suite(tmp_path)
    with SERVER.kept():
        proc = start(path)
        postgres.wait_until(lambda: len(running(name)) == 2)
        time.sleep(1.0)  # both workers well into training
        SERVER.stop()
        time.sleep(away)
        SERVER.start()
        err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    if away > 4:  # longer than the grace period: every worker met it (a short one may fall between calls)
        assert "optbench: lost the database postgresql://" in err and "retrying for up to 300 s" in err
        assert "is back after" in err
    once, trials = stored_once(name, path)
    assert once, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert not [t for t in trials if t.state.name == "FAIL"]  # no live worker was judged gone
    assert not list((tmp_path / "results").glob("pending/*"))


@needs_server
def test_backends_terminated_in_a_loop_lose_nothing(tmp_path):
    name, path = suite(tmp_path)
    proc = start(path)
    with postgres.terminating(postgres.URL, every=0.7) as terminated:
        err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 0, err
    assert sum(terminated) >= 10 and "Traceback" not in err
    once, trials = stored_once(name, path)
    assert once, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]


@needs_server
def test_a_database_away_past_the_retry_bound_keeps_finished_results_on_disk_until_it_returns(tmp_path):
    name, path = suite(tmp_path, steps=200)
    with SERVER.kept():
        proc = start(path, {"OPTBENCH_DB_RETRY": "6"})
        postgres.wait_until(lambda: len(running(name)) == 2)
        SERVER.stop()  # the workers finish training meanwhile, and cannot store what they trained
        err = proc.communicate(timeout=600)[1]
        assert proc.returncode == 3, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("optbench: the database postgresql://") and "stayed unreachable for" in last, err
        assert "Traceback" not in err
        kept = list((tmp_path / "results" / "pending").glob("*.json"))
        assert kept and "is kept in" in err
        SERVER.start()
    again = start(path)
    err = again.communicate(timeout=600)[1]
    assert again.returncode == 0, err
    assert err.count("optbench: stored the result of trial") == len(kept)
    once, trials = stored_once(name, path)
    assert once, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert not list((tmp_path / "results" / "pending").glob("*"))
    # the kept results were stored, not trained again: as many trials finished as runs, no more
    assert Counter(t.state.name for t in trials)["COMPLETE"] == len(Suite.load(path).runs())


@pytest.mark.skipif(not postgres.URL, reason="needs OPTBENCH_TEST_POSTGRES")
def test_a_paused_worker_whose_claim_was_taken_drops_its_late_result_in_one_line(tmp_path):
    """SIGSTOP past the grace period: its heartbeats stop, its claim is failed and its run trained by the
    other worker; resumed, it finishes training and drops what it trained, saying so, and the suite ends 0."""
    from tests.processes import children

    name, path = suite(tmp_path, steps=600)
    proc = start(path)
    victim = None
    while victim is None and proc.poll() is None:
        workers = set(children(proc.pid))
        victim = next((t.user_attrs["worker"]["pid"] for t in running(name)
                       if t.user_attrs.get("worker", {}).get("pid") in workers), None)  # fmt: skip
        time.sleep(0.2)
    os.kill(victim, signal.SIGSTOP)
    time.sleep(30)  # far past the 4 s grace period
    os.kill(victim, signal.SIGCONT)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 0, err
    dropped = [line for line in err.splitlines() if "its claim was taken over while this worker was away" in line]
    assert len(dropped) == 1 and "its result is dropped" in dropped[0] and "Traceback" not in err
    once, trials = stored_once(name, path)
    assert once and [t.state.name for t in trials].count("FAIL") == 1
