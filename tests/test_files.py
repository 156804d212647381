"""bench.files: files written whole (a reader never sees half of one), temporary files of killed writers
cleaned, and output paths refused before any work when they cannot be written."""

import os
import subprocess
import sys

import pytest

from bench.files import atomic_path, check_output_path
from bench.registry import ConfigError


def test_temporary_files_of_killed_writers_are_cleaned(tmp_path):
    target = tmp_path / "r.html"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".r.html.{dead.stdout.strip()}.part"
    live = tmp_path / f".r.html.{os.getppid()}.part"
    stale.write_text("half")
    live.write_text("in progress")
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and not stale.exists() and live.exists()


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "deep" / "r.html"
    with atomic_path(target) as tmp:
        tmp.write_text("first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the second")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "first" and [p.name for p in target.parent.iterdir()] == ["r.html"]


@pytest.mark.parametrize(
    ("make", "text"),
    [(lambda d: d, "is a folder"), (lambda d: (d / "f").touch() or d / "f" / "out.html", "is not a folder"),
     (lambda d: d / ("x" * 250), "file name too long")],
)  # fmt: skip
def test_an_output_path_that_cannot_be_written_is_refused_naming_the_flag(tmp_path, make, text):
    with pytest.raises(ConfigError) as e:
        check_output_path(make(tmp_path), "--out")
    assert e.value.key == "--out" and text in e.value.message
    check_output_path(tmp_path / "new" / "folders" / "out.html", "--out")  # folders atomic_path would make
