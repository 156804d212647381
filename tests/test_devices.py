"""Device logic without a GPU: resolution, per-worker assignment, the peak table, GPU timing, the comparison
helper across devices, EMA without host copies, warm-up, precision records, poisoned workers. CUDA is faked
(monkeypatched torch.cuda functions, small fake objects); the one test that needs a real GPU says why it
skips."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import exit_poisoned_once
from suite_files import write_suite

from bench import devices, kernels, machine
from bench.cli import main
from bench.config import RunConfig
from bench.executor import work_loop
from bench.registry import ConfigError
from bench.results import suite_results
from bench.runner import default_split
from bench.suite import Suite
from bench.train import Training, train
from bench.workers import run_workers

NO_CUDA = "needs a CUDA device: " + ("present" if torch.cuda.is_available() else devices.why_no_cuda())


def fake_gpus(monkeypatch, count: int) -> None:
    """This host seen as one with `count` GPUs (only device counting; nothing runs on them)."""
    monkeypatch.setattr(devices, "cuda_count", lambda: count)


# -- 7: auto resolved before hashing; absent CUDA is bad input -----------------------------------------------


@pytest.mark.parametrize(("gpus", "expected"), [(0, "cpu"), (1, "cuda"), (4, "cuda")])
def test_auto_is_resolved_before_the_config_is_hashed(monkeypatch, gpus, expected):
    fake_gpus(monkeypatch, gpus)
    cfg = RunConfig.build({"device": "auto"})
    assert cfg.device == expected
    assert cfg.hash == RunConfig.build({"device": expected}).hash


def test_cpu_and_gpu_executions_of_one_config_have_different_hashes(monkeypatch):
    on_cpu = RunConfig.build({"device": "auto"})
    fake_gpus(monkeypatch, 1)
    on_gpu = RunConfig.build({"device": "auto"})
    assert on_cpu.hash != on_gpu.hash


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_a_suite_on_absent_cuda_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_suite(tmp_path, "gpu", 'optimizer = ["adamw", "lion"]')
    storage = tmp_path / "store.journal"
    assert main(["run", str(path), "--device", "cuda", "--storage", str(storage), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "device" in err
    assert not storage.exists()


def test_auto_on_a_cpu_only_host_splits_as_the_cpu(tmp_path, monkeypatch):
    """The worker split must not take `auto` for a GPU on a host without one."""
    fake_gpus(monkeypatch, 0)
    path = write_suite(tmp_path, "auto", 'optimizer = ["adamw", "lion"]', extra="")
    suite = Suite.load(path, {"device": "auto"})
    assert default_split(suite, cores=4) == (4, 1)  # small model: one single-threaded worker per core


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_optbench_kernels_on_absent_cuda_exits_2(capsys):
    assert main(["kernels", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "cuda" in err and "Traceback" not in err


def test_kernel_suite_says_why_it_skips_cuda(tmp_path):
    """Run by pytest directly, the kernel suite on an absent device skips with the reason, never silently."""
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA: nothing is skipped")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(root / "suites" / "kernels"), "-q", "-rs", "-p", "no:cacheprovider",
         "--device=cuda", "--kernel-presets=tiny", "--benchmark-disable", "-k", "linear"],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert "SKIPPED" in out.stdout and devices.why_no_cuda() in out.stdout, out.stdout[-2000:]


# -- 2: workers spread over GPUs -------------------------------------------------------------------------------


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


# -- 9: a worker whose CUDA context broke exits and is replaced --------------------------------------------


def test_context_broken_reads_a_sticky_error(monkeypatch):
    def sticky(device=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "synchronize", sticky)
    assert devices.context_broken("cuda:0")
    assert not devices.context_broken("cpu")


def test_a_run_that_breaks_the_context_is_marked_and_its_worker_exits(tmp_path, monkeypatch):
    import bench.train

    def broken(self):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(Training, "step", broken)
    monkeypatch.setattr(bench.train, "context_broken", lambda device: True)
    path = write_suite(tmp_path, "poison", 'optimizer = ["adamw", "lion"]', seeds="[0]")
    from bench.runner import Plan

    with pytest.raises(SystemExit) as stop:
        plan = Plan(str(path), {}, str(tmp_path / "s.journal"), 1, 1)
        work_loop(plan.open(), plan.crew)
    assert stop.value.code == devices.CUDA_POISONED_EXIT
    frame = suite_results(Suite.load(path), str(tmp_path / "s.journal"))
    assert list(frame["status"]) == ["failed"]  # stored before the worker left; the other run waits for a fresh one


def test_a_poisoned_worker_is_replaced(tmp_path):
    marker = tmp_path / "marker"
    run_workers(exit_poisoned_once, [(str(marker),)], threads=1)
    assert marker.read_text() == "replaced"


# -- 4: the peak table -----------------------------------------------------------------------------------------


def fake_gpu(monkeypatch, name: str, sms: int, memory_gib: float = 80, l2_mib: int = 50) -> None:
    props = SimpleNamespace(
        name=name, multi_processor_count=sms, total_memory=int(memory_gib * 2**30), L2_cache_size=l2_mib * 2**20
    )
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)


@pytest.mark.parametrize(
    ("name", "sms", "bf16", "memory"),
    [
        ("NVIDIA H100 80GB HBM3", 132, 989.4, 3.35),
        ("NVIDIA H100 PCIe", 114, 756.5, 2.0),
        ("NVIDIA H100 NVL", 132, 835.5, 3.9),
        ("NVIDIA A100-SXM4-40GB", 108, 312.0, 1.555),
        ("NVIDIA A100-SXM4-80GB", 108, 312.0, 2.039),
        ("NVIDIA L4", 58, 121.0, 0.3),
        ("NVIDIA L40S", 142, 362.0, 0.864),
        ("NVIDIA H200", 132, 989.4, 4.8),
    ],
)
def test_peak_table_matches_the_exact_gpu(monkeypatch, name, sms, bf16, memory):
    fake_gpu(monkeypatch, name, sms)
    (key, entry) = kernels.peak_entry("cuda:0")
    assert key == (name, sms)
    assert kernels.peak("cuda:0", torch.bfloat16) == pytest.approx((bf16 * 1e12, memory * 1e12))


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(sorted(kernels.GPU_PEAKS)), suffix=st.sampled_from(["", "S", " PCIe", "-X"]),
       sms_delta=st.integers(-4, 4))  # fmt: skip
def test_peak_table_never_matches_a_near_name(key, suffix, sms_delta):
    name, sms = key
    with pytest.MonkeyPatch.context() as mp:
        fake_gpu(mp, name + suffix, sms + sms_delta)
        found = kernels.peak_entry("cuda:0")
    identity = (name + suffix, sms + sms_delta)
    assert (found is None) == (identity not in kernels.GPU_PEAKS)
    if found is not None:
        assert found[0] == identity


def test_float32_peak_follows_tf32(monkeypatch):
    fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", 132)
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert kernels.peak("cuda:0", torch.float32)[0] == pytest.approx(66.9e12)
        torch.backends.cuda.matmul.allow_tf32 = True
        assert kernels.peak("cuda:0", torch.float32)[0] == pytest.approx(494.7e12)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


# -- 1: comparison across devices --------------------------------------------------------------------------------


class OnOtherDevice:
    """A tensor as a CUDA one behaves here: it compares only once moved to the CPU (assert_close refuses it)."""

    device = torch.device("cuda", 0)

    def __init__(self, value: torch.Tensor):
        self.value = value

    def detach(self):
        return self

    def double(self):
        return OnOtherDevice(self.value.double())

    def cpu(self):
        return self.value


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(-100, 100), min_size=1, max_size=32), bf16=st.booleans(), shift=st.floats(0, 1))
def test_close_on_cpu_compares_across_devices(values, bf16, shift):
    dtype = torch.bfloat16 if bf16 else torch.float32
    expected = torch.tensor(values, dtype=torch.float64)
    actual = OnOtherDevice(expected.to(dtype))
    kernels.close_on_cpu(actual, expected, dtype)  # a rounding of itself: within tolerance
    tol = kernels.tolerance(dtype)
    worst = float((tol["atol"] + tol["rtol"] * expected.abs()).max())
    if shift > 2 * worst + 0.02:
        with pytest.raises(AssertionError):
            kernels.close_on_cpu(OnOtherDevice((expected + shift).to(dtype)), expected, dtype)


# -- 5: GPU timing ----------------------------------------------------------------------------------------------


class FakeEvent:
    """torch.cuda.Event with a fake device clock that advances by `tick` ms per recorded event."""

    now = 0.0
    tick = 0.25
    synchronized = 0

    def __init__(self, enable_timing=False):
        self.t = None

    def record(self, stream=None):
        FakeEvent.now += FakeEvent.tick
        self.t = FakeEvent.now

    def synchronize(self):
        FakeEvent.synchronized += 1

    def elapsed_time(self, end):
        return end.t - self.t


def test_event_clock_reads_the_device_clock_in_seconds(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    clock = kernels.event_clock("cuda:0")
    synced = FakeEvent.synchronized
    a, b = clock(), clock()
    assert b - a == pytest.approx(FakeEvent.tick / 1e3)
    assert FakeEvent.synchronized == synced + 2  # one wait per read, none per launch


@settings(max_examples=100, deadline=None)
@given(kernel_s=st.floats(1e-7, 1e-1))
def test_launches_per_round_fill_a_round(kernel_s):
    t = {"now": 0.0}

    def fn():
        t["now"] += kernel_s

    n = kernels.launches_per_round(fn, lambda: t["now"])
    assert 10 <= n <= kernels.MAX_LAUNCHES
    if 10 < n < kernels.MAX_LAUNCHES:
        assert n * kernel_s == pytest.approx(kernels.ROUND_SECONDS, rel=0.5)


@settings(max_examples=200, deadline=None)
@given(nbytes=st.integers(1, 2**31), l2=st.integers(1, 2**27))
def test_inputs_are_copied_until_they_leave_l2(nbytes, l2):
    copies = kernels.copies_to_leave_l2(nbytes, l2)
    assert copies >= 1
    assert copies * nbytes >= 2 * l2 or copies * nbytes > 2**30 - nbytes  # or the memory budget stopped it


def test_rotating_kernel_cycles_through_distinct_inputs():
    built = []

    def build():
        x = torch.zeros(4)
        built.append(x)
        return kernels.Kernel(lambda: x.add_(1), lambda: None, 4, 32)

    k = kernels.rotating(build, 3)
    for _ in range(6):
        k.fn()
    assert [float(x[0]) for x in built] == [2.0, 2.0, 2.0]  # three copies, each called twice in turn
    assert k.info["input_copies"] == 3 and k.bytes == 32


# -- 3: EMA without host copies ------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(decay=st.floats(0.5, 0.9999), updates=st.integers(1, 6), seed=st.integers(0, 1000))
def test_ema_matches_averaged_model(decay, updates, seed):
    from types import SimpleNamespace

    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from bench.techniques.regularization import ExponentialMovingAverage

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    ours = ExponentialMovingAverage({"decay": decay})
    ours.setup(SimpleNamespace(model=model))
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    for _ in range(updates):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ours.update_parameters(model)
        theirs.update_parameters(model)
    for a, b in zip(ours.module.parameters(), theirs.module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_ema_update_makes_no_host_to_device_copy(tiny, monkeypatch):
    run = Training(tiny(regularization={"ema": {"decay": 0.9}}))
    run.step()
    copies = []
    to = torch.Tensor.to

    def counting(self, *args, **kwargs):
        copies.append(args)
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting)
    for hook in run.after_step:  # the EMA's update
        hook(run)
    assert copies == []


# -- 6, 9: what a record says ---------------------------------------------------------------------------------


def test_warmup_steps_are_timed_apart(tiny):
    r = train(tiny(steps=20))
    assert r.warmup_steps == 2 and r.warmup_time > 0
    tokens_per_step = r.tokens // r.steps
    assert r.tokens_per_second == pytest.approx((r.steps - 2) * tokens_per_step / r.train_time)


def test_records_carry_the_precision_settings(tiny):
    r = train(tiny())
    p = r.env["precision"]
    assert p["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert p["autocast"] == "none" and p["deterministic"] is False
    assert p["sdpa_backend"] in {"flash_attention", "efficient_attention", "math", "cudnn_attention", "overrideable"}
    json.dumps(r.env)  # storable as it is


def test_precision_on_cuda_names_tf32_cudnn_sdpa_and_driver(monkeypatch):
    monkeypatch.setattr(devices, "driver_version", lambda: "999.1")
    monkeypatch.setattr(devices, "sdpa_backend", lambda *a: "flash_attention")
    p = devices.precision("cuda:1", "bf16", 64, 6)
    for key in ("cuda_matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_version", "sdpa_enabled", "deterministic"):
        assert key in p
    assert p["driver"] == "999.1" and p["sdpa_backend"] == "flash_attention" and p["autocast"] == "bf16"


def test_deterministic_mode_is_on_for_the_run_only_and_keeps_the_hash(tiny, monkeypatch):
    seen = []
    step = Training.step

    def watching(self):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return step(self)

    monkeypatch.setattr(Training, "step", watching)
    cfg = tiny(deterministic=True)
    r = train(cfg)
    assert r.status == "complete" and set(seen) == {True}
    assert r.env["precision"]["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()
    assert cfg.hash == tiny().hash
    assert math.isclose(r.final_val_loss, train(tiny()).final_val_loss, rel_tol=0, abs_tol=0)  # the CPU agrees


# -- 9: fused optimizers only where torch has them ----------------------------------------------------------------


def test_fused_falls_back_where_torch_lacks_it(monkeypatch):
    from bench.techniques import optimizers

    class OldAdagrad(torch.optim.Adagrad):  # as an older torch: fused Adagrad refuses the device at its step
        def step(self, closure=None):
            if self.defaults.get("fused"):
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of cpu")
            return super().step(closure)

    machine.fused_available.cache_clear()
    monkeypatch.setattr(torch.optim, "Adagrad", OldAdagrad)
    try:
        assert not machine.fused_available("Adagrad", "cpu")
        assert optimizers.impl_kwargs("Adagrad", "auto", "cpu") == {"foreach": True}
        with pytest.raises(ValueError, match="fused"):
            optimizers.impl_kwargs("Adagrad", "fused", "cpu")
        assert "fused" not in kernels.optimizer_impls("adagrad", "cpu")
    finally:
        machine.fused_available.cache_clear()
    assert machine.fused_available("AdamW", "cpu") and not machine.fused_available("NAdam", "cpu")


# -- on a real GPU ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_a_tiny_run_on_the_gpu(tiny):
    r = train(tiny(device="cuda", autocast="bf16"))
    assert r.status == "complete" and r.env["device"].startswith("cuda") and r.env["precision"]["driver"]


class FakeBenchmark:
    """pytest-benchmark's fixture as `measure` uses it: pedantic rounds of `iterations` calls timed by _timer."""

    enabled = True

    def __init__(self):
        import time

        self.extra_info = {}
        self._timer = time.perf_counter

    def pedantic(self, fn, rounds, warmup_rounds, iterations):
        import statistics

        self.iterations = iterations
        per_call = []
        for i in range(warmup_rounds + rounds):
            start = self._timer()
            for _ in range(iterations):
                fn()
            if i >= warmup_rounds:
                per_call.append((self._timer() - start) / iterations)
        self.stats = SimpleNamespace(stats=SimpleNamespace(median=statistics.median(per_call)))


