"""bench.devices without a GPU: resolving and checking devices, spreading workers over GPUs, a run's device,
a broken CUDA context, the precision a run computes in. CUDA is faked (monkeypatched torch.cuda functions).
Device logic elsewhere (the kernels' GPU timing, a worker replaced, a run on a real GPU) is marked `device`:
`.ci/gpu-check.sh` runs `pytest -m device`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import devices
from bench.cli import main
from bench.registry import ConfigError

pytestmark = pytest.mark.device


def fake_gpus(monkeypatch, count: int) -> None:
    """This host seen as one with `count` GPUs (only device counting; nothing runs on them)."""
    monkeypatch.setattr(devices, "cuda_count", lambda: count)


# -- absent CUDA is bad input --------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a host without CUDA")
@pytest.mark.parametrize("gpu", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_asked_for_but_absent_is_one_line_and_exit_2(capsys, gpu):
    assert main(["train", "--set", f"device={gpu}", "--set", "model=tiny", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"'{gpu}'" in err and "allowed here: cpu" in err and "--set" in err


def test_a_gpu_index_beyond_the_machine_is_bad_input(monkeypatch):
    fake_gpus(monkeypatch, 2)
    devices.check_available("cuda:1")
    with pytest.raises(ConfigError, match="2 GPU"):
        devices.check_available("cuda:2")


# -- workers spread over GPUs --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(gpus=st.integers(1, 8), workers=st.none() | st.integers(1, 20), per_gpu=st.integers(1, 4))
def test_workers_are_spread_over_the_gpus(gpus, workers, per_gpu):
    with pytest.MonkeyPatch.context() as mp:
        fake_gpus(mp, gpus)
        if workers is not None and workers > gpus * per_gpu:
            with pytest.raises(ConfigError, match="--workers"):
                devices.worker_devices({"cuda"}, workers, per_gpu)
            return
        assignment = devices.worker_devices({"cuda"}, workers, per_gpu)
    assert len(assignment) == (workers or gpus)  # one per GPU by default
    counts = devices.sharing(assignment)
    assert set(counts) <= {f"cuda:{i}" for i in range(gpus)}
    assert max(counts.values()) <= per_gpu and max(counts.values()) - min(counts.values()) <= 1
    if workers is None or workers <= gpus:
        assert max(counts.values()) == 1  # nobody shares unless there are more workers than GPUs


def test_cpu_suites_get_no_gpu(monkeypatch):
    fake_gpus(monkeypatch, 4)
    assert devices.worker_devices({"cpu"}, 3, 1) == [None, None, None]


def test_runs_that_name_their_gpus_get_as_many_workers_as_gpus_named(monkeypatch):
    fake_gpus(monkeypatch, 4)
    assert len(devices.worker_devices({"cuda:1"}, None, 1)) == 1
    assert len(devices.worker_devices({"cuda:0", "cuda:2", "cpu"}, None, 1)) == 2
    with pytest.raises(ConfigError, match="--workers"):
        devices.worker_devices({"cuda:1"}, 2, 1)  # two workers would share cuda:1


def test_a_run_takes_its_workers_gpu_unless_it_names_one():
    assert devices.run_device("cuda", "cuda:3") == "cuda:3"
    assert devices.run_device("cuda:1", "cuda:3") == "cuda:1"
    assert devices.run_device("cpu", "cuda:3") == "cpu"


def test_use_device_sets_the_current_cuda_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(str(d)))
    devices.use_device("cuda:2")
    devices.use_device("cpu")
    assert calls == ["cuda:2"]


# -- a broken CUDA context -----------------------------------------------------------------------------------------


def test_context_broken_reads_a_sticky_error(monkeypatch):
    def sticky(device=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "synchronize", sticky)
    assert devices.context_broken("cuda:0")
    assert not devices.context_broken("cpu")


# -- what a record says of its precision ---------------------------------------------------------------------------


def test_precision_on_cuda_names_tf32_cudnn_sdpa_and_driver(monkeypatch):
    monkeypatch.setattr(devices, "driver_version", lambda: "999.1")
    monkeypatch.setattr(devices, "sdpa_backend", lambda *a: "flash_attention")
    p = devices.precision("cuda:1", "bf16", 64, 6)
    for key in ("cuda_matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_version", "sdpa_enabled", "deterministic"):
        assert key in p
    assert p["driver"] == "999.1" and p["sdpa_backend"] == "flash_attention" and p["autocast"] == "bf16"
