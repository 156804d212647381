import math
import os

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import one_line_error, run_optbench
from suite_files import GRID_12, write_suite

from bench import journal
from bench.codec import axis_params, downsample, fit_params, metric_value, record_attrs
from bench.registry import ConfigError
from bench.store import Store, load_results
from bench.suite import Suite
from bench.train import RunRecord

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_downsample_keeps_ends_and_caps_points():
    idx, values = downsample(list(range(2000)), 500)
    assert len(values) == 500 and idx[0] == 0 and idx[-1] == 1999 and values == idx
    assert downsample([1, 2, 3], 500) == ([0, 1, 2], [1, 2, 3])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.one_of(st.floats(1e-6, 1e3), st.integers(-5, 5), st.sampled_from(["adamw", "lion"])), min_size=1,
             max_size=5, unique_by=repr),
    st.data(),
)  # fmt: skip
def test_axis_params_hold_each_value_within_one_distribution_per_axis(values, data):
    """Every run of a suite gets the same distribution per axis (Optuna's importances need that), and its own
    value inside it."""
    value = data.draw(st.sampled_from(values))
    a = axis_params({"x": values}, {"x": value}, lambda k, v: str(v))
    b = axis_params({"x": values}, {"x": values[0]}, lambda k, v: str(v))
    assert a["x"][1] == b["x"][1]
    dist = a["x"][1]
    assert dist._contains(dist.to_internal_repr(a["x"][0]))


def test_fit_params_renames_a_parameter_whose_choices_changed():
    first = axis_params({"optimizer": ["adamw", "lion"]}, {"optimizer": "adamw"}, lambda k, v: v)
    trial = optuna.trial.create_trial(params={"optimizer": "adamw"}, distributions={"optimizer": first["optimizer"][1]},
                                      value=1.0)  # fmt: skip
    edited = axis_params({"optimizer": ["adamw", "lion", "sgd"]}, {"optimizer": "sgd"}, lambda k, v: v)
    assert set(fit_params(edited, [trial])) == {"optimizer #2"}
    assert set(fit_params(first, [trial])) == {"optimizer"}  # an unchanged axis keeps its name


def test_record_attrs_downsample_curves():
    record = RunRecord(
        config={},
        config_hash="x",
        status="complete",
        curves={
            "train_loss": [1.0] * 1200,
            "grad_norm": [2.0] * 1200,
            "lr": [0.1] * 1200,
            "val_step": [600, 1200],
            "val_loss": [1.5, 1.4],
        },
    )
    attrs = record_attrs(record)
    assert len(attrs["curves"]["train_loss"]) == 500 and attrs["curves"]["step"][-1] == 1200
    assert attrs["curves"]["val_loss"] == [1.5, 1.4] and "config" not in attrs


def test_finish_stores_outcomes(tmp_path):
    store = Store.open(str(tmp_path / "s.journal"))
    study = store.study("outcomes")
    for status, value in (("complete", 1.25), ("diverged", None), ("failed", None)):
        trial = study.ask()
        store.storage.set_trial_user_attr(trial._trial_id, "run_hash", status)
        record = RunRecord(
            config={},
            config_hash=status,
            status=status,
            final_val_loss=value,
            status_step=7 if status == "diverged" else None,
            error="Traceback: boom" if status == "failed" else None,
            curves={"val_step": [5], "val_loss": [1.3]},
        )
        store.finish(trial._trial_id, record, [metric_value(record, "final_val_loss")])
    frame = load_results("outcomes", str(tmp_path / "s.journal")).set_index("run_hash")
    assert frame.loc["complete", "value"] == 1.25 and frame.loc["complete", "status"] == "complete"
    assert math.isinf(frame.loc["diverged", "value"]) and frame.loc["diverged", "status_step"] == 7
    assert frame.loc["failed", "status"] == "failed" and "boom" in frame.loc["failed", "error"]
    trials = {t.user_attrs["run_hash"]: t for t in study.get_trials()}
    assert trials["complete"].intermediate_values == {5: 1.3}
    assert trials["failed"].state == optuna.trial.TrialState.FAIL


