from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.config import RunConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "OPTBENCH_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["OPTBENCH_DATA_DIR"] = str(SHARED_DATA)
if "OPTBENCH_DATA_DIR" in os.environ:  # absolute: tests run in their own temporary folders
    os.environ["OPTBENCH_DATA_DIR"] = str(Path(os.environ["OPTBENCH_DATA_DIR"]).resolve())

# Tests keep torch's kernel rule (fused where torch has it): their numbers must never hinge on a machine's
# cached calibration. tests/test_calibrate.py points OPTBENCH_CALIBRATION at its own files.
os.environ["OPTBENCH_CALIBRATION"] = "off"

# A small synthetic source keeps every test run in well under a second of data generation.
TINY_DATA = {"name": "synthetic", "alphabet": 8, "order": 1, "length": 20_000}


def tiny_config(**values) -> RunConfig:
    base = {
        "model": "tiny",
        "data": TINY_DATA,
        "steps": 20,
        "batch_size": 4,
        "eval_interval": 10,
        "eval_batches": 2,
        "eval_batch_size": 4,
        "schedule": {"name": "constant"},
        "threads": 1,
    }
    base.update(values)
    return RunConfig.build(base)


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Every test writes its results and caches under its own temporary folder."""
    monkeypatch.setenv("OPTBENCH_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("OPTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
