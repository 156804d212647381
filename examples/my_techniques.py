"""An optbench plugin: one entry on each of optimizer, schedule, init and clip, through the registries'
public `register` API, exactly as the built-ins register. Name it in a suite file (`plugins = [...]`) or on
the command line (`--plugin examples/my_techniques.py`)."""

import math

from bench.registry import Param
from bench.techniques import CLIPPING, INITS, OPTIMIZERS, SCHEDULES
from bench.techniques.optimizers import param_groups


@OPTIMIZERS.register(
    "sgd_nesterov_wd",
    "SGD with Nesterov momentum 0.95 (torch.optim.SGD), a fixed recipe",
    lr=Param(float, 0.05, "peak learning rate", positive=True, search=("log", 0.005, 0.5)),
    weight_decay=Param(float, 0.0, "weight decay", low=0.0),
    decay_all=Param(bool, False, "decay every parameter, not only matrices"),
)
def build_sgd_nesterov_wd(model, p, device="cpu"):
    import torch

    return [torch.optim.SGD(param_groups(model, p), lr=p["lr"], momentum=0.95, nesterov=True)]


@SCHEDULES.register(
    "cosine_restarts",
    "cosine decay restarted `cycles` times over the run",
    warmup=Param(int, 0, "linear warmup steps", low=0),
    cycles=Param(int, 2, "number of cosine cycles", low=1),
)
def cosine_restarts(p, t, n):
    period = max(1, n // p["cycles"])
    return 0.5 * (1 + math.cos(math.pi * (t % period) / period))


@INITS.register(
    "small_normal", "every matrix normal(0, std), vectors untouched", std=Param(float, 0.01, "std", positive=True)
)
def small_normal(model, p):
    import torch

    with torch.no_grad():
        for w in model.parameters():
            if w.dim() >= 2:
                w.normal_(0.0, p["std"])


@CLIPPING.register("norm_half", "clip the global gradient norm to 0.5")
def norm_half(p):
    import torch

    return lambda parameters: torch.nn.utils.clip_grad_norm_(parameters, 0.5)
