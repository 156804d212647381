"""`optbench export`: every run of a suite and its search's trials, read back with each tool's own reader
(TensorBoard's event accumulator, MLflow's search_runs and metric history); exporting again is idempotent;
bad input is one line, exit 2, nothing written."""

import math
from pathlib import Path

import pytest
from fabricate import fabricate_runs, fabricate_search

from bench.cli import main
from bench.frame import concat
from bench.store import load_results
from bench.suite import Suite

SUITE = """[suite]
name = "exp"
seeds = [0, 1]
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = 20
eval_interval = 5
batch_size = 4
schedule = "constant"
[axes]
optimizer = ["adamw", { class_path = "torch.optim.SGD", lr = 0.1 }]
[search]
"optimizer.lr" = { low = 1e-4, high = 1e-2, log = true }
"""
STATUSES = ["complete", "diverged", "failed", "interrupted"]


@pytest.fixture
def stored(tmp_path):
    """A suite's runs of every status and a search of three trials (one pruned), stored as optbench does."""
    path = tmp_path / "exp.toml"
    path.write_text(SUITE)
    suite = Suite.load(path)
    storage = str(tmp_path / "s.journal")
    fabricate_runs(suite, storage, status=lambda i: STATUSES[i % len(STATUSES)])
    fabricate_search(suite, storage, trials=3, pruned=lambda i: i == 1)
    frames = {"exp": load_results("exp", storage), "exp.search": load_results("exp.search", storage)}
    return path, storage, frames


def export(path, storage, tool, destination, capsys):
    assert main(["export", str(path), "--to", tool, str(destination), "--storage", storage]) == 0
    return capsys.readouterr().err


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6)


