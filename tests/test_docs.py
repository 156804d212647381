"""The documentation site builds with `mkdocs build --strict` and no warning; its reference pages are made from
the code (every axis entry `optbench list --json` gives, every declared suite key, every layer of the
import-linter contract); the README stays a front door that shows the two fresh-machine commands, and its
links lead to files that exist."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.reference import tables

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build(site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of this checkout into `site`, from another working folder (nothing may depend
    on where it runs); the deprecation banners some plugins print are turned off so warnings stand out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        capture_output=True, text=True, cwd=site.parent, env=env, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("docs") / "site"
    done = build(site)
    log = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, log[-4000:]
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)
    return site


def text(page: Path) -> str:
    """A built page's text, tags dropped and entities of the generated tables read back."""
    html = re.sub(r"<[^>]+>", "", page.read_text())
    return " ".join(html.split()).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")


def plain(markdown: str) -> str:
    """Text as a page shows it: code spans' backticks gone, spaces folded."""
    return " ".join(markdown.replace("`", "").split())


def test_the_site_builds_strict_and_has_every_nav_page(site):
    config = (ROOT / "mkdocs.yml").read_text()
    pages = re.findall(r":\s+([\w/-]+\.md)\s*$", config, re.MULTILINE)
    assert len(pages) >= 15
    for page in pages:
        assert (site / page.replace(".md", ".html")).is_file(), page


def test_no_page_reads_a_wrapped_line_as_markup(site):
    """A hard-wrapped line that starts with `>` becomes a quotation: no page quotes anything, and each has one
    title."""
    for page in site.rglob("*.html"):
        if page.name in ("404.html", "optimizers.html", "search_nanogpt.html"):  # not pages of the site's own
            continue
        html = page.read_text()
        assert "<blockquote" not in html, page.name
        assert html.count("<h1") == 1, page.name


def test_the_axis_reference_lists_every_entry_optbench_lists(site):
    listing = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench", "list", "--json"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    )
    page = text(site / "reference" / "axes.html")
    for axis, entries in listing.items():
        for name, entry in entries.items():
            assert f"{axis} = {name}" in page, (axis, name)
            assert plain(entry["description"]) in page, (axis, name)
            for param, declared in entry["params"].items():
                assert param in page and plain(declared.get("help", "")) in page, (axis, name, param)


def test_the_suite_file_reference_lists_every_declared_key(site):
    page = text(site / "reference" / "suite-file.html")
    for table in tables().values():
        for key, declared in table["keys"].items():
            assert key in page and plain(declared["type"]) in page, key
            assert plain(declared.get("help", "")) in page, key  # markup-like text (<name>) shown as written


def test_the_architecture_page_lists_every_layer_of_the_contract(site):
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    page = text(site / "architecture.html")
    assert "<!-- layers" not in page
    for layer in layers:
        for module in layer.split("|"):
            assert module.strip() in page, module


def test_the_performance_log_holds_the_benchmarks_readme(site):
    page = text(site / "performance.html")
    figures = (ROOT / "benchmarks" / "README.md").read_text()
    dated = re.findall(r"^### (\d{4}-\d{2}-\d{2}[^\n]*)$", figures, re.MULTILINE)
    assert dated, "benchmarks/README.md has no dated section"
    for heading in dated:
        assert re.sub(r"[`*]", "", heading).strip() in page, heading


def test_the_readme_is_a_front_door_showing_the_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    commands = [line.strip() for block in blocks for line in block.splitlines()]
    for command in ("bash .ci/quick.sh", "bash .ci/test.sh"):
        assert command in commands, command
        assert (ROOT / command.split()[1]).is_file(), command
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), target
