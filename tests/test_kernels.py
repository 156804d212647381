import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import kernels
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
