"""`optbench export SUITE --to tensorboard DIR | --to mlflow URI`: every run of a suite, and its search's
trials, in the tools researchers already log to.

Each run carries its config as hyperparameters, its curves as scalars at their steps (train loss, gradient
norm, learning rate, validation loss), its final metrics, its status and its environment. What a run is
comes from the results frame (bench.frame), so the export shows exactly what `optbench results` does.

Exporting again is idempotent: a run is keyed by its run hash. In TensorBoard each run is one folder,
`DIR/<study>/<arm> seed <seed> (<hash>)`, written whole into a temporary folder beside it and then put in
place of the run's old folder (event files only grow, so a folder is never appended to). In MLflow each
study is an experiment and each run a run tagged `optbench.run_hash`: an unchanged run (same hash and
`finished` time) is left alone, a changed one (trained again after a failure) replaces its old run.

Bad input (an unknown tool, a folder that cannot be written, a tracking URI MLflow cannot open) is
reported before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.config import is_missing, nested
from bench.registry import ConfigError

TOOLS = ("tensorboard", "mlflow")
# curves key -> the scalar's name in both tools (train loss, gradient norm, learning rate, validation loss)
SCALARS = {"train_loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/lr", "val_loss": "val/loss"}
# a run's final metrics, as the results frame names them
FINAL = ("value", "final_val_loss", "best_val_loss", "loss_floor", "steps", "tokens", "wall_time", "train_time",
         "tokens_per_second", "peak_memory_mb", "n_params", "target_step", "target_tokens", "target_time")  # fmt: skip
MLFLOW_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https")


def runs_to_export(suite: Any, storage: str | None) -> list[tuple[str, Any]]:
    """(study name, frame) for the suite's runs and each of its search studies; claims still running are
    left out (they are exported once settled)."""
    from bench.results import suite_results
    from bench.store import load_results, search_study_names

    frames = [(suite.name, suite_results(suite, storage))]
    frames += [(name, load_results(name, storage)) for name in search_study_names(suite.name, storage)]
    return [(name, frame[frame["status"] != "running"].reset_index(drop=True)) for name, frame in frames]


def check_destination(tool: str, destination: str) -> None:
    """ConfigError, before anything is written, for a tool optbench cannot export to or a destination it
    cannot write."""
    if tool not in TOOLS:
        raise ConfigError("--to", f"unknown tool '{tool}'; allowed: {', '.join(TOOLS)}")
    if tool == "tensorboard":
        check_folder(Path(destination))
    else:
        check_tracking_uri(destination)


def check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError("--to", f"{folder} is a file: TensorBoard needs a folder of runs")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ConfigError("--to", f"{folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError("--to", f"{folder}: {existing} is not writable")


def check_tracking_uri(uri: str) -> None:
    """A tracking URI MLflow 3 can write runs to: a database (sqlite:///FILE.db, postgresql://, mysql://) or
    a tracking server (http(s)://), reached before anything is written."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    allowed = "sqlite:///FILE.db, postgresql://..., mysql://... or http(s)://HOST (a tracking server)"
    if scheme in ("", "file"):
        raise ConfigError("--to", f"mlflow: '{uri}' is MLflow's file store, which MLflow 3 refuses by default; "
                          f"use {allowed}")  # fmt: skip
    if scheme not in MLFLOW_SCHEMES:
        raise ConfigError("--to", f"mlflow: unknown tracking URI scheme '{scheme}'; allowed: {allowed}")
    try:
        import mlflow  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("--to", 'mlflow is not installed: pip install "optbench[export]"') from None
    if scheme == "sqlite":
        path = Path(uri.split("///", 1)[-1]) if "///" in uri else None
        if path is None or not path.name:
            raise ConfigError("--to", f"mlflow: '{uri}' names no database file; use sqlite:///FILE.db")
        if path.exists() and not path.is_file():
            raise ConfigError("--to", f"mlflow: {path} is not a file")
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise ConfigError("--to", f"mlflow: folder {path.parent} does not exist or is not writable")
        if path.is_file() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
            raise ConfigError("--to", f"mlflow: {path} is not an SQLite database; refusing to write to it")
        return
    with quick_http():
        try:
            tracking_client(uri).search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 -- any failure to reach it is bad input, named in one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError("--to", f"mlflow: cannot reach {redacted(uri)}: {first}") from None


@contextlib.contextmanager
def quick_http() -> Iterator[None]:
    """MLflow's HTTP client without its minutes of retries, while a server is checked."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def redacted(uri: str) -> str:
    from bench.store import redact

    return redact(uri)


def export(suite: Any, storage: str | None, tool: str, destination: str) -> str:
    """Write every run of the suite and its search's trials to the tool; a line saying what was written."""
    check_destination(tool, destination)
    studies = runs_to_export(suite, storage)
    write = to_tensorboard if tool == "tensorboard" else to_mlflow
    counts = write(studies, destination)
    runs = sum(len(frame) for _, frame in studies)
    done = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing to write"
    studied = f"{len(studies)} {'study' if len(studies) == 1 else 'studies'}"
    return f"{suite.name}: {runs} run(s) of {studied} to {tool} {redacted(destination)} ({done})"


# -- what one run exports ----------------------------------------------------------------------------


def run_name(row: Any) -> str:
    return f"{row['arm']} seed {row['seed']}"


def hyperparameters(row: Any) -> dict[str, Any]:
    """The run's config as hyperparameters: dotted keys -> a number, text or true/false (lists as JSON)."""
    out = {}
    for key, value in row.items():
        if not key.startswith("config."):
            continue
        if isinstance(value, list):
            out[key.removeprefix("config.")] = json.dumps(value)
        elif not is_missing(value):
            out[key.removeprefix("config.")] = plain(value)
    return out


def final_metrics(row: Any) -> dict[str, float]:
    out = {}
    for key in FINAL:
        value = row.get(key)
        if not is_missing(value):
            out[key] = float(value)
    return out


def environment(row: Any) -> dict[str, str]:
    """The run's environment as dotted keys -> text."""
    from bench.config import flatten

    return {k: str(v) for k, v in flatten(nested(row, "env"), lists="json").items()}


def scalars(row: Any) -> dict[str, list[tuple[int, float]]]:
    """Scalar name -> (step, value) of the run's curves; non-finite values kept as NaN."""
    curves = row.get("curves")
    if not isinstance(curves, dict):
        return {}
    out = {}
    for key, name in SCALARS.items():
        steps = curves["val_step"] if key == "val_loss" else curves["step"]
        out[name] = [(int(s), float(v)) for s, v in zip(steps, curves[key], strict=False)]
    return out


def plain(value: Any) -> Any:
    """A numpy or pandas scalar as its Python value."""
    return value.item() if hasattr(value, "item") else value


# -- TensorBoard -------------------------------------------------------------------------------------


def folder_name(row: Any) -> str:
    """The run's folder: readable, one path component, ending in its hash (how a re-export finds it)."""
    name = re.sub(r"[/\\\x00]", "_", run_name(row))[:180]
    return f"{name} ({row['run_hash']})"


def to_tensorboard(studies: list[tuple[str, Any]], destination: str) -> dict[str, int]:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    root = Path(destination)
    counts = {"written": 0, "replaced": 0}
    for study, frame in studies:
        folder = root / re.sub(r"[/\\]", "_", study)
        folder.mkdir(parents=True, exist_ok=True)
        for _, row in frame.iterrows():
            old = [p for p in folder.iterdir() if p.is_dir() and p.name.endswith(f"({row['run_hash']})")]
            tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
            with SummaryWriter(log_dir=str(tmp)) as writer:
                for name, points in scalars(row).items():
                    for step, value in points:
                        writer.add_scalar(name, value, step)
                metrics = {f"final/{k}": v for k, v in final_metrics(row).items()}
                last = max([0, *(s for points in scalars(row).values() for s, _ in points)])
                for name, value in metrics.items():
                    writer.add_scalar(name, value, last)
                for summary in hparams(hyperparameters(row), metrics):  # the HParams dashboard's records
                    writer.file_writer.add_summary(summary)
                writer.add_text("status", f"{row['status']}" + (f" at step {row['status_step']}"
                                if not is_missing(row.get("status_step")) else ""))  # fmt: skip
                writer.add_text("run", f"run hash `{row['run_hash']}`, study `{study}`, trial {row['trial']}, "
                                f"finished {row['finished']}")  # fmt: skip
                env = "\n".join(f"- {k}: {v}" for k, v in environment(row).items())
                writer.add_text("environment", env or "none recorded (the run never started training)")
                if not is_missing(row.get("error")):
                    writer.add_text("error", "```\n" + str(row["error"]) + "\n```")
            for path in old:
                shutil.rmtree(path)
            tmp.rename(folder / folder_name(row))
            counts["replaced" if old else "written"] += 1
    return counts


# -- MLflow ------------------------------------------------------------------------------------------

MLFLOW_STATUS = {"complete": "FINISHED", "stopped_early": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                 "pruned": "KILLED", "interrupted": "KILLED"}  # fmt: skip


def tracking_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def to_mlflow(studies: list[tuple[str, Any]], destination: str) -> dict[str, int]:
    import logging

    from mlflow.entities import Metric, Param

    for name in ("alembic", "mlflow"):  # the schema's creation and migrations, on a new database
        logging.getLogger(name).setLevel(logging.WARNING)
    client = tracking_client(destination)
    counts = {"written": 0, "replaced": 0, "unchanged": 0}
    for study, frame in studies:
        experiment = client.get_experiment_by_name(study)
        kind = {"mlflow.experimentKind": "custom_model_development"}  # MLflow's word for training runs (not GenAI)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(study, tags=kind)
        existing: dict[str, list[Any]] = {}
        for run in client.search_runs([experiment_id], max_results=50000):
            existing.setdefault(run.data.tags.get("optbench.run_hash", ""), []).append(run)
        for _, row in frame.iterrows():
            finished = str(row["finished"])
            old = existing.get(row["run_hash"], [])
            if len(old) == 1 and old[0].data.tags.get("optbench.finished") == finished:
                counts["unchanged"] += 1
                continue
            for run in old:
                client.delete_run(run.info.run_id)
            end = row["finished"].timestamp() if not is_missing(row["finished"]) else None
            wall = row.get("wall_time")
            start = end - float(wall) if end is not None and not is_missing(wall) else end
            tags = {"optbench.run_hash": row["run_hash"], "optbench.study": study, "optbench.status": row["status"],
                    "optbench.arm": row["arm"], "optbench.seed": str(row["seed"]), "optbench.trial": str(row["trial"]),
                    "optbench.finished": finished, "mlflow.runName": run_name(row),
                    **{f"env.{k}": v[:5000] for k, v in environment(row).items()}}  # fmt: skip
            if not is_missing(row.get("error")):
                tags["optbench.error"] = str(row["error"])[-5000:]
            run = client.create_run(experiment_id, start_time=int(start * 1000) if start else None, tags=tags,
                                    run_name=run_name(row))  # fmt: skip
            run_id = run.info.run_id
            stamp = int((end or 0) * 1000)
            metrics = [Metric(name.replace("/", "_"), value, stamp, step)
                       for name, points in scalars(row).items() for step, value in points]  # fmt: skip
            last = max([0, *(m.step for m in metrics)])
            metrics += [Metric(k, v, stamp, last) for k, v in final_metrics(row).items()]
            params = [Param(k, str(v)[:6000]) for k, v in hyperparameters(row).items()]
            for i in range(0, len(params), 100):  # MLflow's limits per batch: 100 params, 1000 metrics
                client.log_batch(run_id, params=params[i : i + 100])
            for i in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[i : i + 1000])
            client.set_terminated(run_id, status=MLFLOW_STATUS.get(row["status"], "FINISHED"),
                                  end_time=stamp or None)  # fmt: skip
            counts["replaced" if old else "written"] += 1
    return counts
