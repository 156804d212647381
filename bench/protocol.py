"""The tuning protocol of a suite that tunes: each arm is tuned on the suite's seeds, its grid extended past
an edge where its best setting lies there and refined around its best, then its chosen setting is trained
again on fresh seeds that took no part in choosing it (the confirmation its leaderboard entry comes from).

Why: a tuned optimum at the edge of its grid means the arm was compared untuned ("Fantastic Pretraining
Optimizers", Wen et al. 2025, name it the main reason published speedups are overstated), and the seeds
that chose a setting flatter it (the winner's curse), so its interval comes from seeds that did not.

Every stage is a function of the results stored so far, so every worker and machine, a resumed command and
the report compute the same runs: `stages(suite, results)` takes {run hash: (status, value)} and gives
every run the suite implies now and, per arm, what was added and why, what was chosen, and the edge its
best may still lie at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.axes import AXES
from bench.codec import FINISHED, axis_params
from bench.config import SCALARS
from bench.labels import label
from bench.registry import ConfigError
from bench.suite import Run, Suite, expand

Results = Mapping[str, tuple[str, "float | None"]]  # run hash -> (status, value of the suite's metric)


@dataclass(frozen=True)
class Added:
    """A tuned value the protocol added to an arm's grid, and why."""

    key: str  # the tuned setting: an axis, or a parameter inside one
    value: float
    why: str


@dataclass
class ArmTuning:
    """One arm's tuning: the settings tried, the one chosen, and its confirmation."""

    arm: str
    runs: list[Run] = field(default_factory=list)  # tuning runs: the declared grid, then what was added
    added: list[Added] = field(default_factory=list)
    chosen: dict[str, str] | None = None  # tuned key -> label of its value, once the arm's tuning settled
    edges: dict[str, str] = field(default_factory=dict)  # tuned key -> why its best still lies at an edge
    confirm: list[Run] = field(default_factory=list)  # the chosen setting on the confirming seeds

    @property
    def settled(self) -> bool:
        return self.chosen is not None


@dataclass
class Stages:
    runs: list[Run]  # every run the suite implies now: the declared grid, then what the protocol added
    arms: dict[str, ArmTuning]  # untuned arm label -> its tuning (empty for a suite that does not tune)


def stages(suite: Suite, results: Results) -> Stages:
    """Every run the suite implies given the results stored so far."""
    declared = suite.runs()
    if not suite.tune:
        return Stages(declared, {})
    arms: dict[str, ArmTuning] = {}
    for run in declared:
        arm = suite.untuned_label(run)
        arms.setdefault(arm, ArmTuning(arm)).runs.append(run)
    every = list(declared)
    for tuning in arms.values():
        every += advance(suite, tuning, results)
    return Stages(every, arms)


def advance(suite: Suite, tuning: ArmTuning, results: Results) -> list[Run]:
    """Extend and refine one arm's grid as far as its stored results take it, then add its confirmation
    runs. Returns the runs added to the declared ones."""
    added: list[Run] = []
    while True:
        means = point_means(suite, tuning.runs, results)
        if means is None:  # runs still to train: the next stage waits for their results
            return added
        best = min(means, key=lambda p: (means[p][0], p))
        new = propose(suite, tuning, best, {p: m for p, (m, _) in means.items()})
        if not new:
            break
        tuning.runs += new
        added += new
    tuning.chosen = dict(best)
    template = means[best][1]
    tuning.confirm = [
        replace(template, config=template.config.override({"seed": s}), stage="confirm") for s in suite.confirm_seeds
    ]
    return added + tuning.confirm


def point_of(suite: Suite, run: Run) -> tuple[tuple[str, str], ...]:
    """The run's tuned settings as (key, label) pairs: what identifies a point of the arm's grid."""
    return tuple((k, point_label(v)) for k, v in tuned_values(suite, run).items())


def point_label(value: Any) -> str:
    """A tuned value as a point's coordinate: numbers at full precision, so none two are confused."""
    return label(value, 17) if is_number(value) else label(value)


def tuned_values(suite: Suite, run: Run) -> dict[str, Any]:
    """The run's values of the suite's tuned keys (an axis, or a parameter inside an axis's table)."""
    out = {}
    for key in suite.tune:
        if key in run.values:
            out[key] = run.values[key]
            continue
        head, _, inner = key.partition(".")
        table = run.values.get(head)
        if isinstance(table, Mapping) and inner in table:
            out[key] = table[inner]
    return out


def point_means(suite: Suite, runs: list[Run], results: Results) -> dict[tuple, tuple[float, Run]] | None:
    """Per tuned point: (mean metric over the tuning seeds, a run of it); None while any run has no settled
    result. A run that diverged or failed counts as infinitely bad."""
    values: dict[tuple, list[float]] = {}
    template: dict[tuple, Run] = {}
    for run in runs:
        got = results.get(run.hash)
        if got is None or got[0] not in (*FINISHED, "failed"):
            return None
        status, value = got
        point = point_of(suite, run)
        values.setdefault(point, []).append(value if status in FINISHED and value is not None else math.inf)
        template.setdefault(point, run)
    return {p: (sum(v) / len(v), template[p]) for p, v in values.items()}


