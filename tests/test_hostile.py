"""Hostile input is bad input: nesting thousands deep in a suite file or a --set value, labels that a
spreadsheet would evaluate or that matplotlib would parse as mathtext."""

import csv
import io
import json

import pytest

from bench.cli import main
from bench.labels import FORMULA_STARTS
from bench.suite import Suite
from tests.fabricate import fabricate_runs
from tests.suite_files import write_suite

DEPTHS = [33, 1000, 5000, 100_000]
SUITE_COMMANDS = [["run"], ["results"], ["report"], ["search"], ["train"], ["calibrate"], ["sample"]]


def nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_suite_file_nested_deep_is_one_line_exit_2_for_every_command(tmp_path, monkeypatch, capsys, depth):
    monkeypatch.chdir(tmp_path)
    path = write_suite(tmp_path, "deep", f"optimizer = {nested(depth)}")
    for command in SUITE_COMMANDS:
        assert main([*command, str(path)]) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "nested deeper than 32 levels" in err, (command, err)
    assert [p.name for p in tmp_path.iterdir()] == ["deep.toml"]  # nothing written


@pytest.mark.parametrize("depth", DEPTHS[:3])
@pytest.mark.parametrize("command", [["train"], ["run", "SUITE"], ["sample"], ["search", "SUITE"]])
def test_a_set_value_nested_deep_is_one_line_exit_2(tmp_path, monkeypatch, capsys, depth, command):
    monkeypatch.chdir(tmp_path)
    path = write_suite(tmp_path, "flat", 'optimizer = ["adamw"]')
    argv = [str(path) if a == "SUITE" else a for a in command]
    assert main([*argv, "--set", f"optimizer.lr={nested(depth)}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set" in err and "optimizer.lr" in err and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["flat.toml"]


# Axis names a suite may choose freely (a joint axis is named by its author), each starting as a formula.
FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


def test_results_as_csv_neutralise_every_cell_a_spreadsheet_would_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for i, formula in enumerate(FORMULAS):  # the formula names the suite's first axis: every arm starts with it
        axes = f'{json.dumps(formula)} = [{{ batch_size = 4 }}, {{ batch_size = 8 }}]\noptimizer = ["adamw"]'
        path = write_suite(tmp_path, f"formulas{i}", axes, seeds="[0]")
        fabricate_runs(Suite.load(path), None, lambda i: "complete")
        assert main(["results", str(path), "--format", "json"]) == 0
        arms = [row["arm"] for row in json.loads(capsys.readouterr().out)]
        assert len(arms) == 2 and all(a.startswith(formula) for a in arms)
        assert main(["results", str(path), "--format", "csv"]) == 0
        table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
        cells = [cell for row in table for cell in row]
        for cell in cells:
            if cell.startswith(FORMULA_STARTS):
                float(cell)  # only a number may start with - or +
        assert all("'" + arm in cells for arm in arms)  # neutralised, not dropped


def test_a_label_that_reads_as_mathtext_is_drawn_as_written(tmp_path, monkeypatch):
    from bench.report import build_report

    monkeypatch.chdir(tmp_path)
    axes = '"$\\\\nosuchcmd$" = [{ batch_size = 4 }, { batch_size = 8 }]\noptimizer = ["adamw", "sgd"]'
    path = write_suite(tmp_path, "mathtext", axes, seeds="[0, 1, 2]")
    suite = Suite.load(path)
    assert "$\\nosuchcmd$" in suite.axes
    fabricate_runs(suite, None, lambda i: "complete")
    report = build_report(suite, None, sample=False)
    assert "$\\nosuchcmd$" in report.read_text()


def test_the_suite_description_is_stored_once_not_at_every_run(tmp_path, monkeypatch):
    """A large description once grew the journal by its size at every `optbench run` of a finished suite."""
    monkeypatch.chdir(tmp_path)
    description = "why " * 50_000  # 200 kB
    path = write_suite(tmp_path, "desc", 'optimizer = ["adamw"]', seeds="[0]", extra=f'description = "{description}"')
    journal = tmp_path / "results" / "optbench.journal"
    sizes = []
    for _ in range(3):
        assert main(["run", str(path), "--workers", "1", "--quiet", "--no-report"]) == 0
        sizes.append(journal.stat().st_size)
    assert journal.read_text().count(description) == 1
    # a rerun appends only its processes' study openings (~120 bytes each), never the description
    assert sizes[1] - sizes[0] < 1000 and sizes[2] - sizes[1] < 1000
