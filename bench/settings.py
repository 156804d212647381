"""Every OPTBENCH_* environment variable optbench reads, in one table, each read and checked one way.

`get(NAME)` is the variable's value, parsed (its default when unset); a value that is set but not allowed
(blank included) raises ConfigError, one line naming the variable and what it allows. `check_all()` reads every
variable at once: the command line calls it before anything else, so a bad value is exit 2 before any
work starts (spawned workers inherit the environment their parent checked). Variables of this prefix that
optbench does not read (OPTBENCH_TEST_POSTGRES, the CI scripts' OPTBENCH_PG_*) are left alone.

This module imports nothing of optbench's but ConfigError: every layer may ask it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ConfigError


def _number(text: str, low: float, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ValueError from None  # the allowed values say it; Python's own wording adds nothing
    if not (math.isfinite(value) and value >= low):
        raise ValueError
    return value


def seconds(low: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        return _number(text, low, integer=False)

    parse.allowed = f"a finite number of seconds >= {low:g}"  # type: ignore[attr-defined]
    return parse


def whole(low: int, unit: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        return int(_number(text, low, integer=True))

    parse.allowed = f"a whole number{unit} >= {low}"  # type: ignore[attr-defined]
    return parse


def parse_bytes(text: str) -> int:
    """'8G', '512MiB', '1e9' -> bytes (binary units)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        number = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ValueError from None
    if not (math.isfinite(number) and number >= 1):
        raise ValueError
    return int(number)


parse_bytes.allowed = "a size in bytes >= 1, optionally with k, M, G or T (binary), e.g. 8G"  # type: ignore[attr-defined]


def folder(must_exist: bool) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if must_exist and not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        return path

    parse.allowed = "an existing folder" if must_exist else "a folder (created when missing)"  # type: ignore[attr-defined]
    return parse


def calibration(text: str) -> str:
    if text != "off" and Path(text).expanduser().is_dir():
        raise ValueError(f"{text} is a folder")
    return text


calibration.allowed = "off, or the JSON file that caches this machine's calibration"  # type: ignore[attr-defined]

FAULT_MODES = ("kill", "torn", "enospc", "erofs", "raise", "segv")
FAULT_POINTS = (
    "append:locked", "append:checked", "append:written", "doctor:snapshot", "doctor:rewritten", "store:write",
)  # fmt: skip


def fault(text: str) -> str:
    mode, _, n = text.partition(":")
    if mode == "stop":
        point, _, n = n.rpartition(":")
        ok = point in FAULT_POINTS
    else:
        ok = mode in FAULT_MODES
    if not (ok and n.isdigit() and int(n) >= 1):
        raise ValueError
    return text


fault.allowed = (  # type: ignore[attr-defined]
    f"MODE:N with MODE one of {', '.join(FAULT_MODES)}, or stop:POINT:N with POINT one of "
    f"{', '.join(FAULT_POINTS)}; N a whole number >= 1 (the crash tests' fault injection)"
)


def fault_count(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        raise ValueError(f"folder {path.parent} does not exist")
    return path


fault_count.allowed = "a file in an existing folder (the crash tests' count of write boundaries)"  # type: ignore[attr-defined]

_SPEC = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def plugin_specs(text: str) -> list[str]:
    specs = [s for s in text.split(os.pathsep) if s]
    for spec in specs:
        if not (spec.endswith(".py") or "/" in spec or _SPEC.fullmatch(spec)):
            raise ValueError(f"{spec!r} is neither a .py file nor a module name")
    return specs


plugin_specs.allowed = f"plugin files (.py) or module names, separated by {os.pathsep!r}"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any  # the parsed value when unset
    parse: Callable[[str], Any]  # raises ValueError (its message, if any, says what is wrong)
    meaning: str


SETTINGS = {
    s.name: s
    for s in (
        Setting("OPTBENCH_RESULTS_DIR", Path("results"), folder(False), "where the default store and checkpoints go"),
        Setting("OPTBENCH_DATA_DIR", None, folder(True), "where tinyshakespeare.txt is looked up first"),
        Setting("OPTBENCH_CACHE_DIR", None, folder(False), "the cache folder (default ~/.cache/optbench)"),
        Setting("OPTBENCH_CALIBRATION", "", calibration, "the calibration cache file, or off"),
        Setting("OPTBENCH_PLUGINS", [], plugin_specs, "plugins handed to spawned workers"),
        Setting("OPTBENCH_GRID_LIMIT", 100_000, whole(1, " of configurations"), "largest grid expanded whole"),
        Setting("OPTBENCH_MEMORY_LIMIT", None, parse_bytes, "the memory a run may use (default: what is free)"),
        Setting("OPTBENCH_PROGRESS_INTERVAL", 30.0, seconds(0), "seconds between plain progress lines"),
        Setting("OPTBENCH_GRACE_PERIOD", 20, whole(0, " of seconds"), "age of a stale claim without heartbeat"),
        Setting("OPTBENCH_HEARTBEAT_INTERVAL", 5, whole(1, " of seconds"), "seconds between heartbeats"),
        Setting("OPTBENCH_LOCK_GRACE", 10.0, seconds(1), "age at which a plain Optuna client's lock is taken over"),
        Setting("OPTBENCH_DB_RETRY", 300.0, seconds(0), "how long a lost database is waited for"),
        Setting("OPTBENCH_FAULT", None, fault, "fault injection, for the crash tests"),
        Setting("OPTBENCH_FAULT_COUNT", None, fault_count, "write-boundary log, for the crash tests"),
    )
}


def get(name: str) -> Any:
    """The variable's value, parsed; its default when unset. ConfigError when not allowed."""
    setting = SETTINGS[name]
    text = os.environ.get(name)
    if text is None:
        return setting.default
    try:
        if not text.strip():
            raise ValueError("blank: unset it for the default")
        return setting.parse(text.strip())
    except (ValueError, OverflowError) as e:
        why = f" ({e})" if str(e) else ""
        allowed = setting.parse.allowed  # type: ignore[attr-defined]
        raise ConfigError(name, f"must be {allowed} ({setting.meaning}), got {text!r}{why}") from None


def check_all() -> None:
    """Read every variable optbench reads (ConfigError for the first bad one)."""
    for name in SETTINGS:
        get(name)
