"""pytest-benchmark's median against torch.utils.benchmark.Timer's for linear, layer norm and SDPA
attention (target: within 10%)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

CROSSCHECK = {"linear": "linear", "layer_norm": "layer_norm", "attention_sdpa": "attention_sdpa"}


def bench_crosscheck(preset: str, rounds: int) -> None:
    """pytest-benchmark's median against torch.utils.benchmark.Timer's for three kernels (target within 10%)."""
    import json

    import torch
    import torch.utils.benchmark as tbench

    from bench import kernels
    from bench.env import set_threads

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "k.json"
        suite = Path(__file__).resolve().parent.parent / "suites" / "kernels" / "test_ops.py"
        selection = " or ".join(f"{name}-float32" for name in CROSSCHECK)
        subprocess.run(
            [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", f"--kernel-presets={preset}",
             f"--kernel-rounds={rounds}", f"--benchmark-json={out}", "-k", selection],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        medians = {b["group"]: b["stats"]["median"] for b in json.loads(out.read_text())["benchmarks"]}
    print(f"{preset} preset, float32, cpu, {torch.get_num_threads()} threads")
    print(f"{'kernel':<16} {'pytest-benchmark':>17} {'torch Timer':>12} {'ratio':>7}")
    # Timer's default of one thread differs from torch's, so it gets the benchmark's count; and since any
    # torch.set_num_threads call slows the CPU pool (bench.env.set_threads), its thread setter skips no-ops.
    common = tbench.utils.common

    @contextlib.contextmanager
    def same_threads(n: int):
        before = torch.get_num_threads()
        set_threads(n)
        try:
            yield
        finally:
            set_threads(before)

    common.set_torch_threads = same_threads
    for group, factory in CROSSCHECK.items():
        fn = getattr(kernels, factory)(preset, torch.float32, "cpu").fn
        timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        theirs = timer.blocked_autorange(min_run_time=1.0).median
        ours = medians[group]
        print(f"{group:<16} {ours * 1e6:>15.1f}us {theirs * 1e6:>10.1f}us {ours / theirs:>7.3f}  (target 0.90-1.10)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    bench_crosscheck(args.preset, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
