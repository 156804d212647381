"""bench.frame: results frames are pandas-native and round-trip through Parquet and Feather, on generated stores
(suite runs and search trials; with and without regularization, curves and class_path optimizers)."""

import datetime
import importlib.util
import io
import math
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import codec
from bench.config import RunConfig
from bench.frame import COLUMNS, CURVE_KEYS, concat
from bench.store import Store, load_results
from bench.train import RunRecord

pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "data": {"name": "synthetic", "alphabet": 8, "order": 1, "length": 20000}, "steps": 8,
        "schedule": "constant"}  # fmt: skip
OPTIMIZERS = [
    {"name": "adamw"},
    {"name": "lion", "lr": 3e-4},
    {"name": "sgd"},
    {"class_path": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9},
    {"class_path": "torch.optim.ASGD"},
]
if importlib.util.find_spec("pytorch_optimizer"):
    OPTIMIZERS += [{"class_path": "pytorch_optimizer.Lamb"}, {"class_path": "pytorch_optimizer.Prodigy"}]  # inf
REGULARIZATION = ["none", {"ema": {}}, {"dropout": {"p": 0.1}, "l2": {}}, {"label_smoothing": {}}]
STATUSES = ["complete", "diverged", "stopped_early", "failed", "interrupted"]
STAMP = datetime.datetime(2026, 12, 1, 9, 30)

losses = st.floats(0.5, 5.0)
maybe_loss = losses | st.none()  # None: a value that was not finite


@st.composite
def configs(draw):
    return RunConfig.build({**TINY, "seed": draw(st.integers(0, 3)), "optimizer": draw(st.sampled_from(OPTIMIZERS)),
                            "regularization": draw(st.sampled_from(REGULARIZATION))})  # fmt: skip


@st.composite
def envs(draw):
    env = {"optbench": "0.1.0", "commit": draw(st.sampled_from(["a" * 40, "b" * 40 + "+dirty", None])),
           "torch": "2.13.0", "device": "cpu", "threads": draw(st.integers(1, 4)),
           "precision": {"autocast": draw(st.sampled_from(["none", "bf16"]))},
           "optimizer_kernels": draw(st.sampled_from([{}, {"AdamW": {"impl": "fused", "reason": "measured"}}])),
           "step_flops": draw(st.floats(1e6, 1e9))}  # fmt: skip
    if draw(st.booleans()):
        env["split"] = "2 worker(s) x 1 thread(s): measured"
    if draw(st.booleans()):
        env["gpu_workers"] = draw(st.integers(1, 3))
    return env


@st.composite
def records(draw, cfg):
    status = draw(st.sampled_from(STATUSES[:4]))
    steps = draw(st.integers(0, 6))
    val_steps = list(range(2, steps + 1, 2))
    ended = status not in ("diverged", "failed")
    return RunRecord(
        config=cfg.to_dict(), config_hash=cfg.hash, status=status,
        status_step=steps if status in ("diverged", "stopped_early") else None,
        error="Traceback (most recent call last):\n  boom" if status == "failed" else None,
        final_val_loss=draw(losses) if ended else None, best_val_loss=draw(losses) if ended else None,
        steps=steps, tokens=steps * 256, wall_time=draw(st.floats(0, 10)), train_time=draw(st.floats(0, 10)),
        n_params=1000, peak_memory_mb=draw(st.floats(1, 500)), target=draw(st.sampled_from([None, 1.5])),
        curves={"train_loss": draw(st.lists(maybe_loss, min_size=steps, max_size=steps)),
                "grad_norm": draw(st.lists(losses, min_size=steps, max_size=steps)), "lr": [1e-3] * steps,
                "val_step": val_steps, "val_loss": draw(st.lists(maybe_loss, min_size=len(val_steps),
                                                                 max_size=len(val_steps)))},
        env=draw(envs()),
    )  # fmt: skip


@st.composite
def suite_trials(draw):
    """Trials of a suite's study as the runner leaves them (a claim, then a record or an interruption)."""
    trials = []
    for i in range(draw(st.integers(1, 5))):
        cfg = draw(configs())
        attrs = {"run_hash": f"{cfg.hash}-{i}", "seed": cfg.seed, "arm": {"optimizer": str(i)},
                 "arm_label": f"optimizer={i}", "config": cfg.to_dict(), "suite": "gen", "session": "s"}  # fmt: skip
        if draw(st.sampled_from(STATUSES)) == "interrupted":
            trials.append(trial(attrs, None, optuna.trial.TrialState.FAIL, {"status": "interrupted"}))
            continue
        record = draw(records(cfg))
        value = record.final_val_loss if record.final_val_loss is not None else math.inf
        state = optuna.trial.TrialState.FAIL if record.status == "failed" else optuna.trial.TrialState.COMPLETE
        trials.append(trial(attrs, value if state.name == "COMPLETE" else None, state, codec.record_attrs(record)))
    return trials


