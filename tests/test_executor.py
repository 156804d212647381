"""bench.executor: the one claim -> train -> finish loop of a suite's runs and a search's trials: what a
failed run says and keeps, a broken CUDA context, a result whose claim was taken over. The suite's and the
search's own works are tested in tests/test_runner.py and tests/test_search.py."""

import optuna
import pytest
import torch
from suite_files import write_suite

from bench import devices
from bench.executor import Job, finish_or_drop, work_loop
from bench.results import suite_results
from bench.runner import Plan
from bench.store import Store
from bench.suite import Suite
from bench.train import Training


@pytest.mark.device
def test_a_run_that_breaks_the_context_is_marked_and_its_worker_exits(tmp_path, monkeypatch):
    import bench.train

    def broken(self):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(Training, "step", broken)
    monkeypatch.setattr(bench.train, "context_broken", lambda device: True)
    path = write_suite(tmp_path, "poison", 'optimizer = ["adamw", "lion"]', seeds="[0]")
    with pytest.raises(SystemExit) as stop:
        plan = Plan(str(path), {}, str(tmp_path / "s.journal"), 1, 1)
        work_loop(plan.open(), plan.crew)
    assert stop.value.code == devices.CUDA_POISONED_EXIT
    frame = suite_results(Suite.load(path), str(tmp_path / "s.journal"))
    assert list(frame["status"]) == ["failed"]  # stored before the worker left; the other run waits for a fresh one


def test_a_failed_run_says_why_in_one_line_and_keeps_the_traceback(tmp_path, monkeypatch, capsys):
    from bench import train as train_module

    path = write_suite(tmp_path, "fails", 'optimizer = ["adamw"]', seeds="[0]")
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'
    monkeypatch.setattr(
        train_module, "run_training",
        lambda cfg, device=None, hooks=(): (train_module.RunRecord(cfg.to_dict(), cfg.hash, error=error), None),
    )  # fmt: skip
    storage = str(tmp_path / "j.journal")
    plan = Plan(str(path), {}, storage, 1, torch.get_num_threads())
    work_loop(plan.open(), plan.crew)  # threads kept: see tests/faults.py
    assert "failed: ValueError: boom" in capsys.readouterr().err
    (trial,) = Store.open(storage).existing_study("fails").get_trials()
    assert trial.user_attrs["error"] == error and trial.user_attrs["status"] == "failed"


def test_a_result_whose_claim_was_taken_over_is_dropped_in_one_line(capsys):
    class Work:
        finished = []

        def finish(self, job, records):
            if job.trial_id == 1:
                raise optuna.exceptions.UpdateFinishedTrialError("trial 1 has already finished")
            self.finished.append(job.trial_id)

    work = Work()
    assert finish_or_drop(work, Job(1, "run optimizer=lion (seed 0)", []), []) is False
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("optbench: run optimizer=lion (seed 0): its claim was taken over")
    assert finish_or_drop(work, Job(2, "trial 2", []), []) is True and work.finished == [2]
