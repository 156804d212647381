"""The one mapping between a run (its config and RunRecord) and an Optuna trial.

A trial's parameters are what its study varies: a suite run's axes (`axis_params`), a search trial's
sampled fields; the constant rest of its config is a user attribute, so Optuna's importances and the
dashboard weigh only what varied. Its values are the suite's metric (a search's objectives, means over its
seeds); its intermediate values are the validation losses; its user attributes hold the rest of the
RunRecord, and its state with the `status` attribute gives the run's Status. The executor, the store's
readers and the doctor write and read trials only through this module.

Optuna's public API is used wherever it has one. Two things it lacks are isolated here:
- a trial's storage id: `FrozenTrial` keeps it private (`_trial_id`); the storage's public
  `get_trial_id_from_study_id_trial_number` gives it from the study's name and the trial's number.
- creating a trial whose id comes back: `Study.add_trial` returns nothing and `Study.ask` writes the trial
  before its attributes (a kill between them leaves a claim nobody can identify), so a claim is created with
  the storage's public `create_new_trial(study_id, template_trial)`, in one journal record / transaction,
  naming its worker; a search then samples on it through `optuna.Trial(study, trial_id)`, as `ask` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from bench.labels import choice_name, label

CURVE_POINTS = 500


class Status(StrEnum):
    """What became of a run: the one vocabulary from the store to every report section."""

    COMPLETE = "complete"
    DIVERGED = "diverged"
    STOPPED_EARLY = "stopped_early"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RUNNING = "running"  # a claim still being trained


FINISHED = (Status.COMPLETE.value, Status.DIVERGED.value, Status.STOPPED_EARLY.value)  # a result, ranked
STATUSES = tuple(s.value for s in Status if s is not Status.RUNNING)  # a settled run's statuses


def downsample(values: list, points: int = CURVE_POINTS) -> tuple[list[int], list]:
    """At most `points` (index, value) pairs, evenly spaced, the last one kept."""
    n = len(values)
    if n <= points:
        return list(range(n)), list(values)
    idx = sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    return idx, [values[i] for i in idx]


# -- ids ------------------------------------------------------------------------------------------


def study_id(storage: Any, study: Any) -> int:
    return storage.get_study_id_from_name(study.study_name)


def trial_id(storage: Any, study: Any, trial: Any) -> int:
    """The storage's id of a trial of `study` (FrozenTrial keeps it private)."""
    return storage.get_trial_id_from_study_id_trial_number(study_id(storage, study), trial.number)


# -- writing --------------------------------------------------------------------------------------


def claim_attrs(run: Any, suite_name: str, session: str, worker: dict[str, Any]) -> dict[str, Any]:
    """A suite run's claim: what identifies the run and who trains it."""
    return {
        "run_hash": run.hash,
        "seed": run.seed,
        "arm": run.arm,
        "arm_label": run.arm_label,
        "config": run.config.to_dict(),
        "stage": run.stage,
        "suite": suite_name,
        "session": session,
        "worker": worker,
    }


def create_running_trial(
    storage: Any, study: Any, user_attrs: dict[str, Any], params: dict[str, tuple[Any, Any]] | None = None
) -> int:
    """A RUNNING trial with its attributes and parameters (name -> (value, distribution)), written as one
    journal record (one transaction in a database): a claim is whole or absent. Returns its trial id."""
    import datetime

    from optuna.trial import FrozenTrial, TrialState

    params = params or {}
    template = FrozenTrial(
        number=0, state=TrialState.RUNNING, value=None,
        datetime_start=datetime.datetime.now(), datetime_complete=None,
        params={name: value for name, (value, _) in params.items()},
        distributions={name: dist for name, (_, dist) in params.items()},
        user_attrs=user_attrs, system_attrs={}, intermediate_values={}, trial_id=0,
    )  # fmt: skip
    return storage.create_new_trial(study_id(storage, study), template_trial=template)


