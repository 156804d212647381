"""bench.codec: the one mapping between runs and trials, written and read back through a real store."""

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import codec
from bench.codec import Status
from bench.store import Store, load_results
from bench.suite import Suite
from bench.train import RunRecord

SUITE = Suite.parse({"suite": {"name": "codec"}, "base": {"model": "tiny", "steps": 20, "schedule": "constant"},
                     "axes": {"optimizer": ["adamw", "lion"], "batch_size": [4, 8]}})  # fmt: skip
SETTLED = [s for s in Status if s not in (Status.RUNNING, Status.PRUNED)]  # what a suite run ends as
losses = st.floats(0.01, 20, allow_nan=False)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(SETTLED), losses, st.lists(losses, min_size=1, max_size=5)),
                min_size=1, max_size=4))  # fmt: skip
def test_a_run_written_as_a_trial_reads_back_as_the_same_run(tmp_path_factory, outcomes):
    path = str(tmp_path_factory.mktemp("codec") / "s.journal")
    store = Store.open(path)
    study = store.study(SUITE.name)
    runs = SUITE.runs()
    for run, (status, loss, val) in zip(runs, outcomes, strict=False):
        trial_id = store.create_running_trial(study, codec.claim_attrs(run, SUITE.name, "s", {}))
        (claim,) = [t for t in study.get_trials() if t.user_attrs["run_hash"] == run.hash]
        assert codec.trial_status(claim) is Status.RUNNING and codec.trial_id(store.storage, study, claim) == trial_id
        if status is Status.INTERRUPTED:
            codec.write_interrupted(store.storage, trial_id)
            continue
        record = RunRecord(
            config=run.config.to_dict(), config_hash=run.hash, status=status.value,
            final_val_loss=None if status in (Status.DIVERGED, Status.FAILED) else loss, steps=len(val),
            train_time=loss, cpu_time=2 * loss,
            curves={"val_step": list(range(1, len(val) + 1)), "val_loss": val, "train_loss": val},
        )  # fmt: skip
        store.finish(trial_id, record, [codec.metric_value(record, SUITE.metric_field)])
    frame = load_results(SUITE.name, path).set_index("run_hash")
    assert len(frame) == min(len(runs), len(outcomes))
    for run, (status, loss, val) in zip(runs, outcomes, strict=False):
        row = frame.loc[run.hash]
        assert row["status"] == status.value and row["arm"] == run.arm_label
        assert json.loads(row["config"]) == run.config.to_dict()
        if status in (Status.COMPLETE, Status.STOPPED_EARLY):
            assert row["value"] == loss and row["final_val_loss"] == loss and row["curves"]["val_loss"].tolist() == val
            assert row["train_time"] == loss and row["cpu_time"] == 2 * loss
        elif status is Status.DIVERGED:
            assert math.isinf(row["value"])
        else:
            assert row["value"] is None or math.isnan(row["value"])
    trials = {t.user_attrs["run_hash"]: t for t in study.get_trials()}
    assert {codec.trial_status(trials[r.hash]) for r in runs[: len(outcomes)]} == {s for s, _, _ in outcomes}


def test_an_unknown_stored_status_is_no_result():
    import optuna

    trial = optuna.trial.create_trial(value=1.0, user_attrs={"status": "exploded"})
    assert codec.trial_status(trial) is Status.INTERRUPTED
    assert codec.trial_status(optuna.trial.create_trial(value=1.0)) is Status.COMPLETE


def test_only_the_codec_may_reach_into_optunas_private_trial_and_study_fields():
    # before: the store and the doctor read trial._trial_id and study._study_id themselves
    private = re.compile(r"\.(_trial_id|_study_id|_storage)\b")
    root = Path(__file__).parent.parent / "bench"
    offenders = [
        str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "codec.py" and private.search(p.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize("name", ["FINISHED", "STATUSES"])
def test_the_report_statistics_use_the_codecs_vocabulary(name):
    from bench import stats

    assert getattr(stats, name) is getattr(codec, name)
