"""Typed parameters, named entries and registries: the one validation mechanism of optbench.

Every axis (optimizers, schedules, inits, ...), the model presets and the corpora are registries of
entries; every entry declares typed parameters with defaults. A config value for an axis is a
`Choice`: an entry's name plus its fully resolved parameters.

This module imports nothing heavy, so `optbench list` and `--help` stay fast.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bench.errors import ConfigError  # noqa: F401 -- imported from here by every module

# Names users bring from other libraries and papers -> ours (checked only where the ours is allowed).
SYNONYMS = {
    "he_normal": "kaiming_normal", "he_uniform": "kaiming_uniform", "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform", "learning_rate": "lr", "learningrate": "lr", "weightdecay": "weight_decay",
    "wd": "weight_decay", "sgd_momentum": "momentum", "nag": "nesterov", "cosine_annealing": "cosine",
    "warmup_steps": "warmup", "batchsize": "batch_size", "bs": "batch_size", "gradient_accumulation": "grad_accum",
    "num_steps": "steps", "max_steps": "steps", "clipping": "clip", "gradient_clipping": "clip",
}  # fmt: skip


def closest(name: str, allowed: list[str]) -> str:
    """' (did you mean 'x'?)' or '': a known synonym, the same name in other case or spelling
    (RMSProp, Batch-Size), or the closest spelling."""
    folded = {a.lower().replace("-", "_"): a for a in allowed}
    key = name.lower().replace("-", "_")
    match = [folded[key]] if key in folded else []
    if not match and SYNONYMS.get(key) in allowed:
        match = [SYNONYMS[key]]
    if not match:
        close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.5)
        match = [folded[close[0]]] if close else []
    return f" (did you mean '{match[0]}'?)" if match else ""


def unknown(kind: str, name: str, allowed: list[str]) -> str:
    return f"unknown {kind} '{name}'{closest(str(name), allowed)}; allowed: {', '.join(allowed)}"


def unknown_key(key: str, allowed: list[str], kind: str = "key") -> str:
    """'unknown key (did you mean ...); allowed: ...'; an empty key ("" = 1 is valid TOML) is named in the
    message, as ConfigError shows no empty key."""
    named = " ''" if key == "" else ""
    return f"unknown {kind}{named}{closest(key, allowed)}; allowed: {', '.join(allowed)}"


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def is_finite(value: Any) -> bool:
    """A number a float holds: no bool, nan or inf, and no integer beyond float's range (10**400 is valid
    TOML, and float() of it raises OverflowError)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


@dataclass(frozen=True)
class Rule:
    """A check of a value beyond its type and bounds: `says` states it (fit to print in a reference),
    `problem(value)` says what is wrong with a value, or returns None."""

    says: str
    problem: Callable[[Any], str | None]


