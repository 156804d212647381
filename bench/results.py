"""The stored runs a suite file implies now: the query that joins a suite (bench.suite) with its store
(bench.store), and with its tuning protocol (bench.protocol), for `optbench results`, reports and scripts."""

from __future__ import annotations

from typing import Any

from bench.frame import typed_column
from bench.protocol import stages
from bench.store import load_results
from bench.suite import Suite


def suite_results(suite: Suite, storage: str | None = None, with_curves: bool = True) -> Any:
    """The stored runs that `suite` implies now, in its order (a pandas DataFrame). Runs stored under the
    suite's name by an earlier version of the file stay in the store, for reuse, but are left out here;
    `frame.attrs["left_out"]` counts them."""
    frame = load_results(suite.name, storage, with_curves=with_curves)
    settled = {h: (s, v) for h, s, v in zip(frame["run_hash"], frame["status"], frame["value"], strict=True)}
    runs = stages(suite, settled).runs  # a suite that tunes: its grid as extended, and its confirmations
    position = {r.hash: i for i, r in enumerate(runs)}
    current = frame["run_hash"].isin(position)
    # in the file's order, whatever order the runs finished in: figures list axis values as written
    kept = frame[current].sort_values("run_hash", key=lambda h: h.map(position), kind="stable")
    kept = kept.reset_index(drop=True)
    kept["stage"] = kept["run_hash"].map({r.hash: r.stage for r in runs})
    # each run's arm as the suite names it now: a label is display (the run hash is the identity), and a
    # stored one may predate a change of naming (an optimizer by import path read as {class_path=...})
    by_hash = {r.hash: r for r in runs}
    if len(kept):
        kept["arm"] = kept["run_hash"].map(lambda h: by_hash[h].arm_label).astype("str")
        for column in [c for c in kept.columns if c.startswith("arm.")]:
            labels = kept["run_hash"].map(lambda h, axis=column[4:]: by_hash[h].arm.get(axis)).astype(object)
            kept[column] = typed_column(column, labels)
    kept.attrs["left_out"] = int((~current).sum())
    return kept
