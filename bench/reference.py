"""The suite file's declared tables as data: each key of [suite] and of a [search] range with its type,
default, bounds, rules and help, as `optbench list --json` lists the axes. The docs' reference page of
suite files is generated from it.

>>> sorted(tables())
['search', 'suite']
>>> tables()["suite"]["keys"]["design"]["type"]
'one of grid, ablation'
"""

from __future__ import annotations

from typing import Any

from bench.space import RANGE
from bench.suite import SUITE


def tables() -> dict[str, Any]:
    """{table: {"description": ..., "keys": {key: {"type", "default", "help", and "rules" where it has any}}}}."""
    return {table.name: table.to_json() for table in (SUITE, RANGE)}