def write_result(
    storage: Any, trial_id: int, record: Any, values: list[float] | None, attrs: dict[str, Any] | None = None
) -> None:
    """Store a RunRecord (and any further attributes) in its claimed trial and close it: FAIL for a failed
    run, PRUNED for a pruned one, else COMPLETE with `values` (a diverged run's are infinite: it ranks last,
    as infinitely bad; Optuna rejects only NaN). Raises optuna's UpdateFinishedTrialError when the claim
    was failed meanwhile (its worker was judged gone): the caller drops the result."""
    from optuna.trial import TrialState

    for step, value in zip(record.curves.get("val_step", []), record.curves.get("val_loss", []), strict=False):
        if value is not None and math.isfinite(value):
            storage.set_trial_intermediate_value(trial_id, step, value)
    for key, value in {**record_attrs(record), **(attrs or {})}.items():
        storage.set_trial_user_attr(trial_id, key, value)
    if record.status == Status.FAILED:
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    elif record.status == Status.PRUNED:
        storage.set_trial_state_values(trial_id, TrialState.PRUNED)
    else:
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values)


def late_trial(claim: Any, record: Any, values: list[float] | None, attrs: dict[str, Any] | None = None) -> Any:
    """A finished result whose claim (a FrozenTrial) was failed before the result could be stored (its
    worker was cut off from the database), as a trial of its own: the claim's parameters and attributes,
    the record, its state and values as write_result would have stored them."""
    import optuna
    from optuna.trial import TrialState

    state = {Status.FAILED: TrialState.FAIL, Status.PRUNED: TrialState.PRUNED}.get(record.status, TrialState.COMPLETE)
    curve = zip(record.curves.get("val_step", []), record.curves.get("val_loss", []), strict=False)
    return optuna.trial.create_trial(
        state=state, values=values if state == TrialState.COMPLETE else None, params=claim.params,
        distributions=claim.distributions, user_attrs={**claim.user_attrs, **record_attrs(record), **(attrs or {})},
        intermediate_values={s: v for s, v in curve if v is not None and math.isfinite(v)},
    )  # fmt: skip


def metric_value(record: Any, metric_field: str) -> float:
    """The value a trial is ranked by: the record's metric, infinite where the run has none (diverged)."""
    value = getattr(record, metric_field) if not isinstance(record, dict) else record.get(metric_field)
    return float(value) if value is not None else math.inf


def write_interrupted(storage: Any, trial_id: int, why: str | None = None, died: bool = False) -> None:
    """A claim whose training was stopped (Ctrl-C, SIGTERM), or whose worker died (`died`): FAIL with status
    interrupted and, as its `error`, `why` (claimable again; see bench.runner for how often after deaths).
    Nothing when the trial was settled meanwhile."""
    import optuna
    from optuna.trial import TrialState

    try:
        if why:
            storage.set_trial_user_attr(trial_id, "error", why)
        if died:
            storage.set_trial_user_attr(trial_id, "worker_died", True)
        storage.set_trial_user_attr(trial_id, "status", Status.INTERRUPTED.value)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # finished, or failed as stale by another worker: settled either way


def write_stale(storage: Any, trial_id: int, died: str | None = None) -> None:
    """A claim whose worker is gone: FAIL without a status, read as interrupted (claimable again). `died`:
    why, where its worker is certainly dead (its process gone), so that the claim counts as a worker's death
    whoever notices it first (bench.runner bounds those per run)."""
    import contextlib

    import optuna
    from optuna.trial import TrialState

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        if died:  # before the state: a finished trial takes no attributes
            storage.set_trial_user_attr(trial_id, "error", died)
            storage.set_trial_user_attr(trial_id, "worker_died", True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)


def search_attrs(values: dict[str, Any], records: list, objective_field: str) -> dict[str, Any]:
    """A search trial's attributes beside its first seed's record (write_result writes that): its run hash,
    its arm, every seed it trained with each later seed's own record."""
    first = records[0]
    return {
        "run_hash": first.config_hash,
        "seed": first.config["seed"],
        "config": first.config,
        "arm": {k: label(v) for k, v in values.items()},
        "arm_label": ", ".join(f"{k}={label(v)}" for k, v in values.items()),
        "seeds": [r.config["seed"] for r in records],
        "steps_trained": sum(r.steps for r in records),
        "objective_per_seed": [getattr(r, objective_field) for r in records],
        # every later seed's own record: results and the report show a row per seed, as for a suite's runs
        "other_seeds": [{"run_hash": r.config_hash, "seed": r.config["seed"], **record_attrs(r)} for r in records[1:]],
    }


