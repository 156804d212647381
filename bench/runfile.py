"""Run files and the command line's overrides: a TOML file's `[base]` table (a suite file works too),
`--set KEY=VALUE` items, and the plugin files a run file declares, read into a RunConfig."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import plugins
from bench.config import RunConfig
from bench.devices import check_available
from bench.registry import ConfigError

MAX_TOML_BYTES = 16 * 2**20
# Tables and arrays inside one another; optbench's deepest config is under 10 deep. Deeper input is hostile
# or broken, and would exhaust Python's recursion in whatever reads it next (json, labels, tomllib itself).
MAX_NESTING = 32
TOO_DEEP = f"nested deeper than {MAX_NESTING} levels (a config nests at most {MAX_NESTING})"


def too_deep(value: Any) -> str | None:
    """The dotted key under which `value` nests deeper than MAX_NESTING ('' for the top), else None.
    Iterative: the check itself must not recurse."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, key = stack.pop()
        if depth > MAX_NESTING:
            return key
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1, key) for v in item)
    return None


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a device such as /dev/zero, a pipe
        raise ConfigError("", "not a regular file", str(path))
    if path.is_file() and path.stat().st_size > MAX_TOML_BYTES:
        raise ConfigError("", f"{path.stat().st_size:,} bytes: larger than a config file can be", str(path))
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except RecursionError:
        raise ConfigError("", f"not readable: {TOO_DEEP}", str(path)) from None
    except FileNotFoundError:
        raise ConfigError("", "no such file", str(path)) from None
    except UnicodeDecodeError as e:
        raise ConfigError("", f"not UTF-8 text (byte {e.start}): TOML files are UTF-8", str(path)) from None
    except OSError as e:  # a folder, no permission
        raise ConfigError("", f"cannot read: {e.strerror}", str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"not valid TOML: {e}", str(path)) from None
    key = too_deep(doc)
    if key is not None:
        raise ConfigError(key, TOO_DEEP, str(path))
    return doc


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """['optimizer.lr=3e-4', 'model=tiny'] -> {'optimizer.lr': 0.0003, 'model': 'tiny'}; values are TOML."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(item, "--set takes KEY=VALUE, e.g. --set optimizer.lr=3e-4", "--set")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: a name such as adamw
        except RecursionError:
            raise ConfigError(key, f"its value is {TOO_DEEP}", "--set") from None
        if too_deep(value) is not None:
            raise ConfigError(key, f"its value is {TOO_DEEP}", "--set")
        out[key] = value
    return out


def load_run_config(path: str | None, sets: list[str] | None) -> RunConfig:
    """`optbench train [FILE.toml] [--set ...]`: the file's [base] table, then the overrides."""
    values: dict[str, Any] = {}
    if path:
        doc = read_toml(path)
        plugins.load_declared(doc, path)
        unknown_tables = [k for k in doc if k not in ("suite", "base", "axes", "search", "plugins")]
        if unknown_tables:
            k = unknown_tables[0]
            raise ConfigError(k, "unknown table; a run file holds [base] (and may be a suite file)", path)
        base = doc.get("base", {})
        if not isinstance(base, Mapping):
            raise ConfigError("base", "must be a table", path)
        values.update(base)
    cfg = RunConfig.build(values, path)
    overrides = parse_set(sets)
    cfg = cfg.override(overrides, "--set") if overrides else cfg
    try:
        check_available(cfg.device)
    except ConfigError as e:
        raise e.with_source("--set" if "device" in overrides else path) from None
    return cfg
