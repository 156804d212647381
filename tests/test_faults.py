"""The crash harness (tests/faults.py), CI-sized: kills, torn writes and a full disk at chosen write
boundaries, torn tails at a few byte offsets, a read-only store. The full sweep: python -m tests.faults."""

import optuna

from bench.store import Store
from tests import faults


def test_kills_torn_writes_and_a_full_disk_at_write_boundaries_lose_nothing(tmp_path):
    tally = faults.sweep(quick=True, root=tmp_path)
    assert tally.problems == [] and tally.hangs == 0 and tally.runs_lost == 0
    assert (tally.killed_at, tally.torn_at, tally.enospc_at, tally.torn_offsets, tally.read_only) == (5, 2, 1, 3, 1)
    assert tally.kinds["claim (trial creation)"] == 2 and tally.kinds["report's temporary file"] >= 1


def test_the_harness_sees_a_lost_run_and_a_trial_left_running(tmp_path):
    folder = faults.fresh(tmp_path, "planted")
    store = Store.open(str(folder / faults.JOURNAL))
    optuna.create_study(study_name="faults", storage=store.storage).ask()
    tally = faults.Tally()
    faults.check(folder, tally, "planted")
    assert tally.runs_lost == 2 and any("RUNNING" in p for p in tally.problems)
    assert any("no report" in p for p in tally.problems)
