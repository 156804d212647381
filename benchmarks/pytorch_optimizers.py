"""Every optimizer of pytorch_optimizer's list (`get_supported_optimizers()`) by `class_path` on the tiny
model for a few steps, each at its class's own defaults: how many train, how many are refused as bad input
and why, and whether any run fails or escapes with a traceback (the target: none). An optimizer refused for
an argument it has no default for is tried again with that argument given."""

from __future__ import annotations

import sys

# this folder off the path: its profile.py would shadow the standard library's, which torch imports
if sys.path and sys.path[0].rstrip("/").endswith("benchmarks"):
    sys.path.pop(0)

import argparse  # noqa: E402
import collections  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402

OUTCOMES = ("trains", "diverged", "refused", "failed", "traceback")


def class_path_of(cls: type) -> str:
    """The shortest import path users would write: the package's top level where it exports the class."""
    import importlib

    top = cls.__module__.split(".")[0]
    if getattr(importlib.import_module(top), cls.__name__, None) is cls:
        return f"{top}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"


def try_one(optimizer: dict, steps: int) -> tuple[str, str, str | None]:
    """(outcome, detail, the key of a required argument the class has no default for, if that refused it)."""
    from bench.config import RunConfig
    from bench.registry import ConfigError
    from bench.train import train

    tiny = {"model": "tiny", "data": {"name": "synthetic", "alphabet": 8, "order": 1, "length": 20000},
            "steps": steps, "batch_size": 4, "eval_interval": steps, "eval_batches": 2, "eval_batch_size": 4,
            "schedule": "constant", "threads": 1}  # fmt: skip
    try:
        cfg = RunConfig.build({**tiny, "optimizer": optimizer})
    except ConfigError as e:
        required = e.key.removeprefix("optimizer.") if e.message.startswith("is required") else None
        return "refused", e.format(), required
    record = train(cfg)
    if record.status == "complete":
        return "trains", f"val_loss {record.final_val_loss:.3f}", None
    if record.status == "diverged":
        return "diverged", f"at step {record.status_step}", None
    return "failed", record.reason, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("-k", help="only names containing this text")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    from pytorch_optimizer import get_supported_optimizers, load_optimizer

    from bench.techniques.class_path import loop_needs

    # values for arguments some classes have no default for: a learning rate, the run's length, a data size
    given_values = {"lr": 1e-3, "num_iterations": args.steps, "num_data": 1000}
    names = [n for n in get_supported_optimizers() if not args.k or args.k.lower() in n]
    outcomes: dict[str, list[str]] = collections.defaultdict(list)
    rows = []
    start = time.perf_counter()
    for name in names:
        path = class_path_of(load_optimizer(name))
        optimizer: dict = {"class_path": path}
        try:
            outcome, detail, required = try_one(optimizer, args.steps)
            while required in given_values and required not in optimizer:  # again, given what it lacked
                optimizer[required] = given_values[required]
                outcome, detail, required = try_one(optimizer, args.steps)
        except Exception as e:  # noqa: BLE001 -- what escaped optbench is exactly what this script looks for
            outcome, detail = "traceback", f"{type(e).__name__}: {e}".splitlines()[0]
        given = ", ".join(f"{k}={v}" for k, v in optimizer.items() if k != "class_path")
        if outcome in ("trains", "diverged"):
            from bench.config import RunConfig

            needs = loop_needs(RunConfig.build({"model": "tiny", "optimizer": optimizer}).optimizer)
            detail += f"; loop gives {needs}" if str(needs) != "a plain step" else ""
        outcomes[outcome].append(name + (f" ({given})" if given else ""))
        rows.append((path, outcome + (f" with {given}" if given else ""), detail))
    width = max(len(r[0]) for r in rows)
    if args.markdown:
        print("| class_path | outcome | detail |\n|---|---|---|")
    for path, outcome, detail in rows:
        if args.markdown:
            print(f"| `{path}` | {outcome} | {detail.replace('|', '/')} |")
        else:
            print(f"{path:<{width}}  {outcome:<9} {detail}")
    seconds = time.perf_counter() - start
    print(f"\npytorch_optimizer {metadata.version('pytorch_optimizer')}: {len(names)} optimizers, "
          f"{args.steps} steps each ({seconds:.0f} s)")  # fmt: skip
    for outcome in OUTCOMES:
        listed = f"  {', '.join(outcomes[outcome])}" if outcome != "trains" and outcomes[outcome] else ""
        print(f"  {outcome:<9} {len(outcomes[outcome]):>3}{listed}")
    return 1 if outcomes["traceback"] or outcomes["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