@dataclass(frozen=True)
class Param:
    """One typed parameter. `kind` is bool, int, float, str, tuple (a fixed-length list of floats) or list (of
    `item`s, each checked as that Param declares)."""

    kind: type
    default: Any
    help: str = ""
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    positive: bool = False  # strictly > 0
    choices: tuple[str, ...] | None = None
    length: int | None = None  # for tuples
    optional: bool = False  # None is allowed
    required: bool = False  # must be given: a string or list may not be empty (a corpus's file path, a suite's
    # seeds), nor a value None
    # floats: False admits inf and -inf (never nan), for a third-party class whose own default is inf
    finite: bool = True
    # A search range for Optuna: ("log", lo, hi), ("float", lo, hi), ("int", lo, hi), a tuple of choices, or
    # ("steps", lo, hi): whole steps from lo to hi as fractions of the run, so the range scales with its length.
    search: tuple | None = None
    item: Param | None = None  # a list's items; its help names one in messages ("seed")
    unique: bool = False  # a list that holds no item twice
    rules: tuple[Rule, ...] = ()  # checked after type and bounds

    def takes(self, value: Any) -> bool:
        """Whether `value` is of this parameter's type, bounds and rules aside (what Either tells forms apart by)."""
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind in (tuple, list):
            return isinstance(value, list | tuple)
        return isinstance(value, int | float if self.kind is float else self.kind)

    def check(self, value: Any, key: str) -> Any:
        """The value converted to the canonical type, or ConfigError naming `key`."""
        value = self._typed(value, key)
        for rule in self.rules:
            problem = None if value is None else rule.problem(value)
            if problem:
                raise ConfigError(key, problem)
        return value

    def _typed(self, value: Any, key: str) -> Any:
        if value is None:
            if self.optional:
                return None
            if self.required:
                raise ConfigError(key, f"is required: {self.help}")
            raise ConfigError(key, f"must be {self.describe()}, got nothing")
        if self.kind is list:
            return self._list(value, key)
        if self.kind is tuple:
            if not isinstance(value, list | tuple) or (self.length and len(value) != self.length):
                raise ConfigError(key, f"must be {self.describe()}, got {value!r}")
            return tuple(self._number(v, float, f"{key}[{i}]") for i, v in enumerate(value))
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(key, f"must be true or false, got {value!r}")
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise ConfigError(key, f"must be {self.describe()}, got {value!r}")
            if self.choices and value not in self.choices:
                raise ConfigError(key, unknown("value", value, list(self.choices)))
            if self.required and not value:
                raise ConfigError(key, f"is required: {self.help or 'a non-empty string'}")
            return value
        return self._number(value, self.kind, key)

    def _list(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list | tuple) or (self.required and not value):
            raise ConfigError(key, f"must be {self.describe()}, got {value!r}")
        items = []
        for i, v in enumerate(value):
            try:
                items.append(self.item.check(v, key) if self.item else v)
            except ConfigError as e:  # the list is the key a user wrote; the message says which item
                raise ConfigError(key, f"{e.message} ({self._noun} {i + 1} of {list(value)!r})") from None
        if self.unique and any(v in items[:i] for i, v in enumerate(items)):
            raise ConfigError(key, f"lists a {self._noun} twice: {list(value)!r}; list each once")
        return items

    @property
    def _noun(self) -> str:
        return (self.item.help if self.item else "") or "value"

    def _number(self, value: Any, kind: type, key: str) -> Any:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is int and isinstance(value, float):
            ok = False
        if not ok:
            raise ConfigError(key, f"must be {self.describe()}, got {value!r}")
        if kind is float and not is_finite(value):
            if self.finite or isinstance(value, int) or value != value:
                allowed = "a finite number" if self.finite else "a number or inf (not nan)"
                raise ConfigError(key, f"must be {allowed}, got {value!r}")
        value = kind(value)
        if self.positive and value <= 0:
            raise ConfigError(key, f"must be > 0, got {value!r}")
        if self.low is not None and value < self.low:
            raise ConfigError(key, f"must be >= {self.low}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ConfigError(key, f"must be <= {self.high}, got {value!r}")
        return value

    def describe(self) -> str:
        if self.kind is list:
            text = "a non-empty list" if self.required else "a list"
            text += f" of {'distinct ' if self.unique else ''}{self._noun}s"
            text += f", each {self.item.describe()}" if self.item else ""
            return text + (" or nothing" if self.optional else "")
        if self.kind is tuple:
            text = f"a list of {self.length} numbers" if self.length else "a list of numbers"
        elif self.choices:
            text = "one of " + ", ".join(self.choices)
        else:
            text = _TYPE_NAMES[self.kind]
        bounds = []
        if self.positive:
            bounds.append("> 0")
        if self.low is not None:
            bounds.append(f">= {_number_text(self.low)}")
        if self.high is not None:
            bounds.append(f"<= {_number_text(self.high)}")
        if bounds:
            text += " " + " and ".join(bounds)
        return text + (" or nothing" if self.optional else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.describe(), "default": _jsonable(self.default)}
        if self.help:
            out["help"] = self.help
        if self.rules:
            out["rules"] = [rule.says for rule in self.rules]
        if self.search is not None:
            out["search"] = _jsonable(self.search)
        return out


@dataclass(frozen=True)
class Either:
    """A value of one of several declared forms, told apart by type (`confirm_seeds = 3` counts fresh seeds,
    `confirm_seeds = [7, 8]` lists them). A form's help, where it has one, names it in messages. Checked,
    described and listed as a Param is."""

    forms: tuple[Param, ...]
    default: Any
    help: str = ""

    def check(self, value: Any, key: str) -> Any:
        for form in self.forms:
            if form.takes(value):
                try:
                    return form.check(value, key)
                except ConfigError as e:
                    raise ConfigError(key, f"{e.message} ({form.help})" if form.help else e.message) from None
        raise ConfigError(key, f"must be {self.describe()}, got {'nothing' if value is None else repr(value)}")

    def describe(self) -> str:
        return " or ".join(f"{f.help} ({f.describe()})" if f.help else f.describe() for f in self.forms)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.describe(), "default": _jsonable(self.default)}
        if self.help:
            out["help"] = self.help
        return out