def test_load_results_of_unknown_study_is_empty(tmp_path):
    frame = load_results("nothing", str(tmp_path / "s.journal"))
    assert len(frame) == 0 and "status" in frame.columns


@pytest.mark.parametrize("url", ["mongodb://x", "/nonexistent/dir/file.journal"])
def test_bad_urls_are_config_errors(url):
    from bench.registry import ConfigError

    with pytest.raises(ConfigError):
        Store.open(url)


def test_load_results_is_importable_from_bench_and_numeric_axes_are_numbers(tmp_path, capsys):
    from fabricate import fabricate_runs
    from suite_files import write_suite

    from bench import load_results as from_package
    from bench.cli import main

    assert from_package is load_results
    path = write_suite(tmp_path, "typed", 'batch_size = [8, 16]\n"optimizer.lr" = [1e-3, 3e-3]\nclip = ["none"]')
    storage = str(tmp_path / "t.journal")
    fabricate_runs(Suite.load(path), storage, status=lambda i: "complete")
    frame = load_results("typed", storage)
    assert frame["arm.batch_size"].dtype.kind == "i" and sorted(frame["arm.batch_size"].unique()) == [8, 16]
    assert frame["arm.optimizer.lr"].dtype.kind == "f" and list(frame["arm.clip"].unique()) == ["none"]
    assert main(["results", str(path), "--storage", storage]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert "tokens" in header and "status_step" in header


def test_a_token_budget_shows_the_steps_it_governed(tmp_path):
    from fabricate import fabricate_runs
    from suite_files import write_suite

    path = write_suite(tmp_path, "budget", "batch_size = [2, 4]", extra="")
    path.write_text(path.read_text().replace("steps = 20", "tokens = 10240"))  # 10240 / (bs * 64) steps
    fabricate_runs(Suite.load(path), str(tmp_path / "b.journal"), status=lambda i: "complete")
    frame = load_results("budget", str(tmp_path / "b.journal"))
    assert set(frame["budget"]) == {"tokens"}
    assert dict(zip(frame["arm.batch_size"], frame["config.steps"], strict=True)) == {2: 80, 4: 40}
    assert (frame["config.steps"] == frame["steps"]).all()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
# the fields Optuna's journal records carry: any of them, of any JSON type
RECORD_FIELDS = ["study_name", "directions", "study_id", "trial_id", "user_attr", "system_attr", "datetime_start",
                 "datetime_complete", "params", "distributions", "param_name", "param_value_internal",
                 "distribution", "state", "values", "step", "intermediate_value", "trial_ids"]  # fmt: skip
RECORDS = st.fixed_dictionaries(
    {"op_code": st.integers(-1, 12) | JSON_VALUES, "worker_id": st.sampled_from(["x", "y"]) | JSON_VALUES},
    optional={field: JSON_VALUES | st.integers(0, 2) for field in RECORD_FIELDS},
)
VALID_STUDY = {"op_code": 0, "worker_id": "x", "study_name": "s", "directions": [1]}


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORDS, min_size=1, max_size=4), after_a_study=st.booleans())
def test_records_optuna_cannot_replay_are_a_corrupt_store_never_a_crash(records, after_a_study):
    import json
    import tempfile
    from pathlib import Path

    from bench.registry import ConfigError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.journal"
        lines = [VALID_STUDY] * after_a_study + records
        path.write_text("".join(json.dumps({"op_code": r["op_code"], **r}) + "\n" for r in lines))  # as Optuna writes
        try:
            Store.open(str(path))
        except ConfigError as e:  # the corrupt-store error, naming the file: nothing else may escape
            assert str(path) in str(e) and ("cannot replay" in str(e) or "corrupt" in str(e)), e