def copied_trial(trial: Any, run: Any, from_study: str, params: dict[str, tuple[Any, Any]], metric_field: str) -> Any:
    """A finished trial of another study, as a trial of this suite's study: its arm, parameters and value as
    this suite names and ranks them (the other suite may vary other axes or rank by another metric)."""
    import optuna

    return optuna.trial.create_trial(
        params={name: value for name, (value, _) in params.items()},
        distributions={name: dist for name, (_, dist) in params.items()},
        value=metric_value(trial.user_attrs, metric_field),
        intermediate_values=trial.intermediate_values,
        user_attrs={**trial.user_attrs, "arm": run.arm, "arm_label": run.arm_label, "copied_from": from_study},
    )


def record_attrs(record: Any) -> dict[str, Any]:
    """The RunRecord as user attributes (config aside), curves downsampled to CURVE_POINTS points."""
    d = record.to_dict()
    curves = d.pop("curves")
    del d["config"], d["config_hash"]  # stored once, by the claim
    index: list[int] = []
    sampled = {}
    for name in ("train_loss", "grad_norm", "lr"):
        index, sampled[name] = downsample(curves.get(name, []))
    d["curves"] = {
        "step": [i + 1 for i in index],
        **sampled,
        "val_step": curves.get("val_step", []),
        "val_loss": curves.get("val_loss", []),
    }
    return d


def axis_params(
    axes: Mapping[str, list[Any]], values: Mapping[str, Any], label_of: Callable[[str, Any], str]
) -> dict[str, tuple[Any, Any]]:
    """A suite run's trial parameters: the axes it varies, nothing constant, so that Optuna's importances
    and the dashboard weigh only what varied. A numeric axis is a float (or int) range over its values (on a
    log scale where they are all positive and span a factor of 10 or more); any other axis is categorical
    over its values' labels. Name -> (value, distribution)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, tuple[Any, Any]] = {}
    for name, value in values.items():
        given = axes[name]
        numbers = [v for v in given if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(given) and all(math.isfinite(v) for v in numbers):
            low, high = min(numbers), max(numbers)
            log = low > 0 and high >= 10 * low
            if all(isinstance(v, int) for v in numbers):
                out[name] = (int(value), IntDistribution(int(low), int(high), log=log))
            else:
                out[name] = (float(value), FloatDistribution(float(low), float(high), log=log))
        else:
            out[name] = (label_of(name, value), CategoricalDistribution(tuple(label_of(name, v) for v in given)))
    return out


def fit_params(params: dict[str, tuple[Any, Any]], trials: list) -> dict[str, tuple[Any, Any]]:
    """`params` renamed where the study already holds a parameter of that name with a distribution Optuna
    would refuse beside it (an edited suite's axis: a categorical's choices cannot change): 'optimizer'
    becomes 'optimizer #2', the first name whose held distribution fits or that is free."""
    from optuna.distributions import check_distribution_compatibility

    held: dict[str, Any] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            held.setdefault(name, dist)
    out = {}
    for name, (value, dist) in params.items():
        candidate, n = name, 1
        while candidate in held:
            try:
                check_distribution_compatibility(held[candidate], dist)
                break
            except ValueError:
                n += 1
                candidate = f"{name} #{n}"
        out[candidate] = (value, dist)
    return out


def record_entries(study: Any, configs: list[Any]) -> None:
    """What reading a study's results needs of the entries that plugins and class_paths define (bench.standin),
    added to what the study holds (written again only when it grows)."""
    from bench.plugins import outside_entries

    held = study.user_attrs.get("entries") or {}
    merged = {**held, **{kind: {**held.get(kind, {}), **named} for kind, named in outside_entries(configs).items()}}
    if merged != held:
        study.set_user_attr("entries", merged)


# -- reading --------------------------------------------------------------------------------------


def trial_status(trial: Any) -> Status:
    """The run's Status from the trial's state and its `status` attribute."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return Status.RUNNING
    if trial.state == TrialState.PRUNED:
        return Status.PRUNED
    status = trial.user_attrs.get("status")
    if trial.state == TrialState.FAIL and status != Status.FAILED:
        return Status.INTERRUPTED
    if not status:
        return Status.COMPLETE
    # a status this vocabulary lacks (a hand-edited store) is no result: the run is trained again
    return Status(status) if status in STATUSES else Status.INTERRUPTED


def latest_per_run(trials: list) -> dict[str, tuple[Any, int]]:
    """run hash -> (the trial that speaks for the run, number of attempts). A finished trial wins."""
    by_run: dict[str, list] = {}
    for t in trials:
        run_hash = t.user_attrs.get("run_hash")
        if run_hash:
            by_run.setdefault(run_hash, []).append(t)
    out = {}
    for run_hash, ts in by_run.items():
        ts.sort(key=lambda t: t.number)
        finished = [t for t in ts if trial_status(t) in FINISHED]
        out[run_hash] = ((finished or ts)[-1], len(ts))
    return out