def edge_of(grid: list[Any], value: Any) -> tuple[str, int] | None:
    """('largest' | 'smallest', number of values) when `value` is the largest or smallest number of a grid of
    two or more that ran; None when it lies inside, or the grid is not numeric (what the report flags)."""
    if not all(is_number(v) for v in grid) or not is_number(value):
        return None
    numbers = sorted({float(v) for v in grid})
    if len(numbers) < 2:
        return None
    if float(value) == numbers[-1]:
        return "largest", len(numbers)
    if float(value) == numbers[0]:
        return "smallest", len(numbers)
    return None


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def scale_of(config: Any, key: str, values: list[float]) -> str:
    """The scale a tuned setting is stepped on: the one its parameter's declared search range uses (a learning
    rate's is log, a warmup's linear), else log where the values are all positive and span a factor of 10 or
    more."""
    param = setting_param(config, key)
    if param is not None and param.search is not None and param.search[0] in ("log", "float", "int", "steps"):
        return "log" if param.search[0] == "log" and min(values) > 0 else "linear"
    return "log" if min(values) > 0 and max(values) >= 10 * min(values) else "linear"


def setting_param(config: Any, key: str) -> Any:
    """The Param a dotted setting of a run's config names ('optimizer.lr' -> its optimizer's lr), or None."""
    head, _, inner = key.partition(".")
    if not inner:
        return SCALARS.get(head)
    axis = AXES.get(head)
    if axis is None or axis.combine:
        return None
    choice = getattr(config, head)
    entry = axis.registry.entries.get(choice.name)
    return entry.params.get(inner) if entry is not None else None


def beyond(value: float, declared: list[float], edge: str, scale: str) -> float:
    """The next value past an edge: the declared grid's outermost step there, on its scale."""
    ordered = sorted(declared)
    a, b = (ordered[-2], ordered[-1]) if edge == "largest" else (ordered[1], ordered[0])
    return value * (b / a) if scale == "log" else value + (b - a)


def midpoint(a: float, b: float, scale: str) -> float:
    return math.sqrt(a * b) if scale == "log" else (a + b) / 2


def tidy(x: float, integer: bool) -> float | int:
    """A new grid value at 3 significant digits (0.0316, not 0.031622776601683794), whole for an integer
    setting: shorter labels, the same on every machine."""
    return round(x) if integer else float(f"{x:.3g}")


def propose(suite: Suite, tuning: ArmTuning, best: tuple, means: dict[tuple, float]) -> list[Run]:
    """The runs of the next stage of one arm's tuning: for each numeric tuned setting, along the line of
    points that share the best's other settings, a value past the edge where the best lies (up to
    `suite.tune_extend` steps past the declared grid), else the midpoints between the best and its
    neighbours (down to `suite.tune_refine` halvings of the declared step). Records what and why."""
    best_values = dict(best)
    template = next(r for r in tuning.runs if point_of(suite, r) == best)
    runs: list[Run] = []
    for key in suite.tune:
        declared = [tuned_values(suite, r).get(key) for r in tuning.runs if r.stage == "grid"]
        if key not in best_values or not declared or not all(is_number(v) for v in declared):
            continue  # a categorical setting (a schedule's name) has no edge to extend
        declared = sorted(set(declared))
        if len(declared) < 2:
            continue
        others = {k: v for k, v in best if k != key}
        line = sorted({tuned_values(suite, r)[key] for r in tuning.runs
                       if {k: v for k, v in point_of(suite, r) if k != key} == others})  # fmt: skip
        if len(line) < 2:  # the best's other settings were tried at one value of this one: nothing to judge
            continue
        value = tuned_values(suite, template)[key]
        scale = scale_of(template.config, key, declared)
        integer = all(isinstance(v, int) for v in declared)
        edge = "largest" if value == line[-1] else "smallest" if value == line[0] else None
        if edge is not None:
            past = [v for v in line if (v > declared[-1] if edge == "largest" else v < declared[0])]
            if len(past) >= suite.tune_extend:
                limit = f"{len(past)} step(s) past the declared grid" if suite.tune_extend else "not extended"
                tuning.edges[key] = (f"its best lies at the {edge} value tried, {label(value)}, {limit} "
                                     f"(tune_extend = {suite.tune_extend})")  # fmt: skip
                continue
            new = tidy(beyond(value, declared, edge, scale), integer)
            why = f"extended past the {edge} value, {label(value)}, where the best lay"
            made = with_value(suite, template, key, new)
            if isinstance(made, str):
                tuning.edges[key] = f"its best lies at the {edge} value tried, {label(value)}; {made}"
                continue
            tuning.added.append(Added(key, new, why))
            runs += made
            continue
        tuning.edges.pop(key, None)
        pairs = zip(declared, declared[1:], strict=False)
        step = min(b / a if scale == "log" else b - a for a, b in pairs)  # the declared grid's finest step
        i = line.index(value)
        # both sides: loss against a learning rate is no parabola (a gentle slope, then a cliff), so the side
        # of the better neighbour does not tell where the minimum is (one side only missed it by 2.5 steps)
        for neighbour in (line[i - 1], line[i + 1]):
            gap = max(neighbour, value) / min(neighbour, value) if scale == "log" else abs(neighbour - value)
            finest = step ** (0.5**suite.tune_refine) if scale == "log" else step * 0.5**suite.tune_refine
            if gap <= finest * 1.01:  # (new values are rounded to 3 digits: a gap may read 0.5% wider)
                continue
            new = tidy(midpoint(value, neighbour, scale), integer)
            if new in line or new in (value, neighbour):
                continue
            made = with_value(suite, template, key, new)
            if isinstance(made, str):
                continue
            tuning.added.append(Added(key, new, f"refined between the best, {label(value)}, and {label(neighbour)}"))
            runs += made
    return runs