def test_tensorboard_holds_every_run_as_its_event_reader_reads_it(stored, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    path, storage, frames = stored
    logdir = tmp_path / "tb"
    total = sum(len(f) for f in frames.values())
    assert f"({total} written)" in export(path, storage, "tensorboard", logdir, capsys)
    for study, frame in frames.items():
        folders = {p.name.rsplit("(", 1)[1].rstrip(")"): p for p in (logdir / study).iterdir()}
        assert set(folders) == set(frame["run_hash"])  # every run, claims still running aside (none here)
        for _, row in frame.iterrows():
            acc = EventAccumulator(str(folders[row["run_hash"]]), size_guidance={"scalars": 0, "tensors": 0})
            acc.Reload()
            curves = row["curves"]
            if curves is None:  # an interrupted run: its status and config, no curves
                assert "train/loss" not in acc.Tags()["scalars"] and row["status"] == "interrupted"
                curves = {k: [] for k in ("step", "train_loss", "lr", "grad_norm", "val_step", "val_loss")}
            for tag, steps, values in (("train/loss", curves["step"], curves["train_loss"]),
                                       ("train/lr", curves["step"], curves["lr"]),
                                       ("train/grad_norm", curves["step"], curves["grad_norm"]),
                                       ("val/loss", curves["val_step"], curves["val_loss"])):  # fmt: skip
                events = acc.Scalars(tag) if len(steps) else []
                assert [e.step for e in events] == list(steps)
                assert all(same(e.value, v) for e, v in zip(events, values, strict=True))
            if not math.isnan(row["value"]):
                assert same(acc.Scalars("final/value")[-1].value, row["value"])
            content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
            hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
            assert same(hparams["optimizer.lr"].number_value, row["config.optimizer.lr"])
            assert hparams["optimizer.name"].string_value == row["config.optimizer.name"]
            status = acc.Tensors("status/text_summary")[0].tensor_proto.string_val[0].decode()
            assert status.startswith(row["status"])
            environment = acc.Tensors("environment/text_summary")[0].tensor_proto.string_val[0].decode()
            assert ("- torch: x" if row["status"] != "interrupted" else "none recorded") in environment
    # again: every run's folder replaced whole, one event file each, no point twice
    assert f"({total} replaced)" in export(path, storage, "tensorboard", logdir, capsys)
    for study, frame in frames.items():
        runs = list((logdir / study).iterdir())
        assert len(runs) == len(frame) and all(len(list(r.iterdir())) == 1 for r in runs)


def test_mlflow_holds_every_run_as_search_runs_and_metric_history_read_it(stored, tmp_path, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    path, storage, frames = stored
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    export(path, storage, "mlflow", uri, capsys)
    client = MlflowClient(tracking_uri=uri)
    for study, frame in frames.items():
        experiment = client.get_experiment_by_name(study)
        runs = {r.data.tags["optbench.run_hash"]: r for r in client.search_runs([experiment.experiment_id])}
        assert set(runs) == set(frame["run_hash"]) and len(runs) == len(frame)
        for _, row in frame.iterrows():
            run = runs[row["run_hash"]]
            assert run.data.tags["optbench.status"] == row["status"] and run.info.run_name.startswith(row["arm"])
            expected = {"failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}.get(row["status"], "FINISHED")
            assert run.info.status == expected
            assert same(float(run.data.params["optimizer.lr"]), row["config.optimizer.lr"])
            assert run.data.params["optimizer.name"] == row["config.optimizer.name"]
            if row["status"] != "interrupted":  # the fabricated runs' environment
                assert run.data.tags["env.torch"] == "x" and run.data.tags["env.commit"] == "fabricated"
            if not math.isnan(row["final_val_loss"]):
                assert same(run.data.metrics["final_val_loss"], row["final_val_loss"])
            if row["curves"] is None:
                assert not client.get_metric_history(run.info.run_id, "train_loss")
                continue
            history = client.get_metric_history(run.info.run_id, "train_loss")
            assert [m.step for m in history] == list(row["curves"]["step"])
            assert all(same(m.value, v) for m, v in zip(history, row["curves"]["train_loss"], strict=True))
            val = client.get_metric_history(run.info.run_id, "val_loss")
            assert [m.step for m in val] == list(row["curves"]["val_step"])
    assert "SGD" in set(concat(list(frames.values()))["config.optimizer.name"])  # a class_path optimizer by name
    err = export(path, storage, "mlflow", uri, capsys)  # again: nothing new, nothing twice
    total = sum(len(f) for f in frames.values())
    assert f"{total} unchanged" in err
    for study, frame in frames.items():
        experiment = client.get_experiment_by_name(study)
        assert len(client.search_runs([experiment.experiment_id])) == len(frame)
    # the suite trained again into another store (same runs, later results): each run replaced, none twice
    again = str(tmp_path / "again.journal")
    fabricate_runs(Suite.load(path), again, status=lambda i: "complete")
    assert f"{len(frames['exp'])} replaced" in export(path, again, "mlflow", uri, capsys)
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(frames["exp"]) and {r.data.tags["optbench.status"] for r in runs} == {"complete"}
    assert not Path("mlruns").exists()  # nothing beside the tracking database


def bad_destinations(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return [
        (["wandb", str(tmp_path / "w")], "unknown tool 'wandb'; allowed: tensorboard, mlflow"),
        (["tensorboard", str(a_file)], "is a file"),
        (["tensorboard", str(a_file / "runs")], "is not a folder"),
        (["mlflow", "foo://host/x"], "unknown tracking URI scheme 'foo'"),
        (["mlflow", str(tmp_path / "mlruns")], "file store"),
        (["mlflow", f"file://{tmp_path / 'mlruns'}"], "file store"),
        (["mlflow", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"], "does not exist"),
        (["mlflow", f"sqlite:///{a_file}"], "is not an SQLite database"),
        (["mlflow", "http://127.0.0.1:9"], "cannot reach"),
    ]


def test_bad_destinations_exit_2_with_one_line_and_write_nothing(stored, tmp_path, capsys):
    path, storage, _ = stored
    for to, text in bad_destinations(tmp_path):
        before = sorted(tmp_path.rglob("*"))
        assert main(["export", str(path), "--to", *to, "--storage", storage]) == 2, to
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--to" in err and text in err, (to, err)
        assert sorted(tmp_path.rglob("*")) == before, to