def settled_results(trials: list) -> dict[str, tuple[str, float | None]]:
    """run hash -> (status, value) of the trial that speaks for each run: what the tuning protocol decides
    its next stage from (bench.protocol)."""
    return {
        run_hash: (trial_status(t).value, t.values[0] if t.values and trial_status(t) in FINISHED else None)
        for run_hash, (t, _) in latest_per_run(trials).items()
    }


# the RunRecord's fields a results row holds, as columns
RECORD_COLUMNS = (
    "status", "status_step", "final_val_loss", "best_val_loss", "loss_floor", "steps", "tokens", "wall_time",
    "train_time", "cpu_time", "tokens_per_second", "peak_memory_mb", "n_params", "target", "target_step",
    "target_tokens", "target_time", "error",
)  # fmt: skip


def trial_rows(run_hash: str, t: Any, attempts: int, with_curves: bool = True) -> list[dict[str, Any]]:
    """The results rows of the trial that speaks for a run: one, or for a search trial that trained several
    seeds, one per seed, each with its own record and objective (`value`) beside the trial's mean over its
    seeds (`trial_value`, what the sampler saw)."""
    row = trial_row(run_hash, t, attempts, with_curves)
    others = t.user_attrs.get("other_seeds") or []
    if not others:
        return [row]
    per_seed = t.user_attrs.get("objective_per_seed") or []
    row["trial_value"] = row["value"]
    rows = [row]
    for i, other in enumerate(others, start=1):
        seed_row = {**row, "run_hash": other["run_hash"], "seed": other["seed"], "status": other.get("status")}
        for key in RECORD_COLUMNS:
            if key != "status":
                seed_row[key] = other.get(key)
        if with_curves:
            seed_row["curves"] = other.get("curves")
        seed_row["env"] = other.get("env")
        seed_row["config.seed"] = other["seed"]
        if row.get("config"):
            seed_row["config"] = {**row["config"], "seed": other["seed"]}
        if row["value"] is not None and i < len(per_seed):
            seed_row["value"] = per_seed[i]
        rows.append(seed_row)
    if row["value"] is not None and per_seed:
        row["value"] = per_seed[0]
    return rows


def trial_row(run_hash: str, t: Any, attempts: int, with_curves: bool = True) -> dict[str, Any]:
    """One results row of a run from the trial that speaks for it: status, value, record columns, config.*."""
    from bench.config import flatten

    row: dict[str, Any] = {
        "run_hash": run_hash,
        "trial": t.number,
        "seed": t.user_attrs.get("seed"),
        "arm": t.user_attrs.get("arm_label", ""),
        "status": trial_status(t).value,
        # the first objective of a multi-objective search; none for a run that did not finish (Optuna keeps
        # a pruned trial's last reported loss as its value: that loss is in best_val_loss, not ranked)
        "value": t.values[0] if t.values and trial_status(t) in FINISHED else None,
        "attempts": attempts,
    }
    for key, text in (t.user_attrs.get("arm") or {}).items():
        row[f"arm.{key}"] = text
    for key in RECORD_COLUMNS:
        if key != "status":
            row[key] = t.user_attrs.get(key)
    if with_curves:
        row["curves"] = t.user_attrs.get("curves")
    row["env"] = t.user_attrs.get("env")
    row["finished"] = t.datetime_complete  # naive local time, as Optuna keeps it
    row["config"] = t.user_attrs.get("config")
    config = t.user_attrs.get("config", {})
    for key, value in flatten(config, lists="list").items():
        row[f"config.{key}"] = value
    if isinstance(config.get("optimizer"), dict) and config["optimizer"].get("class_path"):
        row["config.optimizer.name"] = choice_name(config["optimizer"])  # 'Lamb', not 'class_path': display only
    # what governed the run's length: a token budget overrides `steps`, which then shows the steps it made
    row["budget"] = "tokens" if config.get("tokens") is not None else "steps"
    if row["budget"] == "tokens":
        per_step = config["batch_size"] * config["grad_accum"] * config["model"]["block_size"]
        row["config.steps"] = config["tokens"] // per_step
    return row
