"""The results frame: one row per run, pandas-native, so it round-trips through Parquet and Feather.

Every column holds values of one dtype: numbers (float64, or Int64 where whole numbers may be missing),
text (str), true/false (boolean), times (datetime64), lists of numbers, or, in `curves`, one record of
numpy arrays per run. Nested tables become dotted columns (`config.optimizer.lr`, `env.torch`); missing
values are pandas' own (NaN, NA, NaT, None); the config as stored, which rebuilds the run exactly, is JSON
text in `config`. docs/results.md lists every column with its dtype; tests/test_frame.py holds the two to
each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bench.config import flatten, is_missing
from bench.labels import CLASS_PATH

CURVE_KEYS = ("step", "train_loss", "grad_norm", "lr", "val_step", "val_loss")
WHOLE_CURVES = ("step", "val_step")  # steps; the rest are floats, NaN where a value was not finite

# The columns every frame has (trial_value only search trials that trained several seeds), with their dtype.
# The others are typed from their values: config.* and env.* (the run's config and environment, dotted),
# arm.* (an axis's label per run: numbers where every label is one).
COLUMNS: dict[str, str] = {
    "run_hash": "str",
    "trial": "Int64",
    "seed": "Int64",
    "arm": "str",
    "status": "str",
    "value": "float64",
    "attempts": "Int64",
    "status_step": "Int64",
    "final_val_loss": "float64",
    "best_val_loss": "float64",
    "loss_floor": "float64",
    "steps": "Int64",
    "tokens": "Int64",
    "wall_time": "float64",
    "train_time": "float64",
    "cpu_time": "float64",
    "tokens_per_second": "float64",
    "peak_memory_mb": "float64",
    "n_params": "Int64",
    "target": "float64",
    "target_step": "Int64",
    "target_tokens": "Int64",
    "target_time": "float64",
    "error": "str",
    "curves": "object",
    "finished": "datetime64[us]",
    "config": "str",
    "budget": "str",
    "trial_value": "float64",
}
EMPTY = [c for c in COLUMNS if c not in ("curves", "trial_value")]  # an empty frame's columns


def results_frame(rows: list[dict[str, Any]], with_curves: bool = True) -> Any:
    """The typed DataFrame of result rows (bench.codec.trial_rows): nested tables dotted, curves normalized."""
    import pandas as pd

    shaped = [shape(row) for row in rows]
    frame = pd.DataFrame(shaped) if shaped else pd.DataFrame({c: [] for c in EMPTY})
    if not with_curves and "curves" in frame:
        frame = frame.drop(columns="curves")
    for column in frame.columns:
        frame[column] = typed_column(column, frame[column])
    name_by_class(frame)
    return frame


def concat(frames: list[Any]) -> Any:
    """Results frames one under the other (a suite's runs and its search's trials), typed again: a column
    only some frames have is missing in the others' rows as its dtype says (None in a list column)."""
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    for column in frame.columns:
        frame[column] = typed_column(column, frame[column])
    return frame


def shape(row: dict[str, Any]) -> dict[str, Any]:
    """A result row with its environment dotted (env.*), its config as JSON text and its curves normalized."""
    out = {k: v for k, v in row.items() if k != "env"}
    if isinstance(out.get("config"), Mapping):
        out["config"] = json.dumps(out["config"])
    if "curves" in out:
        out["curves"] = curve_record(out["curves"])
    env = row.get("env")
    out.update({f"env.{k}": v for k, v in flatten(env if isinstance(env, Mapping) else {}, lists="list").items()})
    return out


def curve_record(curves: Any) -> dict[str, Any] | None:
    """The curves of a run with every key of CURVE_KEYS, each a numpy array: steps int64, values float64
    (NaN where a value was not finite). Arrays, not lists, keep their type through Parquet even when every
    value is missing (a list of NaN alone would come back as nulls)."""
    import numpy as np

    if not isinstance(curves, Mapping):
        return None
    out: dict[str, Any] = {}
    for key in CURVE_KEYS:
        values = curves.get(key) or []
        if key in WHOLE_CURVES:
            out[key] = np.array(values, dtype=np.int64)
        else:
            out[key] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return out


def typed_column(name: str, column: Any) -> Any:
    """A column in its documented dtype (COLUMNS), or typed from its values."""
    import pandas as pd

    dtype = COLUMNS.get(name)
    if dtype is None and name.startswith("arm."):
        column = axis_labels(column)
        if column.dtype != object:
            return column
    if dtype is None:
        dtype = inferred_dtype(column)
    if dtype == "object":
        return column.map(lambda v: None if is_missing(v) else v).astype(object)
    if dtype == "list":
        return column.map(lambda v: None if is_missing(v) else [float(x) for x in v]).astype(object)
    if dtype == "json":  # values of several kinds (a number in one row, a list in another): JSON text
        return column.map(lambda v: None if is_missing(v) else json.dumps(v)).astype("str")
    if dtype == "datetime64[us]":
        return pd.to_datetime(column).astype(dtype)
    if dtype in ("Int64", "float64"):
        return pd.to_numeric(column, errors="coerce").astype(dtype)
    if dtype == "boolean":
        return column.map(lambda v: pd.NA if is_missing(v) else bool(v)).astype(dtype)
    return column.astype(dtype)


def inferred_dtype(column: Any) -> str:
    """The dtype of a column without a documented one, from the kinds of its values."""
    kinds = {value_kind(v) for v in column if not is_missing(v)}
    if not kinds:
        return "object"
    if kinds == {"bool"}:
        return "boolean"
    if kinds == {"int"}:
        return "Int64"
    if kinds <= {"int", "float"}:
        return "float64"
    if kinds == {"str"}:
        return "str"
    if kinds == {"list"}:
        return "list"
    return "json"


def value_kind(value: Any) -> str:
    import numbers

    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        return "list"
    return "other"


def axis_labels(labels: Any) -> Any:
    """Arm labels as numbers where every one is a number (so batch size 16 sorts after 8), else as text."""
    import pandas as pd

    present = labels.dropna()
    if present.empty or present.map(lambda v: str(v).lower() in ("true", "false", "nan", "inf", "-inf")).any():
        return labels
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return labels
    as_int = (numbers == numbers.round()).all() and not present.astype(str).str.contains(r"[.eE]").any()
    return pd.to_numeric(labels, errors="coerce").astype("Int64" if as_int else "float64")


def name_by_class(frame: Any) -> None:
    """config.optimizer.name of optimizers by import path: the class name (set by the codec), or the path
    where two classes in the frame share a name (lion_pytorch.Lion and pytorch_optimizer.Lion)."""
    path_column = f"config.optimizer.{CLASS_PATH}"
    if path_column not in frame or "config.optimizer.name" not in frame:
        return
    paths = frame[path_column].dropna().unique()
    by_name: dict[str, set[str]] = {}
    for path in paths:
        by_name.setdefault(path.rpartition(".")[2], set()).add(path)
    shared = {p for ps in by_name.values() if len(ps) > 1 for p in ps}
    if shared:
        rows = frame[path_column].isin(shared)
        frame.loc[rows, "config.optimizer.name"] = frame.loc[rows, path_column]