@pytest.mark.parametrize(
    ("record", "raised"),
    [({"op_code": 99, "worker_id": "x"}, "AssertionError"),
     ({"op_code": 0, "worker_id": "x", "study_name": 5, "directions": "up"}, "ValueError")],
)  # fmt: skip
def test_the_corrupt_records_testers_found_are_named_with_what_optuna_raised(tmp_path, record, raised):
    import json

    from bench.registry import ConfigError

    path = tmp_path / "store.journal"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match=f"cannot replay \\({raised}") as e:
        Store.open(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


READ_ONLY = {  # command -> (exit code for a missing default store, as for an empty one; what it says)
    "results": (0, "no results for suite 'ro' yet (no store at"),
    "report": (2, "no results for suite 'ro' yet (no store at"),
    "doctor": (2, "no such store"),
}


@pytest.mark.parametrize("storage", ["default", "typo.journal", "sqlite:///typo.db"])
@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_commands_never_create_a_store(tmp_path, capsys, command, storage):
    from suite_files import write_suite

    from bench.cli import main

    suite = write_suite(tmp_path, "ro", 'optimizer = ["adamw"]')
    before = sorted(tmp_path.rglob("*"))
    argv = [command] + ([str(suite)] if command != "doctor" else [])
    if storage != "default":
        argv += ["--storage", storage]
    code = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    if storage == "default":
        assert (code, READ_ONLY[command][1] in err) == (READ_ONLY[command][0], True), err
    else:  # a store named on the command line that is not there is a typo
        assert code == 2 and "key '--storage': no such store typo." in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no journal, no lock, no report


def test_an_orphaned_claim_is_failed_and_its_run_retried(tmp_path):
    """A RUNNING trial with no worker (a bare ask()) made `optbench run` wait forever."""
    path = write_suite(tmp_path, "orphan", 'optimizer = ["adamw"]', seeds="[0]")
    storage = str(tmp_path / "j.journal")
    optuna.create_study(study_name="orphan", storage=Store.open(storage).storage).ask()
    done = run_optbench("run", str(path), "--storage", storage, "--workers", "1", "--quiet", "--no-report",
                    env={"OPTBENCH_GRACE_PERIOD": "1"}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    states = [t.state.name for t in Store.open(storage).existing_study("orphan").get_trials()]
    assert sorted(states) == ["COMPLETE", "FAIL"]


@pytest.mark.skipif(not os.environ.get("OPTBENCH_TEST_POSTGRES"), reason="needs OPTBENCH_TEST_POSTGRES")
def test_an_orphaned_claim_without_a_heartbeat_is_stale_in_postgres_too(monkeypatch):
    import uuid

    import bench.store

    store = Store.open(os.environ["OPTBENCH_TEST_POSTGRES"])
    study = store.study(f"orphan-{uuid.uuid4().hex[:8]}")
    orphan = study.ask()  # no worker, never a heartbeat
    beating = study.ask()
    store.storage.record_heartbeat(beating._trial_id)  # judged by Optuna's heartbeat check instead
    monkeypatch.setattr(bench.store, "grace_period", lambda: -1)
    assert [t.number for t, _ in store.stale_claims(study)] == [orphan.number]
    store.fail_stale(study)
    assert study.get_trials()[orphan.number].state.name == "FAIL"
    assert study.get_trials()[beating.number].state.name == "RUNNING"


def test_a_claim_from_another_host_in_a_file_store_is_left_to_its_owner(tmp_path, monkeypatch):
    """A journal on a shared folder may serve several hosts: without heartbeats, only the owner knows."""
    import bench.store

    store = Store.open(str(tmp_path / "j.journal"))
    study = store.study("hosts")
    store.create_running_trial(study, {"run_hash": "a", "worker": {"host": "elsewhere", "pid": 1}}, {})
    study.ask()  # no worker at all: an orphan
    monkeypatch.setattr(bench.store, "grace_period", lambda: -1)
    assert [t.number for t, _ in store.stale_claims(study)] == [1]


@FAST
@given(content=st.binary(min_size=1, max_size=200))
def test_a_storage_file_that_is_not_a_journal_is_refused_untouched(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("s") / "settings.cfg"
    if content.startswith(journal.JOURNAL_PREFIX) or journal.JOURNAL_PREFIX.startswith(content):
        return
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not an optbench results store|SQLite"):
        Store.open(str(path))
    assert path.read_bytes() == content


def test_cli_refuses_a_passwd_like_storage_untouched(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    suite = write_suite(tmp_path, "pw", GRID_12)
    line = one_line_error(run_optbench("run", str(suite), "--storage", str(path), "--no-report"))
    assert str(path) in line
    assert path.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
