"""A suite's `[search]` table -> the Space a search samples: each entry is a dotted field.

    [search]
    optimizer = "auto"                       # every optimizer, and conditionally its own parameters
    schedule = ["warmup_cosine", "wsd"]      # these schedules, each with its own parameters
    "optimizer.lr" = { low = 1e-4, high = 3e-2, log = true }
    "schedule.warmup" = { low = 0, high = 300, type = "int" }
    clip = "auto"
    batch_size = [8, 12, 16]

A registry axis given as "auto" or a list of names searches the choice and, only where it applies, each
chosen entry's parameters over the ranges the registry declares (`Param.search`); explicit entries win.
A list may hold tables too (`{ class_path = "pytorch_optimizer.Lamb" }`): Optuna's categorical choices
must be plain values, so such a choice is stored under its label and mapped back to its table.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.axes import CHOICE_AXES, SEARCHED_AXES
from bench.config import RunConfig
from bench.labels import label
from bench.registry import ConfigError, Param, Table

PLAIN = (type(None), bool, int, float, str)  # what an Optuna categorical choice may be


@dataclass(frozen=True)
class Dimension:
    """One searched field: categorical choices, or a float/int range (log or linear)."""

    name: str
    kind: str  # categorical | float | int
    choices: tuple = ()  # plain values; a table is stored as its label (see `tables`)
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    when: tuple[str, str] | None = None  # only when another dimension (axis name) took this value
    tables: tuple[tuple[str, Any], ...] = field(default=(), compare=False)  # label -> the table it stands for

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def value(self, sampled: Any) -> Any:
        """The config value a sampled choice stands for (a table behind its label)."""
        return dict(self.tables).get(sampled, sampled) if self.tables else sampled

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)


def categorical(name: str, items: list[Any], when: tuple[str, str] | None = None) -> Dimension:
    """Plain values as they are; tables under their labels (distinct labels, or bad input)."""
    if all(isinstance(v, PLAIN) for v in items):
        return Dimension(name, "categorical", tuple(items), when=when)
    labels = [v if isinstance(v, PLAIN) else label(v) for v in items]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"search.{name}", f"two choices read the same: {labels!r}")
    tables = tuple((lab, v) for lab, v in zip(labels, items, strict=True) if not isinstance(v, PLAIN))
    return Dimension(name, "categorical", tuple(labels), when=when, tables=tables)


@dataclass
class Space:
    dimensions: list[Dimension] = field(default_factory=list)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Dotted field -> sampled value (a choice's label where it stands for a table) for one trial;
        conditional dimensions only where their entry was chosen."""
        values: dict[str, Any] = {}
        for dim in self.dimensions:
            if dim.when is not None and values.get(dim.when[0]) != dim.when[1]:
                continue
            values[dim.name] = dim.suggest(trial)
        return values

    def is_conditional(self) -> bool:
        return any(d.when for d in self.dimensions)

    def grid(self) -> dict[str, list]:
        if self.is_conditional() or any(d.kind != "categorical" for d in self.dimensions):
            raise ConfigError("--sampler", "grid needs a space of explicit lists only (no ranges, no 'auto')")
        return {d.name: list(d.choices) for d in self.dimensions}

    def grid_points(self, fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every point of the grid in a fixed order (the last dimension varying fastest), pinned dimensions
        at their arm's value."""
        grid = {name: [fixed[name]] if name in fixed else choices for name, choices in self.grid().items()}
        return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]

    def distributions(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """name -> Optuna distribution of the dimensions a trial's `values` set."""
        return {d.name: d.distribution() for d in self.dimensions if d.name in values}

    def config(self, base: RunConfig, values: Mapping[str, Any], seed: int) -> RunConfig:
        """The run a trial's sampled values describe: choices first, so their parameters refine them."""
        dims = {d.name: d for d in self.dimensions}
        first = [(k, v) for k, v in values.items() if "." not in k or k.endswith(".name")]  # whole choices first
        ordered = first + [(k, v) for k, v in values.items() if (k, v) not in first]
        overrides: dict[str, Any] = {}
        for k, v in ordered:
            if k in dims and dims[k].tables and k.endswith(".name") and isinstance(dims[k].value(v), Mapping):
                overrides[k.removesuffix(".name")] = dims[k].value(v)  # a table chosen whole (class_path)
            else:
                overrides[config_field(dims[k]) if k in dims else k] = dims[k].value(v) if k in dims else v
        return base.override({**overrides, "seed": seed})

    def arm(self, values: Mapping[str, Any]) -> dict[str, str]:
        """A trial's settings as labels, the way results and reports show arms."""
        return {k: label(v) for k, v in values.items()}


def registry_dimensions(
    axis: str, items: list[Any], explicit: Mapping[str, Any], total_steps: int = 0
) -> list[Dimension]:
    """The axis choice, then each named entry's own searchable parameters, conditional on that entry (a
    table chosen whole, such as a class_path optimizer, keeps the parameters it gives)."""
    registry = CHOICE_AXES[axis]
    dims = [categorical(f"{axis}.name", items)]
    for name in items:
        if not isinstance(name, str):
            continue
        entry = registry.get(name, f"search.{axis}")
        for pname, param in entry.params.items():
            key = f"{axis}.{pname}"
            if key in explicit or param.search is None:
                continue
            dims.append(param_dimension(f"{axis}.{name}.{pname}", param, (f"{axis}.name", name), total_steps))
    return dims


def param_dimension(name: str, param: Param, when: tuple[str, str] | None = None, total_steps: int = 0) -> Dimension:
    spec = param.search
    if spec[0] == "steps":  # fractions of the run -> whole steps, always shorter than the run
        low = round(spec[1] * total_steps)
        high = max(low + 1, min(total_steps - 1, round(spec[2] * total_steps)))
        return Dimension(name, "int", low=low, high=high, when=when)
    if isinstance(spec[0], str) and spec[0] in ("log", "float", "int"):
        kind = "int" if spec[0] == "int" else "float"
        return Dimension(name, kind, low=spec[1], high=spec[2], log=spec[0] == "log", when=when)
    return Dimension(name, "categorical", tuple(spec), when=when)


RANGE = Table(
    "search",
    'Each key of [search] is a dotted field of the run; its value a list of values to choose from, on an axis '
    '"auto" (every entry) or a list of entry names (each with its own parameters searched), or a range table '
    'with these keys, sampled by Optuna: "optimizer.lr" = { low = 1e-4, high = 3e-2, log = true }.',
    {
        "low": Param(float, None, "The smallest value sampled (> 0 on a log scale; a whole number for type int)."),
        "high": Param(float, None, "The largest value sampled, above low (a whole number for type int)."),
        "log": Param(bool, False, "Sample on a log scale (learning rates, weight decays)."),
        "type": Param(str, "float", "The kind of number sampled: float, or int for whole numbers (steps, batch "
                      "sizes).", choices=("float", "int")),
    },
)  # fmt: skip
RANGE_KEYS = set(RANGE.keys)


def flatten_search(search: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML's bare dotted keys nest (optimizer.lr = [...] is {optimizer: {lr: [...]}}); ranges stay tables, a
    range with a misspelt key too (it names low or high), so that the key is refused as a range's."""
    out: dict[str, Any] = {}
    for key, value in search.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not set(value) <= RANGE_KEYS and not {"low", "high"} & set(value):
            out.update(flatten_search(value, name + "."))
        else:
            out[name] = value
    return out


def is_registry_list(key: str, spec: Any) -> bool:
    """`optimizer = "auto"` or a list of entry names (tables allowed beside them) on a searched axis."""
    if key not in SEARCHED_AXES:
        return False
    if spec == "auto":
        return True
    return isinstance(spec, list) and any(isinstance(s, str) for s in spec)


def parse_space(search: Mapping[str, Any], base: RunConfig) -> Space:
    """The [search] table -> a Space, every value checked against the config it would make."""
    search = flatten_search(search)
    explicit = {k: v for k, v in search.items() if not is_registry_list(k, v)}
    dims: list[Dimension] = []
    for key, spec in search.items():
        where = f"search.{key}"
        if is_registry_list(key, spec):
            items = CHOICE_AXES[key].names() if spec == "auto" else spec
            dims += registry_dimensions(key, items, explicit, base.total_steps)
        elif isinstance(spec, list):
            if not spec:
                raise ConfigError(where, "must list at least one value")
            dims.append(categorical(f"{key}.name" if key in SEARCHED_AXES else key, spec))
        elif isinstance(spec, Mapping):
            dims.append(range_dimension(key, spec))
        else:
            raise ConfigError(where, "must be a list of values, a table {low, high, log, type}, or 'auto'")
    for dim in dims:  # each value must make a valid run: check the ends of ranges and every choice
        check_dimension(dim, dims, base)
    return Space(dims)


def range_dimension(key: str, spec: Mapping[str, Any]) -> Dimension:
    where = f"search.{key}"
    try:
        r = RANGE.check(spec, where)
    except ConfigError as e:
        if e.key in (f"{where}.low", f"{where}.high"):
            raise ConfigError(e.key, f"{e.message} (a range needs finite numbers low < high)") from None
        raise
    low, high, log = r["low"], r["high"], r["log"]
    if low >= high:
        raise ConfigError(where, f"needs finite numbers low < high, got low={spec['low']!r} high={spec['high']!r}")
    if r["type"] == "int":
        if not (low.is_integer() and high.is_integer()):
            # (suggest_int truncates: low = 0.5, high = 0.9 would search the single value 0)
            raise ConfigError(where, f"needs whole numbers low and high for type int, got {low!r}, {high!r}")
        low, high = int(low), int(high)
    if log and low <= 0:
        raise ConfigError(f"{where}.low", "must be > 0 on a log scale")
    return Dimension(key, r["type"], low=low, high=high, log=log)


def check_dimension(dim: Dimension, dims: list[Dimension], base: RunConfig) -> None:
    """Every choice and both ends of a range make a valid run (a choice with its searched parameters at
    their low ends: a default warmup of 100 steps must not refuse a schedule whose warmup the search
    samples within a short run)."""
    probes = dim.choices if dim.kind == "categorical" else (dim.low, dim.high)
    for value in probes:
        overrides = {f"{dim.when[0].split('.')[0]}": dim.when[1]} if dim.when else {}
        inner = {config_field(d): d.low if d.kind != "categorical" else d.value(d.choices[0])
                 for d in dims if d.when == (dim.name, value)}  # fmt: skip
        if dim.tables and dim.name.endswith(".name") and isinstance(dim.value(value), Mapping):
            setting = {dim.name.removesuffix(".name"): dim.value(value)}
        else:
            setting = {config_field(dim): int(value) if dim.kind == "int" else dim.value(value)}
        try:
            base.override({**overrides, **setting, **inner})
        except ConfigError as e:
            raise ConfigError(f"search.{dim.name}", e.message) from None


def config_field(dim: Dimension) -> str:
    """'optimizer.lion.lr' (a conditional dimension) -> 'optimizer.lr'; others are fields already."""
    if dim.when is None:
        return dim.name
    axis, _, rest = dim.name.partition(".")
    return f"{axis}.{rest.split('.', 1)[1]}"
