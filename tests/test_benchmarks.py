"""benchmarks/: every script answers --help, and none takes a standard module's name (the scripts' folder is
first on the import path when one runs: a benchmarks/profile.py broke torch's `import profile`)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted(p for p in (Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def test_no_script_shadows_a_standard_module():
    assert SCRIPTS and not [p.name for p in SCRIPTS if p.stem in sys.stdlib_module_names]


@pytest.mark.parametrize("script", [p for p in SCRIPTS if not p.name.startswith("_")], ids=lambda p: p.stem)
def test_every_script_answers_help(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
