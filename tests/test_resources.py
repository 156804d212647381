"""bench.resources: a run's memory estimated from its config, and runs that cannot fit refused before any
training."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import one_line_error, run_optbench

from bench.config import RunConfig
from bench.registry import ConfigError
from bench.resources import check_fits, estimate_bytes, memory_limit
from bench.settings import parse_bytes

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(batch=st.integers(12, 10_000), width=st.sampled_from([32, 64, 128]))
def test_the_memory_estimate_grows_with_batch_and_width(batch, width):
    small = RunConfig.build({"model": {"name": "tiny", "n_embd": width}, "batch_size": batch})
    bigger = small.override({"batch_size": batch * 2})
    wider = small.override({"model.n_embd": width * 2})
    assert estimate_bytes(small) < estimate_bytes(bigger) and estimate_bytes(small) < estimate_bytes(wider)


def test_a_run_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch):
    cfg = RunConfig.build({"model": "tiny"})
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", str(estimate_bytes(cfg) - 1))
    with pytest.raises(ConfigError, match="GiB, over the .* GiB of OPTBENCH_MEMORY_LIMIT"):
        check_fits([cfg])
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", str(estimate_bytes(cfg)))
    check_fits([cfg])
    line = one_line_error(run_optbench("train", "--set", "model=tiny", "--set", "batch_size=100000"))
    assert "batch_size" in line and "GiB" in line


@pytest.mark.parametrize(("text", "expected"), [("1024", 1024), ("4k", 4096), ("1.5G", 3 * 2**29), ("512MiB", 2**29),
                                                 ("2 GB", 2 * 2**30), ("1t", 2**40)])  # fmt: skip
def test_memory_limits_read_as_bytes_with_binary_units(text, expected, monkeypatch):
    assert parse_bytes(text) == expected
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", text)
    assert memory_limit() == (expected, "OPTBENCH_MEMORY_LIMIT")


def test_workers_side_by_side_multiply_what_must_fit_and_gpu_runs_are_not_counted(monkeypatch):
    cfg = RunConfig.build({"model": "tiny"})
    other = cfg.override({"seed": 1})
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", str(2 * estimate_bytes(cfg) - 1))
    check_fits([cfg, other], workers=1)
    with pytest.raises(ConfigError, match=r"\(2 workers side by side\)"):
        check_fits([cfg, other], workers=2)
    check_fits([cfg], workers=2)  # one run: one worker at a time
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", "1")
    check_fits([cfg.override({"device": "cuda"})], workers=2)  # accelerator memory is the device's business
