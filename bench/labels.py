"""Short, stable text for axis values and arms ('lion', 'lion(lr=0.0001)', '0.001', 'Lamb'): what suites, the
store, results tables and reports call them. Floats get enough significant digits to tell an axis's values
apart; an optimizer by import path reads by its class name, or by its path where two classes share a name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bench.registry import ConfigError

CLASS_PATH = "class_path"  # the key of an optimizer's import path (bench.techniques.class_path)

LABEL_DIGITS = 4  # significant digits of a float in an axis label, more only where two values need them


def label_digits(key: str, values: list[Any]) -> int:
    """The fewest significant digits (LABEL_DIGITS or more) at which the distinct values get distinct labels."""
    return label_style(key, values)[0]


def label_style(key: str, values: list[Any]) -> tuple[int, bool]:
    """(significant digits, whether optimizers by import path read by their path): the fewest digits
    (LABEL_DIGITS or more) at which the distinct values get distinct labels; paths where two classes on the
    axis share a name."""
    classes = {v[CLASS_PATH] for v in values if isinstance(v, Mapping) and isinstance(v.get(CLASS_PATH), str)}
    paths = len({c.rpartition(".")[2] for c in classes}) < len(classes)  # two classes of one name
    for digits in range(LABEL_DIGITS, 18):  # 17 digits write any float exactly
        labels = [label(v, digits, paths) for v in values]
        if len(set(labels)) == len(labels):
            return digits, paths
    raise ConfigError(key, f"two values read the same: {values!r}")


def label(value: Any, digits: int = LABEL_DIGITS, paths: bool = False) -> str:
    """A short, stable text for an axis value: 'lion', 'lion(lr=0.0001)', '0.001', '[0.9, 0.95]', and for
    an optimizer by import path its class name, 'Lamb(lr=0.001)' (with `paths`, its import path). Floats get
    `digits` significant digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if not value:  # a combining axis with nothing enabled (regularization = {})
            return "none"
        name = value.get("name")
        skip = {"name"}
        if isinstance(value.get(CLASS_PATH), str) and name in (None, CLASS_PATH):
            path = value[CLASS_PATH]
            name, skip = (path if paths else path.rpartition(".")[2]), {"name", CLASS_PATH, "version"}
        rest = ", ".join(f"{k}={label(v, digits)}" for k, v in value.items() if k not in skip)
        if name is None:
            return "{" + rest + "}"
        return f"{name}({rest})" if rest else str(name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


# A spreadsheet evaluates a cell that starts with one of these (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: Any) -> Any:
    """Text a spreadsheet shows as written: a string starting like a formula gets a leading ' (OWASP's
    rule); anything else is returned as it is (numbers stay numbers)."""
    return "'" + text if isinstance(text, str) and text.startswith(FORMULA_STARTS) else text


def choice_name(choice: Mapping[str, Any], paths: bool = False) -> str:
    """What tables call a chosen entry (a config's optimizer, say): its name, or for an optimizer by import
    path its class name (with `paths`, the path)."""
    name, path = choice.get("name"), choice.get(CLASS_PATH)
    if name in (None, CLASS_PATH) and isinstance(path, str):
        return path if paths else path.rpartition(".")[2]
    return str(name)
