"""RunConfig: one typed, validated, hashable description of a training run.

A config is built from plain data (a TOML `[base]` table, `--set` overrides, suite axes) by applying
values on top of the defaults, then validating everything once. Axes that choose a registry entry
(model, data, optimizer, schedule, init, clip) follow one rule: a value naming the entry already
chosen updates its parameters; a value naming another entry starts from that entry's defaults.

>>> cfg = RunConfig.build({"model": "tiny", "optimizer": {"name": "lion", "lr": 3e-4}})
>>> cfg.optimizer.name, cfg.optimizer["lr"], cfg.optimizer["betas"]
('lion', 0.0003, (0.9, 0.99))
>>> cfg.override({"optimizer.lr": 1e-4}).optimizer["lr"]
0.0001
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench.axes import AXES, CHOICE_AXES
from bench.devices import resolve_auto
from bench.registry import Choice, ConfigError, Param, Registry, closest, unknown_key
from bench.techniques.class_path import CLASS_PATH, class_path_entry
from bench.techniques.corpora import CORPORA

MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer

SCALARS: dict[str, Param] = {
    "steps": Param(int, 1000, "optimizer steps (ignored when tokens is set)", low=1),
    "tokens": Param(int, None, "training tokens; when set, steps = tokens / tokens per step", low=1, optional=True),
    "batch_size": Param(int, 12, "sequences per micro-batch", low=1, search=("int", 4, 64)),
    "grad_accum": Param(int, 1, "micro-batches per optimizer step", low=1),
    "eval_interval": Param(int, 250, "steps between validation evaluations", low=1),
    "eval_batches": Param(int, 20, "fixed validation batches per evaluation", low=1),
    "eval_batch_size": Param(int, 12, "sequences per validation batch (the same whatever batch_size)", low=1),
    "seed": Param(int, 0, "seed of the weights and dropout", low=0, high=MAX_SEED),
    "data_seed": Param(int, None, "seed of the batch order (default: seed)", low=0, high=MAX_SEED, optional=True),
    "target": Param(float, None, "validation loss whose time and tokens to reach are recorded", optional=True),
    "divergence_factor": Param(float, 3.0, "a train loss above this times the first one is divergence", low=1.0),
    "device": Param(str, "cpu", "cpu, cuda, cuda:N or auto"),
    "autocast": Param(str, "none", "mixed precision", choices=("none", "bf16")),
    "threads": Param(int, None, "torch threads (default: torch's)", low=1, optional=True),
    "deterministic": Param(bool, False, "deterministic kernels (torch.use_deterministic_algorithms); slower on CUDA"),
}

# Fields that do not change what a run computes, left out of its identity (deterministic kernels change
# only the rounding of a GPU run, as threads do on the CPU).
NOT_HASHED = ("threads", "deterministic")

DEFAULTS: dict[str, Any] = {name: axis.default for name, axis in AXES.items()}

TOP_KEYS = [*AXES, *SCALARS]


class RunConfigFields:
    """RunConfig's behaviour. Its fields are made from the axis table and SCALARS (below): one Choice per
    axis that chooses one entry (model, data, optimizer, ...), a tuple of Choices per axis that combines
    several (regularization), then each scalar."""

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, source: str | None = None) -> RunConfig:
        """Defaults, then `values` (nested or dotted keys) on top, validated."""
        raw = apply_values(canonical_defaults(), values or {}, source)
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str | None = None) -> RunConfig:
        """Validate a complete nested dict (as `to_dict` returns)."""
        try:
            return cls._validate(raw)
        except ConfigError as e:
            raise e.with_source(source) from None

    @classmethod
    def _validate(cls, raw: Mapping[str, Any]) -> RunConfig:
        for key in raw:
            if key not in TOP_KEYS:
                raise ConfigError(key, unknown_key(key, TOP_KEYS))
        values: dict[str, Any] = {}
        for key, axis in AXES.items():
            value = raw.get(key, axis.default)
            values[key] = (
                resolve_combination(axis, value) if axis.combine else resolve_choice(axis.registry, value, key)
            )
        for key, param in SCALARS.items():
            values[key] = param.check(raw.get(key, param.default), key)
        values["device"] = resolve_auto(values["device"])  # before hashing: a CPU run and a GPU run differ
        cfg = RunConfig(**values)
        cfg._check_consistency()
        return cfg

    def _check_consistency(self) -> None:
        m = self.model
        if m["n_embd"] % m["n_head"]:
            raise ConfigError("model.n_head", f"must divide n_embd ({m['n_embd']}), got {m['n_head']}")
        if m["positions"] == "rotary" and (m["n_embd"] // m["n_head"]) % 2:
            raise ConfigError("model.positions", "rotary needs an even head width (n_embd / n_head)")
        if self.tokens is not None and self.tokens < self.tokens_per_step:
            raise ConfigError(
                "tokens", f"must cover at least one step ({self.tokens_per_step} tokens), got {self.tokens}"
            )
        # (before warmup: a budget under one step would otherwise be reported as a too-long warmup)
        if self.schedule["warmup"] >= self.total_steps:
            raise ConfigError(
                "schedule.warmup",
                f"must be shorter than the run ({self.total_steps} steps), got {self.schedule['warmup']}",
            )
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise ConfigError("device", f"must be cpu, cuda, cuda:N or auto, got {self.device!r}")

    def override(self, values: Mapping[str, Any], source: str | None = None) -> RunConfig:
        """A copy with `values` (nested or dotted keys) applied, validated."""
        return RunConfig.from_dict(apply_values(self.to_dict(), values, source), source)

    # -- derived -----------------------------------------------------------------------------------

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.model["block_size"]

    @property
    def total_steps(self) -> int:
        return self.tokens // self.tokens_per_step if self.tokens is not None else self.steps

    @property
    def batch_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def enabled(self, axis: str, name: str) -> Choice | None:
        """The entry `name` of a combining axis (e.g. a regularizer) with its parameters, if the run enables it."""
        return next((c for c in getattr(self, axis) if c.name == name), None)

    # -- serialization -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Choice):
                value = value.to_dict()
            elif f.name in AXES:  # a combining axis: {name: parameters}
                value = {c.name: {k: v for k, v in c.to_dict().items() if k != "name"} for c in value}
            out[f.name] = value
        return out

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values (lists as JSON text), one column each in results tables."""
        return flatten(self.to_dict())

    @property
    def hash(self) -> str:
        """Content hash of everything that changes what the run computes, seed included."""
        d = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        for name, axis in AXES.items():
            if not axis.hashed_at_default and d[name] == default_dicts()[name]:
                del d[name]
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


