"""Suite files -> a validated list of runs.

A suite declares a base run and the axes to vary. `grid` runs every combination of every axis;
`ablation` changes one axis at a time from the base. Each combination runs once per seed. Everything is
checked before anything runs: a bad file raises ConfigError naming the file and the key.

>>> suite = Suite.parse({"suite": {"name": "demo", "seeds": [0, 1]}, "base": {"model": "tiny"},
...                      "axes": {"optimizer": ["adamw", "lion"], "optimizer.lr": [1e-3, 3e-3]}})
>>> len(suite.runs()), sorted(suite.runs()[0].arm)
(8, ['optimizer', 'optimizer.lr'])
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import plugins, settings
from bench.config import MAX_SEED, RunConfig
from bench.labels import LABEL_DIGITS, label, label_digits, label_style
from bench.registry import ConfigError, Either, Param, Rule, Table, closest, unknown_key
from bench.runfile import read_toml

DESIGNS = ("grid", "ablation")
METRICS = {"val_loss": "final_val_loss", "best_val_loss": "best_val_loss"}
SECTIONS = ("suite", "base", "axes", "search")
SAFE_NAME = re.compile(r"\w[\w .+=,()-]{0,127}")
# A file name holds 255 bytes; the longest one a suite's name makes is the report's temporary file,
# `.NAME.html.PID.part` (bench.files.atomic_path), with a pid of up to 7 digits (Linux's pid_max 2**22).
NAME_BYTES = 255 - len("..html.1234567.part")

# A suite's name names files (reports/<name>.html must stay in reports/) and studies in a shared store.
NAME_RULES = (
    Rule(
        "letters, digits, spaces and _ . - + = , ( ); no / or \\, not starting with . or -, at most 128 characters",
        lambda name: None if SAFE_NAME.fullmatch(name) else (
            f"{name!r} cannot name a file: use letters, digits, spaces and _ . - + = , ( ) "
            "(no / or \\, not starting with . or -, at most 128 characters)"
        ),
    ),
    Rule(  # 128 characters of CJK text are 384 bytes
        f"at most {NAME_BYTES} bytes in UTF-8, so that its files' names fit",
        lambda name: None if len(name.encode()) <= NAME_BYTES else (
            f"is {len(name.encode())} bytes in UTF-8, over the {NAME_BYTES} that fit a file name "
            "(reports/<name>.html and its temporary file)"
        ),
    ),
    Rule(
        "not ending in '.search' nor containing '.search.': those name the search studies of suites",
        lambda name: None if not (name.endswith(".search") or ".search." in name) else (
            f"{name!r} may not end in '.search' or contain '.search.': those name the search studies of "
            "other suites in a shared store (<suite>.search, <suite>.search.<arm>)"
        ),
    ),
)  # fmt: skip
SEED = Param(int, None, "seed", low=0, high=MAX_SEED)

SUITE = Table(
    "suite",
    "What the suite is called, which runs it makes of its axes, and how they are judged.",
    {
        "name": Param(str, None, "The suite's name: its study in the store and its report, reports/<name>.html "
                      "(default: the file's name without .toml).", rules=NAME_RULES),
        "description": Param(str, "", "The question the suite answers, shown at the top of its report."),
        "design": Param(str, "grid", "How the runs are made of the axes: grid, every combination of them; "
                        "ablation, one axis at a time from the base.", choices=DESIGNS),
        "seeds": Param(list, (0,), "The seeds each configuration is trained with, once each.", item=SEED,
                       required=True, unique=True),
        "metric": Param(str, "val_loss", "What ranks the runs: the final validation loss (val_loss) or the best "
                        "one any evaluation saw (best_val_loss).", choices=tuple(METRICS)),
        "target": Param(float, None, "A validation loss: every run records the time and tokens it took to reach "
                        "it.", optional=True),
        "tune": Param(list, (), "Axes, or parameters set inside an axis's values (optimizer.lr under optimizer), "
                      "that each arm is tuned over: the report ranks every arm at its best setting of them.",
                      item=Param(str, None, "axis name")),
        "max_runs": Param(int, None, "At most this many runs: a seeded sample of whole configurations, each with "
                          "all its seeds (a grid too large to run whole).", low=1, optional=True),
        "baseline": Param(str, None, "The arm every other arm is compared with, as the report labels it, or the "
                          "key=value parts that set it apart (optimizer=adamw): every arm holding those parts is a "
                          "baseline arm, and each other arm is compared with the one that shares its other parts "
                          "(default: the first arm).", optional=True),
        "confirm_seeds": Either(
            (Param(int, None, "a count of fresh seeds", low=0, high=100), Param(list, None, item=SEED, unique=True)),
            3,
            "In a suite that tunes: the fresh seeds each arm's chosen setting is trained again on, which took no "
            "part in choosing it; a count of seeds after the suite's own, or a list of seeds not among them.",
        ),
        "tune_extend": Param(int, 3, "In a suite that tunes: how many steps a tuned axis's grid may be extended "
                             "past an edge where an arm's best lies (0: never).", low=0, high=10),
        "tune_refine": Param(int, 1, "In a suite that tunes: how many times the declared step between a tuned "
                             "axis's values may be halved around an arm's best (0: never).", low=0, high=10),
    },
)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One run of a suite: its config (seed included) and the axis values that make it what it is."""

    config: RunConfig
    arm: dict[str, str]  # axis -> label of its value, e.g. {"optimizer": "lion", "optimizer.lr": "0.001"}
    values: dict[str, Any] = field(default_factory=dict, compare=False)  # axis -> the value as written
    # grid: declared by the suite; tune: a value a tuned arm's grid was extended or refined by; confirm: the
    # chosen setting of a tuned arm on a confirming seed (bench.protocol)
    stage: str = field(default="grid", compare=False)

    @property
    def hash(self) -> str:
        return self.config.hash

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def arm_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.arm.items()) or "base"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    design: str
    seeds: tuple[int, ...]
    metric: str
    target: float | None
    tune: tuple[str, ...]
    max_runs: int | None
    base: RunConfig
    axes: dict[str, list[Any]]
    search: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    baseline: str | None = None  # the arm the report compares every other arm with (None: the first)
    # A suite that tunes (bench.protocol): the seeds each arm's chosen setting is trained again on, which took
    # no part in choosing it; how many steps its grid may be extended past an edge where its best lies; how
    # many times the declared step may be halved around its best.
    confirm_seeds: tuple[int, ...] = ()
    tune_extend: int = 3
    tune_refine: int = 1

    # -- parsing -----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> Suite:
        """A suite file; `overrides` (dotted keys, e.g. from --device) apply to every run's base. The
        same content is parsed once per process (a command loads its suite in several places, and a
        large grid takes seconds to validate)."""
        doc = read_toml(path)
        plugins.load_declared(doc, path)
        overrides_json = json.dumps(dict(overrides or {}), default=str)
        return _parsed(str(path), json.dumps(doc, default=str), overrides_json, plugins.loaded())

    @classmethod
    def parse(
        cls, doc: Mapping[str, Any], source: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Suite:
        try:
            return cls._parse(doc, source, overrides or {})
        except ConfigError as e:
            raise e.with_source(source) from None

    @classmethod
    def _parse(cls, doc: Mapping[str, Any], source: str | None, overrides: Mapping[str, Any]) -> Suite:
        if not doc:
            raise ConfigError("", f"the suite is empty: nothing to run (it needs a {' or '.join(SECTIONS[:3])} table)")
        for key in doc:
            if key not in SECTIONS and key != "plugins":  # plugins: loaded by Suite.load, before parsing
                raise ConfigError(key, unknown_key(key, list(SECTIONS), "section"))
        meta = table(doc, "suite")
        given = {"name": Path(source).stem, **meta} if source else dict(meta)
        # the baseline is checked once the arms are known: a wrong one is answered with the arms there are
        fields = SUITE.check({k: v for k, v in given.items() if k != "baseline"}, "suite")
        name, seeds, target, tune = fields["name"], fields["seeds"], fields["target"], fields["tune"]
        confirm = confirming_seeds(fields["confirm_seeds"], seeds) if tune or "confirm_seeds" in meta else []

        base_values = dict(table(doc, "base"))
        if target is not None:
            base_values.setdefault("target", float(target))
        base = RunConfig.build(base_values)
        if overrides:
            base = base.override(overrides, "--set")

        axes = flatten_axes(table(doc, "axes"))
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"axes.{key}", "must be a non-empty list of values")
            # the values themselves, not their labels: 0.001 and 0.0010001 differ, though both read 0.001 at 4 digits
            if any(v in values[:i] for i, v in enumerate(values)):
                raise ConfigError(f"axes.{key}", f"lists a value twice: {values!r}")
            label_digits(f"axes.{key}", values)  # (refuses values no precision tells apart)
            if is_joint(key, values):
                for v in values:
                    if not v:
                        raise ConfigError(f"axes.{key}", "a joint axis's values must each set one or more fields")
            for v in values:  # each value must make a valid run on its own
                try:
                    base.override(expand({key: v}))
                except ConfigError as e:
                    if is_joint(key, values):
                        raise ConfigError(f"axes.{key}.{e.key}", e.message) from None
                    raise ConfigError(
                        f"axes.{e.key}" if e.key.startswith(key.split(".")[0]) else f"axes.{key}", e.message
                    ) from None
        for t in tune:  # an axis, or a parameter set inside an axis's values (optimizer.lr under optimizer)
            if t not in axes and t.split(".")[0] not in axes:
                raise ConfigError(
                    "suite.tune",
                    f"'{t}' is not an axis{closest(t, list(axes))}; axes: {', '.join(axes) or 'none'}",
                )
        search = table(doc, "search")
        suite = cls(
            name,
            fields["description"],
            fields["design"],
            tuple(seeds),
            fields["metric"],
            target,
            tuple(tune),
            fields["max_runs"],
            base,
            axes,
            dict(search),
            source,
            given.get("baseline"),
            tuple(confirm) if tune else (),
            fields["tune_extend"],
            fields["tune_refine"],
        )
        suite.runs()  # every combination must be valid too (e.g. warmup against a shorter budget)
        if suite.baseline is not None:
            suite.check_baseline(suite.baseline, "suite.baseline")
        return suite

    def with_baseline(self, baseline: str, key: str = "--baseline") -> Suite:
        """The suite with another baseline arm (`optbench report --baseline`), checked as the file's key is."""
        self.check_baseline(baseline, key)
        return replace(self, baseline=baseline)

    def check_baseline(self, baseline: Any, key: str) -> None:
        """A baseline must name an arm of the suite: ConfigError under `key`, with the closest arm and the arms."""
        arms = self.arm_labels()
        try:
            SUITE.keys["baseline"].check(baseline, key)
            if not matching_arms(baseline, arms):
                raise ConfigError(key, f"{baseline!r} is no arm of the suite{closest(baseline, arms)}")
        except ConfigError as e:
            shown = ", ".join(f"'{a}'" for a in arms[:8]) + (", ..." if len(arms) > 8 else "")
            raise ConfigError(e.key, f"{e.message}; arms: {shown}") from None

    # -- runs --------------------------------------------------------------------------------------

    @property
    def crossed_axes(self) -> list[str]:
        """Axes crossed with every arm: all of a grid's; in an ablation, the tuned ones (each arm, the base
        included, gets every tuned value, so that each arm can be ranked at its best)."""
        keys = ordered_axes(self.axes)
        return keys if self.design == "grid" else [k for k in keys if k in self.tune]

    def configuration_count(self) -> int:
        """Distinct axis combinations before seeds, counted from the axis lengths (nothing expanded)."""
        crossed = math.prod(len(self.axes[k]) for k in self.crossed_axes)
        if self.design == "grid":
            return crossed
        return (1 + sum(len(v) for k, v in self.axes.items() if k not in self.crossed_axes)) * crossed

    def combination(self, index: int) -> dict[str, Any]:
        """The index-th entry of combinations(), computed without expanding the others."""
        crossed: dict[str, Any] = {}
        for key in reversed(self.crossed_axes):  # the last axis varies fastest, as in itertools.product
            index, i = divmod(index, len(self.axes[key]))
            crossed[key] = self.axes[key][i]
        if self.design == "grid":
            return self._ordered(crossed)
        if index == 0:
            return self._ordered(crossed)
        index -= 1
        for key in ordered_axes(self.axes):
            if key in crossed:
                continue
            if index < len(self.axes[key]):
                return self._ordered({key: self.axes[key][index], **crossed})
            index -= len(self.axes[key])
        raise IndexError(index)

    def combinations(self) -> list[dict[str, Any]]:
        """The axis values of each distinct configuration, before seeds: a grid's every combination; an
        ablation's base, then one axis at a time, each crossed with the tuned axes."""
        keys = self.crossed_axes
        crossed = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(self.axes[k] for k in keys))]
        if self.design == "grid":
            return [self._ordered(c) for c in crossed]
        arms = [{}] + [{k: v} for k in ordered_axes(self.axes) if k not in keys for v in self.axes[k]]
        return [self._ordered({**arm, **c}) for arm in arms for c in crossed]

    def _ordered(self, combo: dict[str, Any]) -> dict[str, Any]:
        """Whole values before fields (ordered_axes), so a field refines the choice it belongs to."""
        return {k: combo[k] for k in ordered_axes(self.axes) if k in combo}

    def runs(self) -> list[Run]:
        """Every run once: configurations (a seeded subset under max_runs) x seeds, deduplicated by hash.
        Computed once per Suite: callers may ask often."""
        cached = self.__dict__.get("_runs")
        if cached is None:
            cached = self._runs()
            object.__setattr__(self, "_runs", cached)
        return list(cached)

    def _runs(self) -> list[Run]:
        count = self.configuration_count()
        keep = None if self.max_runs is None else max(1, self.max_runs // len(self.seeds))
        if keep is not None and keep < count:
            # indices drawn from the counted grid, whole configurations so each keeps all its seeds
            rng, picked = random.Random(f"{self.name}:{self.max_runs}"), set()
            while len(picked) < keep:
                picked.add(rng.randrange(count))
            combos = [self.combination(i) for i in sorted(picked)]
        elif count > (limit := settings.get("OPTBENCH_GRID_LIMIT")):  # larger grids must be sampled
            raise ConfigError(
                "axes",
                f"the {self.design} has {count:,} configurations, over the limit of {limit:,} "
                "(OPTBENCH_GRID_LIMIT); sample it with suite.max_runs",
            )
        else:
            combos = self.combinations()
        configs: list[tuple[RunConfig, dict[str, Any]]] = []
        seen: set[str] = set()
        for combo in combos:
            try:
                cfg = self.base.override(expand(combo))
            except ConfigError as e:
                where = ", ".join(f"{k}={self.axis_label(k, v)}" for k, v in combo.items())
                raise ConfigError(f"axes.{e.key}", f"{e.message} (in the combination {where})") from None
            key = cfg.hash
            if key not in seen:
                seen.add(key)
                configs.append((cfg, combo))
        return [
            Run(cfg.override({"seed": s}), {k: self.axis_label(k, v) for k, v in combo.items()}, combo)
            for cfg, combo in configs
            for s in self.seeds
        ]

    @functools.cached_property
    def _label_styles(self) -> dict[str, tuple[int, bool]]:
        return {key: label_style(f"axes.{key}", values) for key, values in self.axes.items()}

    def axis_label(self, key: str, value: Any) -> str:
        """The label of one of the axis's values, at the precision that tells the axis's values apart."""
        return label(value, *self._label_styles.get(key, (LABEL_DIGITS, False)))

    def arm_label_of(self, run: Run) -> str:
        """The arm a report ranks the run under: without its tuned settings when the suite tunes."""
        return self.untuned_label(run) if self.tune else run.arm_label

    def arm_labels(self) -> list[str]:
        """The suite's arms, in the order of its runs."""
        return list(dict.fromkeys(self.arm_label_of(r) for r in self.runs()))

    def untuned_label(self, run: Run) -> str:
        """The run's arm without the tuned settings: what a report ranks when each arm gets its best tune."""
        parts = self.untuned_parts(run)
        return ", ".join(f"{k}={v}" for k, v in parts.items()) or ("base" if self.design == "ablation" else "all")

    def untuned_parts(self, run: Run, tune: tuple[str, ...] | None = None) -> dict[str, str]:
        """The run's axis labels without the tuned settings (axis -> label), in the axes' order; `tune`: other
        settings to leave out instead (('optimizer.lr',): the arm as a line across its learning rates)."""
        tune = self.tune if tune is None else tune
        parts = {}
        for key in self.axes:
            if key not in run.values or key in tune:
                continue
            value = run.values[key]
            inner = [t.split(".", 1)[1] for t in tune if t.startswith(key + ".") and t not in self.axes]
            if inner and isinstance(value, Mapping):
                value = {k: v for k, v in value.items() if k not in inner}
            parts[key] = self.axis_label(key, value)
        return parts

    def arm_parts(self, run: Run) -> dict[str, str]:
        """The parts of the arm a report ranks the run under (axis -> label)."""
        return self.untuned_parts(run) if self.tune else dict(run.arm)

    def baseline_arms(self) -> list[str]:
        """The arms the suite's `baseline` names (matching_arms), in the order of its runs; [] without one."""
        return matching_arms(self.baseline, self.arm_labels()) if self.baseline else []

    def tuned_label(self, run: Run) -> str:
        """The run's tuned settings alone ('optimizer.lr=0.003'): what the report shows as an arm's best."""
        parts = []
        for key in self.axes:
            if key not in run.values:
                continue
            value = run.values[key]
            if key in self.tune:
                parts.append(f"{key}={self.axis_label(key, value)}")
                continue
            inner = [t.split(".", 1)[1] for t in self.tune if t.startswith(key + ".") and t not in self.axes]
            if inner and isinstance(value, Mapping):
                parts += [f"{key}.{k}={label(value[k])}" for k in inner if k in value]
        return ", ".join(parts)

    @property
    def metric_field(self) -> str:
        return METRICS[self.metric]

    def describe(self) -> dict[str, Any]:
        """What the store keeps of the suite definition."""
        return {
            "name": self.name,
            "description": self.description,
            "design": self.design,
            "seeds": list(self.seeds),
            "metric": self.metric,
            "target": self.target,
            "tune": list(self.tune),
            "confirm_seeds": list(self.confirm_seeds),
            "tune_extend": self.tune_extend,
            "tune_refine": self.tune_refine,
            "axes": {k: [self.axis_label(k, v) for v in vs] for k, vs in self.axes.items()},
            "base": self.base.to_dict(),
        }


@functools.lru_cache(maxsize=8)
def _parsed(source: str, doc_json: str, overrides_json: str, loaded_plugins: str) -> Suite:
    """(loaded_plugins only keys the cache: the same file means other runs once a plugin changed)"""
    return Suite.parse(json.loads(doc_json), source, json.loads(overrides_json))


def confirming_seeds(given: int | list[int], seeds: list[int]) -> list[int]:
    """The seeds a tuned arm's chosen setting is trained again on: `given` fresh ones after the suite's own,
    or the listed ones, which must be none of the suite's."""
    if isinstance(given, int):
        if max(seeds) + given > MAX_SEED:
            raise ConfigError(
                "suite.confirm_seeds",
                f"{given} fresh seeds after seed {max(seeds)} pass 2**63 - 1, the largest seed; list them instead",
            )
        return [max(seeds) + 1 + i for i in range(given)]
    if set(given) & set(seeds):
        raise ConfigError(
            "suite.confirm_seeds", f"must be seeds that took no part in tuning; {given!r} against seeds {seeds!r}"
        )
    return given


def table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table ([{key}]), got {type(value).__name__}")
    return value


def flatten_axes(axes: Mapping[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """TOML's bare dotted keys nest (optimizer.lr = [...] is {optimizer: {lr: [...]}}); axes are flat."""
    out: dict[str, list[Any]] = {}
    for key, value in axes.items():
        name = f"{prefix}{key}"
        items = flatten_axes(value, name + ".") if isinstance(value, Mapping) else {name: value}
        for k, v in items.items():
            if k in out:
                raise ConfigError(f"axes.{k}", "is given twice")
            out[k] = v
    return out


def is_joint(key: str, values: Any) -> bool:
    """A joint axis varies several fields together: a name that is no config field, whose every value is a
    table of fields, e.g. batch = [{ batch_size = 16, grad_accum = 1 }, { batch_size = 8, grad_accum = 2 }]."""
    from bench.config import TOP_KEYS

    return (
        key.split(".")[0] not in TOP_KEYS and isinstance(values, list) and all(isinstance(v, Mapping) for v in values)
    )


def expand(combo: Mapping[str, Any]) -> dict[str, Any]:
    """Axis values -> config fields: a joint axis's value sets each of its fields (whole choices before the
    fields that refine them, as ordered_axes does)."""
    fields: dict[str, Any] = {}
    for key, value in combo.items():
        if is_joint(key, [value]):
            fields.update(value)
        else:
            fields[key] = value
    return {k: fields[k] for k in sorted(fields, key=lambda k: k.count("."))}


def label_parts(label: str) -> dict[str, str]:
    """An arm label's key=value parts ('optimizer=adamw, scale={model.n_embd=32, tokens=600000}' -> two), split
    at the commas between parts, not those inside a value's parentheses, braces or brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(label):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and label.startswith(", ", i):
            parts.append(label[start:i])
            start = i + 2
    parts.append(label[start:])
    out = {}
    for part in parts:
        key, sep, value = part.partition("=")
        out[key] = value if sep else None
    return out


def matching_arms(baseline: str, arms: list[str]) -> list[str]:
    """The arms a baseline names: the arm of that label, else the arms holding every key=value part it gives.
    A part matches its value exactly, or names the entry of a value with parameters (optimizer=adamw matches
    optimizer=adamw(lr=0.003)) where no arm holds it exactly."""
    if baseline in arms:
        return [baseline]
    wanted = label_parts(baseline)
    if any(v is None for v in wanted.values()):
        return []
    parts = {a: label_parts(a) for a in arms}
    exact = [a for a in arms if all(parts[a].get(k) == v for k, v in wanted.items())]
    if exact:
        return exact
    return [a for a in arms if all(str(parts[a].get(k)).startswith(v + "(") for k, v in wanted.items())]


def ordered_axes(axes: Mapping[str, Any]) -> list[str]:
    """Whole values (optimizer) apply before fields (optimizer.lr), so a field refines the choice made."""
    return sorted(axes, key=lambda k: k.count("."))
