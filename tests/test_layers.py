"""The package's layers point one way, imports inside functions included, and reports never import what
trains: the import-linter contracts in pyproject.toml ([tool.importlinter]) hold, and a breach is caught."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports over the package under `root` (found first on the path, before any installed copy)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([exe, "--no-cache"], cwd=root, capture_output=True, text=True, env=env)


def test_the_layers_contract_is_kept():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken" in done.stdout


def test_an_upward_import_inside_a_function_breaks_it(tmp_path):
    shutil.copytree(ROOT / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "bench" / "labels.py", "a") as f:  # a primitive reaching up to the store
        f.write("\n\ndef _upward():\n    from bench.store import Store\n\n    return Store\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "bench.labels -> bench.store" in done.stdout, done.stdout[-3000:]


def test_a_report_importing_the_training_loop_breaks_it(tmp_path):
    shutil.copytree(ROOT / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "bench" / "report" / "figures.py", "a") as f:
        f.write("\n\ndef _trains():\n    from bench.train import train\n\n    return train\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "Reports read, they never train BROKEN" in done.stdout, done.stdout[-3000:]