def with_value(suite: Suite, template: Run, key: str, value: Any) -> list[Run] | str:
    """The template's point with `key` set to `value`, once per tuning seed; the reason where the value
    cannot run (a bound of the setting: a momentum above 1, a learning rate at 0)."""
    values = dict(template.values)
    if key in values:
        values[key] = value
    else:
        head, _, inner = key.partition(".")
        values[head] = {**values[head], inner: value}
    try:
        config = suite.base.override(expand(values))
    except ConfigError as e:
        return f"{value!r} cannot run ({e.message})"
    arm = {k: suite.axis_label(k, v) if k != key else label(v) for k, v in values.items()}
    return [Run(config.override({"seed": s}), arm, values, stage="tune") for s in suite.seeds]


def run_params(suite: Suite, run: Run) -> dict[str, tuple[Any, Any]]:
    """A run's trial parameters (name -> (value, distribution)): the axes the suite varies, with the same
    distribution for every run of the suite, what the protocol adds included. A tuned numeric setting is a
    range over every value the protocol can reach (the declared values and up to `tune_extend` steps past
    them); an axis holding a tuned setting inside its tables is categorical over its values without it."""
    if not suite.tune:
        return axis_params(suite.axes, run.values, suite.axis_label)
    tuned = tuned_values(suite, run)
    plain = {k: v for k, v in run.values.items() if k not in suite.tune and not inner_keys(suite, k)}
    out = axis_params({k: suite.axes[k] for k in plain}, plain, suite.axis_label)
    for key in run.values:
        inner = inner_keys(suite, key)
        if inner and key not in suite.tune:
            untuned = [strip(v, inner) for v in suite.axes[key]]
            labels = tuple(dict.fromkeys(suite.axis_label(key, v) for v in untuned))
            out[key] = (suite.axis_label(key, strip(run.values[key], inner)), CategoricalDistribution(labels))
    for key, value in tuned.items():
        declared = declared_values(suite, key)
        if not all(is_number(v) for v in declared) or len(set(declared)) < 2:
            out.update(axis_params({key: declared}, {key: value}, lambda k, v: label(v)))
            continue
        out[key] = (value, reachable(suite, key, declared))
    return out


def inner_keys(suite: Suite, axis: str) -> list[str]:
    """The tuned parameters set inside an axis's tables ('lr' for tune = ["optimizer.lr"] under an optimizer
    axis that is no axis of its own)."""
    return [t.split(".", 1)[1] for t in suite.tune if t.startswith(axis + ".") and t not in suite.axes]


def strip(value: Any, inner: list[str]) -> Any:
    return {k: v for k, v in value.items() if k not in inner} if isinstance(value, Mapping) else value


def declared_values(suite: Suite, key: str) -> list[Any]:
    """Every value the suite file gives a tuned setting, over all its arms."""
    if key in suite.axes:
        return list(suite.axes[key])
    head, _, inner = key.partition(".")
    return [v[inner] for v in suite.axes.get(head, []) if isinstance(v, Mapping) and inner in v]


def reachable(suite: Suite, key: str, declared: list[float]) -> Any:
    """The range of a tuned numeric setting the protocol can reach: the declared values, and `tune_extend`
    steps past them on the setting's scale (a little wider, for the rounding of new values)."""
    numbers = sorted(set(declared))
    scale = scale_of(suite.base, key, numbers)
    low, high = numbers[0], numbers[-1]
    for _ in range(suite.tune_extend):
        low, high = beyond(low, numbers, "smallest", scale), beyond(high, numbers, "largest", scale)
    integer = all(isinstance(v, int) for v in numbers)
    if scale == "log":
        low, high = low / 1.01, high * 1.01
    else:
        margin = 0.01 * (high - low)
        low, high = low - margin, high + margin
    if integer:
        return IntDistribution(math.floor(low), math.ceil(high), log=scale == "log" and low >= 1)
    return FloatDistribution(low, high, log=scale == "log")
