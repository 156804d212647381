"""bench.results: the stored runs a suite file implies now, in the file's order, runs it no longer implies
counted apart."""

import optuna
from fabricate import fabricate_runs
from processes import run_optbench
from suite_files import GRID_12, write_suite

from bench.results import suite_results
from bench.store import Store
from bench.suite import Suite


def test_a_study_without_any_claim_reads_as_no_results(tmp_path):
    path = write_suite(tmp_path, "early", GRID_12)
    storage = str(tmp_path / "j.journal")
    optuna.create_study(study_name="early", storage=Store.open(storage).storage).ask()
    done = run_optbench("results", str(path), "--storage", storage)
    assert done.returncode == 0 and "no results for suite 'early' yet" in done.stdout, done.stderr


def test_the_runs_an_edited_file_implies_are_kept_in_its_order_and_the_others_counted(tmp_path):
    path = write_suite(tmp_path, "edited", GRID_12)  # 3 optimizers x 2 rates x 2 seeds
    storage = str(tmp_path / "e.journal")
    fabricate_runs(Suite.load(path), storage, status=lambda i: "complete")
    path.write_text(path.read_text().replace('["adamw", "lion", "sgd"]', '["sgd", "adamw"]'))
    edited = Suite.load(path)
    frame = suite_results(edited, storage)
    assert list(frame["run_hash"]) == [r.hash for r in edited.runs()]  # the file's order, not the store's
    assert frame.attrs["left_out"] == 4 and set(frame["stage"]) == {"grid"}