@dataclass(frozen=True)
class Table:
    """A table of a file whose keys are declared, each a Param or an Either (a suite's [suite], a search
    range): `check` refuses unknown keys and fills in defaults; `to_json` lists the keys as data, as
    `optbench list --json` lists the axes (the reference pages of the docs are made from it)."""

    name: str
    description: str
    keys: Mapping[str, Param | Either]

    def check(self, given: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Every declared key's value (its default where `given` has none), checked; keys are named
        `where.KEY` in messages."""
        for key in given:
            if key not in self.keys:
                raise ConfigError(f"{where}.{key}", unknown_key(key, list(self.keys)))
        return {name: p.check(given.get(name, p.default), f"{where}.{name}") for name, p in self.keys.items()}

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "keys": {name: p.to_json() for name, p in self.keys.items()}}


def _number_text(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"  # an integer bound exactly (a seed's 2**63 - 1)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Entry:
    """A named technique (or preset, or corpus) with typed parameters, an optional builder (its axis's
    contract, bench.axes) and, on axes that ask for one, a `promise`: what the entry says it does, which its
    contract test checks (tests/test_contracts.py)."""

    name: str
    description: str
    params: Mapping[str, Param]
    build: Callable[..., Any] | None = None
    promise: Callable[..., Any] | None = None
    # a check of the parameters together, where each is within its bounds but their combination cannot
    # run: check(params, key) raises ConfigError
    check: Callable[[dict[str, Any], str], None] | None = None

    def resolve(self, given: Mapping[str, Any], key: str) -> dict[str, Any]:
        """Defaults filled in, every value checked; unknown parameters are errors."""
        allowed = list(self.params)
        for name in given:
            if name not in self.params:
                if allowed:
                    msg = f"unknown parameter '{name}' for '{self.name}'{closest(name, allowed)}; allowed: "
                    raise ConfigError(f"{key}.{name}", msg + ", ".join(allowed))
                raise ConfigError(f"{key}.{name}", f"'{self.name}' takes no parameters")
        params = {n: p.check(given.get(n, p.default), f"{key}.{n}") for n, p in self.params.items()}
        if self.check is not None:
            self.check(params, key)
        return params


@dataclass
class Registry:
    """Name -> Entry for one axis. `kind` names it in messages ('optimizer', 'schedule', ...)."""

    kind: str
    description: str
    entries: dict[str, Entry] = field(default_factory=dict)
    # where an entry no registry holds comes from instead (bench.standin, while results are only read)
    missing: ClassVar[Callable[[Registry, str], Entry | None] | None] = None

    def register(
        self,
        name: str,
        description: str,
        *,
        promise: Callable[..., Any] | None = None,
        check: Callable[[dict[str, Any], str], None] | None = None,
        **params: Param,
    ) -> Callable:
        """Decorator registering its function as the entry's builder (the axis's contract, bench.axes)."""

        def decorator(build: Callable | None) -> Callable | None:
            if name in self.entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self.entries[name] = Entry(name, description, params, build, promise, check)
            return build

        return decorator

    def add(self, name: str, description: str, **params: Param) -> None:
        """An entry with parameters and no builder (a model preset)."""
        self.register(name, description, **params)(None)

    def __getitem__(self, name: str) -> Entry:
        return self.get(name, self.kind)

    def get(self, name: str, key: str) -> Entry:
        if not isinstance(name, str):
            raise ConfigError(key, f"must name a {self.kind}, one of {', '.join(self.entries)}; got {name!r}")
        try:
            return self.entries[name]
        except KeyError:
            if Registry.missing is not None and (found := Registry.missing(self, name)) is not None:
                return found
            raise ConfigError(key, unknown(self.kind, name, list(self.entries))) from None

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return list(self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            e.name: {"description": e.description, "params": {n: p.to_json() for n, p in e.params.items()}}
            for e in self
        }


@dataclass(frozen=True)
class Choice:
    """A registry entry chosen for one axis, with its resolved parameters. Hashable and immutable."""

    name: str
    items: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, params: Mapping[str, Any]) -> Choice:
        return cls(name, tuple(params.items()))

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.items)

    def __getitem__(self, key: str) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: _jsonable(v) for k, v in self.items}}
