"""Short, stable text for axis values and arms ('lion', 'lion(lr=0.0001)', '0.001'): what suites, the store,
results tables and reports call them. Floats get enough significant digits to tell an axis's values apart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bench.registry import ConfigError

LABEL_DIGITS = 4  # significant digits of a float in an axis label, more only where two values need them


def label_digits(key: str, values: list[Any]) -> int:
    """The fewest significant digits (LABEL_DIGITS or more) at which the distinct values get distinct labels."""
    for digits in range(LABEL_DIGITS, 18):  # 17 digits write any float exactly
        labels = [label(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            return digits
    raise ConfigError(key, f"two values read the same: {values!r}")


def label(value: Any, digits: int = LABEL_DIGITS) -> str:
    """A short, stable text for an axis value: 'lion', 'lion(lr=0.0001)', '0.001', '[0.9, 0.95]'. Floats get
    `digits` significant digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if not value:  # a combining axis with nothing enabled (regularization = {})
            return "none"
        name = value.get("name")
        rest = ", ".join(f"{k}={label(v, digits)}" for k, v in value.items() if k != "name")
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
