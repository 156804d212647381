"""What the benchmarks share: timing a command, and the configs they train.

Each benchmark is a script (`python benchmarks/NAME.py --help`); this module is imported beside them. The
scripts' folder comes first on the import path when one runs, so no script may take a standard module's
name (a benchmarks/profile.py broke torch's `import profile`)."""

from __future__ import annotations

import subprocess
import time


def time_command(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def small_config(steps: int, **values):
    from bench.config import RunConfig

    # nanoGPT's CPU recipe on the synthetic corpus; no clipping or schedule work the bare loop lacks
    base = {"model": "small", "steps": steps, "eval_interval": steps, "eval_batches": 1, "clip": "none",
            "schedule": "constant"}  # fmt: skip
    return RunConfig.build({**base, **values})


def recipe_config(preset: str = "small", **values):
    """nanoGPT's CPU recipe (AdamW, clipping, warmup-cosine) on the synthetic corpus with its 65 tokens."""
    from bench.config import RunConfig

    return RunConfig.build({"model": preset, "steps": 10**6, "eval_batches": 1,
                            "data": {"name": "synthetic", "alphabet": 65}, **values})  # fmt: skip
