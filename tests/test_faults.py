"""The crash harness (tests/faults.py), CI-sized: kills, torn writes and a full disk at chosen write
boundaries, torn tails at a few byte offsets, a read-only store, and pauses (SIGSTOP longer than every
grace period) at each lock-held point of an append and of doctor's rewrite while a suite runs; workers
killed or dying at a write; database outages. The full sweep: python -m tests.faults."""

import os
import signal

import optuna
import pytest

from bench.store import Store
from tests import faults, postgres


def test_kills_torn_writes_and_a_full_disk_at_write_boundaries_lose_nothing(tmp_path):
    tally = faults.sweep(quick=True, root=tmp_path, only="writes")
    assert tally.problems == [] and tally.hangs == 0 and tally.runs_lost == 0
    assert (tally.killed_at, tally.torn_at, tally.enospc_at, tally.torn_offsets, tally.read_only) == (5, 2, 2, 3, 1)
    # three points of an append (every process of a two-worker suite pausing at its second), doctor's rewrite
    assert tally.stopped_at == 4 and tally.paused >= 4 and tally.kept_lock == tally.paused and tally.waits >= 1
    assert tally.kinds["claim (trial creation)"] == 2 and tally.kinds["report's temporary file"] >= 1


def test_the_harness_sees_a_lost_run_and_a_trial_left_running(tmp_path):
    folder = faults.fresh(tmp_path, "planted")
    store = Store.open(str(folder / faults.JOURNAL))
    optuna.create_study(study_name="faults", storage=store.storage).ask()
    tally = faults.Tally()
    faults.check(folder, tally, "planted")
    assert tally.runs_lost == 2 and any("RUNNING" in p for p in tally.problems)
    assert any("no report" in p for p in tally.problems)


def test_the_harness_sees_a_paused_process_that_lost_its_lock(tmp_path, monkeypatch):
    """A stopped process that no longer holds the lock when resumed is a problem, not a pass."""
    from bench import journal

    folder = faults.fresh(tmp_path, "lost")
    proc = faults.start(folder, ["list"], tmp_path / "lost.log")
    os.kill(proc.pid, signal.SIGSTOP)  # stopped, but holding no journal lock
    monkeypatch.setattr(journal, "holder_of", lambda path: None)
    tally = faults.Tally()
    assert faults.supervise([proc], folder, tally, "planted") and proc.returncode == 0
    assert tally.paused == 1 and tally.kept_lock == 0 and "no longer held the lock" in tally.problems[0]


def test_workers_killed_or_dying_at_a_write_lose_nothing_and_say_so(tmp_path):
    tally = faults.Tally()
    faults.deaths(tmp_path, tally, quick=True)
    assert tally.problems == [] and tally.hangs == 0 and tally.runs_lost == 0
    assert tally.deaths_killed == 1 and tally.deaths_injected == 2


@pytest.mark.skipif(postgres.server() is None, reason="needs OPTBENCH_TEST_POSTGRES on a server this test may stop")
def test_database_outages_lose_nothing(tmp_path):
    tally = faults.Tally()
    faults.outages(tmp_path, tally, quick=True)
    assert tally.problems == [] and tally.hangs == 0 and tally.runs_lost == 0
    assert tally.outages == 4 and tally.terminated >= 5