@pytest.mark.parametrize("leave_l2", [True, False])
def test_measure_on_a_gpu_times_many_launches_and_shows_bandwidth_only_past_l2(monkeypatch, leave_l2):
    """The kernel suite's GPU path with a fake GPU: a device clock that advances 5 us per kernel call."""
    fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", 132, l2_mib=1)
    calls = {"n": 0}
    monkeypatch.setattr(kernels, "event_clock", lambda device: lambda: calls["n"] * 5e-6)

    def build():
        k = kernels.layer_norm("tiny", torch.float32, "cpu")
        fn = k.fn

        def run():
            calls["n"] += 1
            return fn()

        return kernels.Kernel(run, k.check, k.flops, k.bytes)

    bench = FakeBenchmark()
    kernels.measure(bench, build, "cuda:0", rounds=5, dtype=torch.float32, leave_l2=leave_l2)
    info = bench.extra_info
    assert bench.iterations == 400 == info["launches_per_round"]  # 2 ms of 5 us kernels per synchronize
    assert bench.stats.stats.median == pytest.approx(5e-6)
    assert info["gflops_per_s"] == pytest.approx(info["flops"] / 5e-6 / 1e9)
    assert info["peak_entry"] == "NVIDIA H100 80GB HBM3 (132 SMs)" and info["peak_flops_fraction"] > 0
    if leave_l2:
        copies = info["input_copies"]
        assert copies * info["bytes"] >= 2 * 2**20 > (copies - 1) * info["bytes"]
        assert info["gb_per_s"] == pytest.approx(info["bytes"] / 5e-6 / 1e9) and info["peak_bandwidth_fraction"] > 0
    else:
        assert info["gb_per_s"] is None and "fits in L2" in info["gb_per_s_left_out"]
        assert "peak_bandwidth_fraction" not in info


def test_runs_that_name_their_gpus_get_as_many_workers_as_gpus_named(monkeypatch):
    fake_gpus(monkeypatch, 4)
    assert len(devices.worker_devices({"cuda:1"}, None, 1)) == 1
    assert len(devices.worker_devices({"cuda:0", "cuda:2", "cpu"}, None, 1)) == 2
    with pytest.raises(ConfigError, match="--workers"):
        devices.worker_devices({"cuda:1"}, 2, 1)  # two workers would share cuda:1
