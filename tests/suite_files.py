"""Small suite files for the suite, store and runner tests."""

from pathlib import Path

TINY_BASE = """
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = STEPS
batch_size = 4
eval_interval = 10
eval_batches = 2
eval_batch_size = 4
schedule = "constant"
"""


def write_suite(folder: Path, name: str, axes: str, seeds: str = "[0, 1]", steps: int = 20, extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'[suite]\nname = "{name}"\nseeds = {seeds}\n{extra}\n'
        + TINY_BASE.replace("STEPS", str(steps))
        + f"\n[axes]\n{axes}\n"
    )
    return path


# 3 x 2 configurations x 2 seeds = 12 runs
GRID_12 = 'optimizer = ["adamw", "lion", "sgd"]\n"optimizer.lr" = [1e-3, 3e-3]'
