"""An optbench plugin: one entry on each of optimizer, schedule, init, clip and regularization, registered
through `bench.axes.register`, the same API the built-ins use. Name it in a suite file (`plugins = [...]`) or
on the command line (`--plugin examples/my_techniques.py`). Each entry meets its axis's contract
(bench.axes, bench.contracts); tests/test_contracts.py checks these entries as it checks the built-ins."""

import math

from bench.axes import register
from bench.registry import Param
from bench.techniques.optimizers import param_groups
from bench.techniques.regularization import Regularizer


@register(
    "optimizer",
    "sgd_nesterov_wd",
    "SGD with Nesterov momentum 0.95 (torch.optim.SGD), a fixed recipe",
    lr=Param(float, 0.05, "peak learning rate", positive=True, search=("log", 0.005, 0.5)),
    weight_decay=Param(float, 0.0, "weight decay", low=0.0),
    decay_all=Param(bool, False, "decay every parameter, not only matrices"),
)
def build_sgd_nesterov_wd(model, p, device="cpu"):
    import torch

    return [torch.optim.SGD(param_groups(model, p), lr=p["lr"], momentum=0.95, nesterov=True)]


@register(
    "schedule",
    "cosine_restarts",
    "cosine decay restarted `cycles` times over the run (SGDR without warm restarts' period growth)",
    warmup=Param(int, 0, "linear warmup steps", low=0),
    cycles=Param(int, 2, "number of cosine cycles", low=1),
    # its defining values: the peak at each cycle's start, half way down at each cycle's middle
    promise=lambda p, n: {0: 1.0, n // 4: 0.5, n // 2: 1.0, 3 * n // 4: 0.5},
)
def cosine_restarts(p, t, n):
    period = max(1, n // p["cycles"])
    return 0.5 * (1 + math.cos(math.pi * (t % period) / period))


@register(
    "init",
    "small_normal",
    "every matrix normal(0, std), vectors untouched",
    std=Param(float, 0.01, "std", positive=True),
    promise=lambda name, shape, p, n_layer: p["std"],
)
def small_normal(model, p):
    import torch

    with torch.no_grad():
        for w in model.parameters():
            if w.dim() >= 2:
                w.normal_(0.0, p["std"])


@register(
    "clip",
    "norm_half",
    "clip the global gradient norm to 0.5",
    promise=lambda p: ("global_norm", 0.5),
)
def norm_half(p):
    import torch

    return lambda parameters: torch.nn.utils.clip_grad_norm_(parameters, 0.5, foreach=True)


class GradientNoise(Regularizer):
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015): variance eta / (1 + t)^gamma at step t."""

    def __init__(self, p):
        self.eta, self.gamma, self.t = p["eta"], p["gamma"], 0

    def after_backward(self, run):
        import torch

        std = math.sqrt(self.eta / (1 + self.t) ** self.gamma)
        self.t += 1
        with torch.no_grad():
            for w in run.params:
                w.grad.add_(torch.randn_like(w.grad), alpha=std)


@register(
    "regularization",
    "grad_noise",
    "annealed Gaussian noise added to the gradient (Neelakantan et al. 2015)",
    eta=Param(float, 0.01, "noise variance at step 0", positive=True, search=("log", 1e-4, 0.1)),
    gamma=Param(float, 0.55, "decay exponent of the variance", low=0.0),
)
def grad_noise(p):
    return GradientNoise(p)
