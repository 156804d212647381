"""One registry per technique axis. Importing this package is cheap: builders import torch themselves."""

from bench.registry import Registry
from bench.techniques.clipping import CLIPPING
from bench.techniques.init import INITS
from bench.techniques.optimizers import OPTIMIZERS
from bench.techniques.regularization import REGULARIZERS
from bench.techniques.schedules import SCHEDULES

AXES: dict[str, Registry] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "init": INITS,
    "clip": CLIPPING,
    "regularization": REGULARIZERS,
}

__all__ = ["AXES", "CLIPPING", "INITS", "OPTIMIZERS", "REGULARIZERS", "SCHEDULES"]
