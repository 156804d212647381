import math

import optuna
import pytest

from bench.codec import downsample, param_distributions, record_attrs
from bench.store import Store, load_results
from bench.suite import Suite
from bench.train import RunRecord


def test_downsample_keeps_ends_and_caps_points():
    idx, values = downsample(list(range(2000)), 500)
    assert len(values) == 500 and idx[0] == 0 and idx[-1] == 1999 and values == idx
    assert downsample([1, 2, 3], 500) == ([0, 1, 2], [1, 2, 3])


def test_param_distributions_are_stable_across_values():
    a = param_distributions({"optimizer.name": "adamw", "optimizer.lr": 1e-3, "steps": 10, "model.bias": False})
    b = param_distributions({"optimizer.name": "lion", "optimizer.lr": 3e-3, "steps": 20, "model.bias": True})
    for name in a:
        optuna.distributions.check_distribution_compatibility(a[name][1], b[name][1])
    assert "lion" in a["optimizer.name"][1].choices


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
        store.finish(trial._trial_id, record, "final_val_loss")
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
