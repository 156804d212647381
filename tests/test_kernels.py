import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import devices, kernels
from bench.cli import kernel_table, main

ROOT = Path(__file__).resolve().parents[1]


def test_kernel_suites_pass_their_correctness_checks_with_benchmarking_disabled():
    """Every benchmarked kernel matches its plain reference (run once each, no timing)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites" / "kernels"), "-q", "-p", "no:cacheprovider",
         "--benchmark-disable", "--kernel-presets=tiny"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


def test_optbench_kernels_writes_json_with_machine_info_and_history(tmp_path, capsys):
    json_path = tmp_path / "k.json"
    assert main(["kernels", "--quick", "--json", str(json_path), "-k", "linear or layer_norm or adamw"]) == 0
    data = json.loads(json_path.read_text())
    info = data["machine_info"]
    assert info["torch"] and info["torch_threads"] >= 1 and "cpu_model" in info
    groups = {b["group"] for b in data["benchmarks"]}
    assert {"linear", "layer_norm", "optimizer_step[adamw]"} <= groups
    linear = next(b for b in data["benchmarks"] if b["group"] == "linear")
    assert linear["extra_info"]["gflops_per_s"] > 0 and linear["extra_info"]["flops"] == 2 * 12 * 64 * 128 * 512
    assert list((tmp_path / "results" / "kernels").rglob("*.json"))  # autosaved for pytest-benchmark compare
    assert "linear" in capsys.readouterr().out


def test_kernel_groups_cover_a_training_step():
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites" / "kernels"), "--collect-only", "-q",
         "-p", "no:cacheprovider", "--kernel-presets=tiny"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    ).stdout  # fmt: skip
    names = {line.split("::")[1].split("[")[0] for line in collected.splitlines() if "::" in line}
    assert names == {"test_op", "test_piece", "test_optimizer_step", "test_clip_grad_norm"}
    for op in (
        "linear",
        "attention_sdpa",
        "attention_explicit",
        "layer_norm",
        "gelu",
        "softmax",
        "cross_entropy",
        "embedding",
        "block_forward",
        "block_forward_backward",
        "model_forward_backward",
        "train_step",
    ):
        assert f"-{op}-" in collected, op


def test_optimizer_impls_follow_torch():
    assert kernels.optimizer_impls("adamw", "cpu") == ["forloop", "foreach", "fused"]
    assert kernels.optimizer_impls("nadam", "cpu") == ["forloop", "foreach"]
    assert kernels.optimizer_impls("lion", "cpu") == ["forloop"]


def test_kernel_table_formats_rates():
    data = {"machine_info": {"torch": "x", "torch_threads": 2, "cpu_model": "cpu"},
            "benchmarks": [{"group": "linear", "name": "test_op[cpu-tiny-linear-float32]", "stats": {"median": 1e-4},
                            "extra_info": {"gflops_per_s": 12.5, "gb_per_s": 3.0}}]}  # fmt: skip
    table = kernel_table(data)
    assert "linear" in table and "100.0us" in table and "12.5" in table


def test_bad_kernel_device_is_exit_2(capsys):
    assert main(["kernels", "--device", "tpu"]) == 2
    assert "--device" in capsys.readouterr().err


@pytest.mark.parametrize(("iqr", "warned"), [(1e-5, False), (2.4e-5, False), (2.6e-5, True), (5e-3, True)])
def test_kernel_table_shows_the_iqr_and_warns_when_the_spread_is_large(iqr, warned):
    data = {
        "machine_info": {},
        "benchmarks": [
            {"group": "linear", "name": "test_op[cpu-tiny-linear-float32]", "stats": {"median": 1e-4, "iqr": iqr}}
        ],
    }
    table = kernel_table(data)
    assert f"{iqr * 1e6:.1f}us" in table
    assert ("warning: IQR above 25% of the median" in table) == warned
    assert ("linear cpu-tiny-linear-float32" in table.splitlines()[-1]) == warned


@pytest.mark.device
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_optbench_kernels_on_absent_cuda_exits_2(capsys):
    assert main(["kernels", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "cuda" in err and "Traceback" not in err


@pytest.mark.device
def test_kernel_suite_says_why_it_skips_cuda(tmp_path):
    """Run by pytest directly, the kernel suite on an absent device skips with the reason, never silently."""
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA: nothing is skipped")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites" / "kernels"), "-q", "-rs", "-p", "no:cacheprovider",
         "--device=cuda", "--kernel-presets=tiny", "--benchmark-disable", "-k", "linear"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert "SKIPPED" in out.stdout and devices.why_no_cuda() in out.stdout, out.stdout[-2000:]


def fake_gpu(monkeypatch, name: str, sms: int, memory_gib: float = 80, l2_mib: int = 50) -> None:
    props = SimpleNamespace(
        name=name, multi_processor_count=sms, total_memory=int(memory_gib * 2**30), L2_cache_size=l2_mib * 2**20
    )
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)


@pytest.mark.device
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


@pytest.mark.device
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


@pytest.mark.device
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


@pytest.mark.device
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


@pytest.mark.device
def test_event_clock_reads_the_device_clock_in_seconds(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    clock = kernels.event_clock("cuda:0")
    synced = FakeEvent.synchronized
    a, b = clock(), clock()
    assert b - a == pytest.approx(FakeEvent.tick / 1e3)
    assert FakeEvent.synchronized == synced + 2  # one wait per read, none per launch


@pytest.mark.device
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


@pytest.mark.device
@settings(max_examples=200, deadline=None)
@given(nbytes=st.integers(1, 2**31), l2=st.integers(1, 2**27))
def test_inputs_are_copied_until_they_leave_l2(nbytes, l2):
    copies = kernels.copies_to_leave_l2(nbytes, l2)
    assert copies >= 1
    assert copies * nbytes >= 2 * l2 or copies * nbytes > 2**30 - nbytes  # or the memory budget stopped it


@pytest.mark.device
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


@pytest.mark.device
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


def test_pytest_benchmark_storage_holds_only_its_own_runs(tmp_path, capsys):
    """optbench's latest timings sit beside pytest-benchmark's storage, not in it: `pytest-benchmark list`
    shows the autosaved runs only and a globbed `compare` counts each once. A file a former version left
    in the storage is moved out."""
    results = tmp_path / "results"
    storage = results / "kernels"
    storage.mkdir(parents=True)
    (storage / "latest.json").write_text('{"benchmarks": [], "machine_info": {"torch": "old"}}')
    for _ in range(2):
        assert main(["kernels", "--quick", "-k", "linear and tiny or linear and small and float32"]) == 0
    latest = results / "kernels-latest.json"
    assert json.loads(latest.read_text())["benchmarks"] and not (storage / "latest.json").exists()
    saved = sorted(p.relative_to(storage) for p in storage.rglob("*.json"))
    assert len(saved) == 2 and all(p.name[:4].isdigit() for p in saved), saved
    cli = [sys.executable, "-c", "from pytest_benchmark.cli import main; main()", "--storage", f"file://{storage}"]
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(Path(p).name for p in listed) == [p.name for p in saved]
    compared = subprocess.run([*cli, "compare", "*"], capture_output=True, text=True, check=True).stdout
    runs = {line.split("(")[1].split(")")[0] for line in compared.splitlines() if "test_op[" in line and "(" in line}
    assert len(runs) == 2, compared
    from bench.checkpoint import kernels_to_read

    assert kernels_to_read().resolve() == latest.resolve()
