"""Generates the reference pages at build time (mkdocs-gen-files), so they cannot drift from the code:
reference/axes.md from `optbench list --json` (every entry of every axis, its parameters and defaults) with the
run file's own fields and each axis's default from the parser (bench.config, bench.axes), and
reference/suite-file.md from bench.reference.tables() (every key of [suite] and of a [search] range), and the
layers of architecture.md from pyproject.toml's import-linter contract with each module's docstring."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import mkdocs_gen_files

# the checkout beside mkdocs.yml, before any installed copy of optbench, here and in `optbench list`
ROOT = Path(mkdocs_gen_files.config["config_file_path"]).resolve().parent
sys.path.insert(0, str(ROOT))

from bench.axes import AXES  # noqa: E402
from bench.config import NOT_HASHED, SCALARS  # noqa: E402
from bench.reference import tables  # noqa: E402


def cell(text: Any) -> str:
    """Text for one cell of a Markdown table: newlines folded; outside code spans, what Markdown would read as
    markup is escaped (inside one, Python-Markdown splits no cell at a pipe and shows every character)."""
    parts = " ".join(str(text).split("\n")).split("`")
    return "`".join(part if i % 2 else prose(part) for i, part in enumerate(parts))


def prose(text: str) -> str:
    """Plain text as Markdown that shows it as written: `reports/<name>.html` is no HTML tag, `*` no emphasis."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\*_|\[\]])", r"\\\1", text)


def search_text(search: Any) -> str:
    """A parameter's default search range, as a registry declares it: (kind, low, high)."""
    kind, low, high = search
    if kind == "steps":  # fractions of the run's length (bench.space)
        return f"Searched from {low:g} to {high:g} of the run's steps, as whole steps, by default."
    scale = {"log": "on a log scale", "int": "as whole numbers"}.get(kind, "uniformly")
    return f"Searched from {low:g} to {high:g} {scale} by default."


def code(value: Any) -> str:
    """A value as TOML-like inline code (JSON's spelling is TOML's for these values), or a dash for none."""
    if value is None:
        return "&mdash;"
    return "`" + json.dumps(value) + "`"  # in a code span a pipe splits no cell and nothing is markup


def params_table(keys: dict[str, dict[str, Any]], first: str = "parameter") -> list[str]:
    lines = [f"| {first} | default | allowed | what it sets |", "|---|---|---|---|"]
    for name, p in keys.items():
        help_text = p.get("help", "")
        if p.get("rules"):
            help_text += " " + " ".join(p["rules"])
        if p.get("search") is not None:
            help_text = help_text.rstrip(".") + ". " + search_text(p["search"])
        lines.append(f"| `{name}` | {code(p['default'])} | {cell(p['type'])} | {cell(help_text.strip())} |")
    return lines


def axes_page() -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    listing = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench", "list", "--json"], check=True, capture_output=True, text=True, env=env
        ).stdout
    )
    out = [
        "# Axis reference",
        "",
        "Generated when the site is built from `optbench list --json` and the run file's parser",
        "(`bench.config`, `bench.axes`): it lists what this version of optbench accepts, nothing more.",
        "`optbench list` prints the same on the command line, with any plugins' entries",
        "(`optbench list --plugin FILE`). How runs use these fields: [Runs](../runs.md).",
        "",
        "## Run fields",
        "",
        "The fields of a `[base]` table that are no axis. "
        + ", ".join(f"`{k}`" for k in NOT_HASHED)
        + " are left out of a run's hash: they change no number a CPU run computes.",
        "",
        *params_table({name: p.to_json() for name, p in SCALARS.items()}, first="field"),
        "",
        "## Axes",
        "",
        "| axis | default | chooses |",
        "|---|---|---|",
    ]
    for name, axis in AXES.items():
        chooses = "several entries that combine (a table of name -> parameters)" if axis.combine else "one entry"
        if axis.searched:
            chooses += "; `[search]` may choose among them"
        out.append(f"| [`{name}`](#{name}) | {code(axis.default)} | {chooses} |")
    for axis_name, entries in listing.items():
        out += ["", f"## {axis_name}", ""]
        if axis_name in AXES:
            out += [cell(AXES[axis_name].registry.description), ""]
        for entry_name, entry in entries.items():
            out += [f"### `{axis_name}` = `{entry_name}`", "", cell(entry["description"]), ""]
            if entry["params"]:
                out += [*params_table(entry["params"]), ""]
            else:
                out += ["No parameters.", ""]
    return "\n".join(out) + "\n"


def suite_page() -> str:
    out = [
        "# Suite file reference",
        "",
        "Generated when the site is built from `bench.reference.tables()`: the declared tables a suite file's",
        "keys are checked against (`SUITE` in `bench/suite.py`, `RANGE` in `bench/space.py`). A key not listed",
        "here, or a value outside what a row allows, is bad input: exit 2, one line naming the file and the key.",
        "How suites use them: [Suites](../suites.md) and [Search](../search.md).",
    ]
    headings = {"suite": "The `[suite]` table", "search": "A `[search]` range"}
    for name, table in tables().items():
        out += ["", f"## {headings.get(name, name)}", "", cell(table["description"]), ""]
        out += params_table(table["keys"], first="key")
    return "\n".join(out) + "\n"


def first_sentence(module: str) -> str:
    """The first sentence of a module's docstring, read from its source without importing it."""
    path = ROOT.joinpath(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(source.read_text())) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def layers_section() -> str:
    """The layers contract of pyproject.toml as a table, highest floor first, each module with what it is."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = project["tool"]["importlinter"]["contracts"]
    layered = next(c for c in contracts if c["type"] == "layers")
    out = [
        "Generated from pyproject.toml's import-linter contract \"" + layered["name"] + '", highest floor first. A',
        "module imports only from floors below its own (an import inside a function included); modules on one",
        "floor do not import each other. `lint-imports` checks it in CI (`tests/test_layers.py`).",
        "",
        "| floor | module | what it is |",
        "|---|---|---|",
    ]
    for floor, layer in enumerate(layered["layers"], start=1):
        for module in (m.strip() for m in layer.split("|")):
            what = first_sentence(module) if module != "bench.__main__" else "`python -m bench`: the command line."
            out.append(f"| {floor} | `{module}` | {cell(what)} |")
    for contract in contracts:
        if contract["type"] == "forbidden":
            out += [
                "",
                f"**{contract['name']}**: "
                + ", ".join(f"`{m}`" for m in contract["source_modules"])
                + " never import "
                + ", ".join(f"`{m}`" for m in contract["forbidden_modules"])
                + ".",
            ]
    return "\n".join(out) + "\n"


MARKER = "<!-- layers: generated by docs/gen_reference.py from pyproject.toml -->"
architecture = (ROOT / "docs" / "architecture.md").read_text()
if MARKER not in architecture:
    raise SystemExit(f"docs/architecture.md lacks the line {MARKER!r} where the layers go")
with mkdocs_gen_files.open("architecture.md", "w") as f:
    f.write(architecture.replace(MARKER, layers_section()))
with mkdocs_gen_files.open("reference/axes.md", "w") as f:
    f.write(axes_page())
with mkdocs_gen_files.open("reference/suite-file.md", "w") as f:
    f.write(suite_page())