RunConfig = dataclasses.make_dataclass(
    "RunConfig",
    [(name, tuple[Choice, ...] if axis.combine else Choice) for name, axis in AXES.items()]
    + [(name, Any) for name in SCALARS],
    bases=(RunConfigFields,),
    frozen=True,
)
RunConfig.__module__ = __name__  # pickled by reference (spawned workers), documented as bench.config.RunConfig
RunConfig.__doc__ = RunConfigFields.__doc__


# -------------------------------------------------------------------------------------------------
# Applying values


@functools.cache
def default_dicts() -> dict[str, Any]:
    """Each field's default, resolved (do not mutate: shared)."""
    return canonical_defaults()


def canonical_defaults() -> dict[str, Any]:
    return RunConfig.from_dict({}).to_dict()


def apply_values(base: dict[str, Any], values: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """A copy of `base` with each (possibly dotted) key of `values` applied in order."""
    out = copy.deepcopy(base)
    try:
        for key, value in values.items():
            apply_value(out, key, value)
    except ConfigError as e:
        raise e.with_source(source) from None
    return out


def apply_value(d: dict[str, Any], key: str, value: Any) -> None:
    path = key.split(".")
    head = path[0]
    if head in CHOICE_AXES:  # one entry, chosen
        if len(path) == 1:
            d[head] = merge_choice(d.get(head), value, head)
        elif len(path) == 2 and path[1] in ("name", "class_path"):
            d[head] = merge_choice(d.get(head), {path[1]: value}, head)
        elif len(path) == 2:
            current = merge_choice(d.get(head), {}, head)
            current[path[1]] = value
            d[head] = current
        else:
            raise ConfigError(key, f"'{head}' parameters are one level deep: '{head}.PARAM'")
        return
    if head in AXES:  # a combining axis: several entries, each on or off with its parameters
        current = normalize_combination(d.get(head, {}), head)
        if len(path) == 1:
            d[head] = normalize_combination(value, key)
        elif len(path) == 2:
            if value is False:
                current.pop(path[1], None)
            elif value is True:
                current.setdefault(path[1], {})
            else:
                if not isinstance(value, Mapping):
                    kind = AXES[head].registry.kind
                    raise ConfigError(key, f"must be a table of the {kind}'s parameters, true or false")
                current[path[1]] = {**current.get(path[1], {}), **value}
            d[head] = current
        elif len(path) == 3:
            current.setdefault(path[1], {})[path[2]] = value
            d[head] = current
        else:
            raise ConfigError(key, f"use '{head}.NAME' or '{head}.NAME.PARAM'")
        return
    if len(path) > 1:
        raise ConfigError(
            key, f"'{head}' has no fields" if head in SCALARS else f"unknown key{closest(head, TOP_KEYS)}"
        )
    if isinstance(value, Mapping) and head in SCALARS:
        raise ConfigError(key, f"must be {SCALARS[head].describe()}, got a table")
    d[head] = value


def merge_choice(current: Any, value: Any, key: str) -> dict[str, Any]:
    """The registry-choice rule: the same name updates its parameters, another name starts afresh."""
    current = as_choice_dict(current, key) if current is not None else {}
    new = as_choice_dict(value, key)
    if key == "optimizer" and "class_path" in new:  # any torch optimizer by import path
        new.setdefault("name", CLASS_PATH)
    name = new.get("name", current.get("name"))
    if name is None:
        raise ConfigError(f"{key}.name", "is missing")
    same = name == current.get("name") and new.get("class_path", current.get("class_path")) == current.get("class_path")
    base = current if same else {}
    return {**base, **new, "name": name}


def as_choice_dict(value: Any, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        if key == "data" and value not in CORPORA.names() and Path(value).expanduser().is_file():
            return {"name": "text", "path": value}  # `--set data=my.txt`: an existing file is a text corpus
        return {"name": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(key, f"must be a name or a table with 'name' and parameters, got {value!r}")


def resolve_choice(registry: Registry, value: Any, key: str) -> Choice:
    d = as_choice_dict(value, key)
    if "name" not in d:
        raise ConfigError(f"{key}.name", f"is missing; allowed: {', '.join(registry.names())}")
    if key == "optimizer" and "class_path" in d:
        d.setdefault("name", CLASS_PATH)
    if key == "optimizer" and d.get("name") == CLASS_PATH:
        entry = class_path_entry(d.get("class_path"), key, d)
        d.pop("version", None)  # recomputed: the identity is the code installed now
    else:
        entry = registry.get(d["name"], f"{key}.name" if isinstance(value, Mapping) else key)
        d.pop("plugin", None)  # a plugin entry's provenance is recomputed from the code loaded now
    params = entry.resolve({k: v for k, v in d.items() if k != "name"}, key)
    return Choice.of(entry.name, params)


def normalize_combination(value: Any, key: str) -> dict[str, dict[str, Any]]:
    """A combining axis's value: 'ema', ['ema', 'dropout'], {ema = {decay = 0.9}} or 'none' -> {name: params}."""
    if value in ("none", None):
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        out: dict[str, dict[str, Any]] = {}
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(key, f"a list of entries holds names, got {item!r}")
            out[item] = {}
        return out
    if isinstance(value, Mapping):
        out = {}
        for name, params in value.items():
            if params is True or params == {}:
                out[name] = {}
            elif params is False:
                continue
            elif isinstance(params, Mapping):
                out[name] = dict(params)
            else:
                raise ConfigError(f"{key}.{name}", f"must be a table of parameters, true or false, got {params!r}")
        return out
    raise ConfigError(key, f"must be a name, a list of names or a table of name -> parameters, got {value!r}")


def resolve_combination(axis: Any, value: Any) -> tuple[Choice, ...]:
    """The enabled entries of a combining axis, in name order (the order their hooks run in)."""
    enabled = normalize_combination(value, axis.name)
    choices = []
    for name in sorted(enabled):
        key = f"{axis.name}.{name}"
        entry = axis.registry.get(name, key)
        params = {k: v for k, v in enabled[name].items() if k != "plugin"}  # recomputed from the code loaded now
        choices.append(Choice.of(name, entry.resolve(params, key)))
    return tuple(choices)


def flatten(d: Mapping[str, Any], prefix: str = "", lists: str = "json") -> dict[str, Any]:
    """Nested keys dotted: {'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; an empty table leaves no key.
    Lists become JSON text (`lists="json"`, for Optuna's parameters) or lists (`lists="list"`)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + ".", lists))
        elif isinstance(v, Mapping):
            continue
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(list(v)) if lists == "json" else list(v)
        else:
            out[key] = v
    return out


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA (named, so this module never imports pandas)."""
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


def nested(row: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A results row's table under `prefix` (its `env`, say): the dotted columns gathered, or the table
    itself where the row holds one."""
    table = row.get(prefix)
    return dict(table) if isinstance(table, Mapping) else unflatten(row, prefix)


def unflatten(flat: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The nested table of the dotted keys under `prefix` ('env.precision.autocast' -> {'precision':
    {'autocast': ...}}), leaving out missing values (None, NaN), as a results row holds them."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if not key.startswith(prefix + ".") or is_missing(value):
            continue
        *parents, leaf = key[len(prefix) + 1 :].split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# -------------------------------------------------------------------------------------------------
# Files and the command line