@st.composite
def search_trials(draw):
    """Trials of a search study: each trained one or several seeds (a row per seed)."""
    trials = []
    for i in range(draw(st.integers(1, 3))):
        cfg = draw(configs())
        seeds = list(range(draw(st.integers(1, 3))))
        runs = [cfg.override({"seed": s}) for s in seeds]
        recs = [draw(records(c)) for c in runs]
        for r in recs:
            r.status, r.final_val_loss = "complete", r.final_val_loss or 1.0
        values = {"optimizer.lr": cfg.optimizer["lr"], "regularization": i}
        attrs = {**codec.search_attrs(values, recs, "final_val_loss"), **codec.record_attrs(recs[0])}
        mean = sum(r.final_val_loss for r in recs) / len(recs)
        trials.append(trial(attrs, mean, optuna.trial.TrialState.COMPLETE, {}))
    return trials


def trial(attrs, value, state, extra):
    return optuna.trial.create_trial(state=state, value=value, params={}, distributions={},
                                     user_attrs={**attrs, **extra})  # fmt: skip


def write(storage, name, trials):
    study = Store.open(storage).study(name)
    study.add_trials(trials)


def round_trips(frame):
    for fmt in ("parquet", "feather"):
        buffer = io.BytesIO()
        getattr(frame, f"to_{fmt}")(buffer)
        back = getattr(pd, f"read_{fmt}")(io.BytesIO(buffer.getvalue()))
        pd.testing.assert_frame_equal(back, frame, check_dtype=True)


def check_native(frame):
    for column, dtype in COLUMNS.items():
        if column in frame:
            assert str(frame[column].dtype) == dtype, (column, frame[column].dtype)
    assert all(isinstance(v, list) for v in frame.get("config.optimizer.betas", pd.Series()).dropna())
    for column in [c for c in frame.columns if c.startswith(("config.", "env."))]:
        kinds = {type(v) for v in frame[column] if v is not None and v is not pd.NA and v == v}
        assert len(kinds) <= 1 or kinds <= {int, float}, (column, kinds)
    for curves in frame.get("curves", pd.Series()).dropna():
        assert tuple(curves) == CURVE_KEYS


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suite_trials(), search_trials(), st.booleans())
def test_results_round_trip_through_parquet_and_feather(tmp_path_factory, runs, searched, with_curves):
    storage = str(tmp_path_factory.mktemp("frame") / "s.journal")
    write(storage, "gen", runs)
    write(storage, "gen.search", searched)
    for name in ("gen", "gen.search"):
        frame = load_results(name, storage, with_curves=with_curves)
        check_native(frame)
        round_trips(frame)
    both = concat([load_results(n, storage, with_curves=with_curves).assign(study=n) for n in ("gen", "gen.search")])
    round_trips(both)  # as `optbench results` joins them


def test_a_frame_is_typed_as_documented():
    cfg = RunConfig.build({**TINY, "optimizer": {"name": "adamw", "betas": [0.9, 0.99]}, "regularization": "ema"})
    record = RunRecord(config=cfg.to_dict(), config_hash=cfg.hash, status="diverged", status_step=3, steps=3,
                       curves={"train_loss": [2.0, 1.5, None], "grad_norm": [1.0] * 3, "lr": [1e-3] * 3,
                               "val_step": [2], "val_loss": [1.4]},
                       env={"torch": "2.13.0", "threads": 2, "precision": {"autocast": "none"}})  # fmt: skip
    attrs = {"run_hash": cfg.hash, "seed": 0, "arm": {}, "arm_label": "base", "config": cfg.to_dict()}
    storage = "s.journal"
    write(storage, "typed", [trial({**attrs, **codec.record_attrs(record)}, math.inf,
                                   optuna.trial.TrialState.COMPLETE, {})])  # fmt: skip
    row = load_results("typed", storage).iloc[0]
    assert isinstance(row["finished"], pd.Timestamp) and row["config.optimizer.betas"] == [0.9, 0.99]
    assert (
        row["config.regularization.ema.decay"] == cfg.enabled("regularization", "ema")["decay"]
        and row["env.precision.autocast"] == "none"
    )
    assert row["env.threads"] == 2 and row["status_step"] == 3 and math.isinf(row["value"])
    assert math.isnan(row["curves"]["train_loss"][2]) and row["curves"]["step"].tolist() == [1, 2, 3]
    assert RunConfig.from_dict(__import__("json").loads(row["config"])).hash == cfg.hash  # the identity, exactly


def test_an_empty_frame_round_trips_with_its_columns(tmp_path):
    frame = load_results("nothing", str(tmp_path / "s.journal"))
    assert len(frame) == 0 and {"status", "value", "finished", "config"} <= set(frame.columns)
    round_trips(frame)


def test_the_documented_dtypes_are_the_frames():
    """docs/results.md lists every fixed column with the dtype bench.frame gives it."""
    text = (ROOT / "docs" / "results.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", text, re.MULTILINE))
    assert documented == COLUMNS
