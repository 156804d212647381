"""Optimizers: name -> builder(model, params, device) -> list of torch optimizers.

Every entry takes `lr`, `weight_decay`, `decay_all` (weight decay on every parameter instead of only
those with 2 or more dimensions, as nanoGPT) and, where it has several, `impl` (for-loop, foreach or fused
kernels).
Most entries are torch.optim; Lion and schedule-free AdamW come from their authors' packages.
"""

from __future__ import annotations

from typing import Any

from bench.machine import FUSED, fused_available, impl_choice
from bench.registry import Param, Registry

OPTIMIZERS = Registry("optimizer", "the update rule")

BETAS = Param(tuple, (0.9, 0.999), "(beta1, beta2)", length=2, low=0.0, high=1.0)
EPS = Param(float, 1e-8, "denominator epsilon", positive=True)
IMPLS = ("auto", "forloop", "foreach", "fused")


def _common(lr: float, weight_decay: float = 0.0, impls: tuple[str, ...] | None = IMPLS, **params: Param) -> dict:
    """The parameters every optimizer takes; `impls=None` for one with a single implementation (no `impl`)."""
    return {
        "lr": Param(float, lr, "peak learning rate", positive=True, search=("log", lr / 30, lr * 30)),
        "weight_decay": Param(float, weight_decay, "weight decay", low=0.0, search=("float", 0.0, 0.3)),
        "decay_all": Param(bool, False, "decay every parameter, not only matrices"),
        **({"impl": Param(str, "auto", "kernel implementation", choices=impls)} if impls else {}),
        **params,
    }


def param_groups(model: Any, p: dict) -> list[dict]:
    """Weight decay on parameters with 2 or more dimensions only, unless decay_all (nanoGPT's rule)."""
    params = [q for q in model.parameters() if q.requires_grad]
    if p["decay_all"]:
        return [{"params": params, "weight_decay": p["weight_decay"]}]
    decay = [q for q in params if q.dim() >= 2]
    no_decay = [q for q in params if q.dim() < 2]
    return [{"params": decay, "weight_decay": p["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]


def impl_kwargs(cls_name: str, impl: str, device: str, n_params: int = 0) -> dict:
    """Keyword arguments that select the kernels; 'auto' takes this machine's calibrated choice for the
    model's size (bench.machine), else fused where torch has it on this device, else foreach."""
    device_type = device.split(":")[0]
    if impl == "auto":
        import torch

        impl = impl_choice(cls_name, impl, device, n_params, torch.get_num_threads()).value
        if impl == "fused" and not (cls_name in FUSED and fused_available(cls_name, device_type)):
            impl = "foreach"
    if impl == "fused":
        if cls_name not in FUSED:
            raise ValueError(f"torch.optim.{cls_name} has no fused implementation")
        if not fused_available(cls_name, device_type):
            raise ValueError(f"torch.optim.{cls_name}(fused=True) does not run on {device_type} in this torch")
        return {"fused": True}
    return {"foreach": impl == "foreach"}


def _torch(cls_name: str, **fixed: Any):
    def build(model: Any, p: dict, device: str = "cpu") -> list:
        import torch

        cls = getattr(torch.optim, cls_name)
        kwargs = {k: v for k, v in p.items() if k not in ("weight_decay", "decay_all", "impl")}
        kwargs.update(fixed)
        kwargs.update(impl_kwargs(cls_name, p["impl"], device, sum(q.numel() for q in model.parameters())))
        return [cls(param_groups(model, p), **kwargs)]

    build.torch_class = cls_name  # the kernel suite asks which implementations torch has for it
    return build


OPTIMIZERS.register("sgd", "plain stochastic gradient descent (torch.optim.SGD)", **_common(0.1))(_torch("SGD"))
OPTIMIZERS.register(
    "momentum",
    "SGD with heavy-ball momentum (torch.optim.SGD)",
    **_common(0.05, momentum=Param(float, 0.9, "momentum", low=0.0, high=1.0, search=("float", 0.8, 0.99))),
)(_torch("SGD"))
OPTIMIZERS.register(
    "nesterov",
    "SGD with Nesterov momentum (torch.optim.SGD)",
    # > 0: torch refuses Nesterov without momentum
    **_common(0.05, momentum=Param(float, 0.9, "momentum", positive=True, high=1.0, search=("float", 0.8, 0.99))),
)(_torch("SGD", nesterov=True))
OPTIMIZERS.register(
    "adam", "Adam, L2 coupled into the gradient (torch.optim.Adam)", **_common(1e-3, betas=BETAS, eps=EPS)
)(_torch("Adam"))
OPTIMIZERS.register(
    "adamw",
    "Adam with decoupled weight decay (torch.optim.AdamW)",
    **_common(1e-3, 0.01, betas=BETAS, eps=EPS),
)(_torch("AdamW"))
OPTIMIZERS.register(
    "nadam",
    "Adam with Nesterov momentum, decoupled weight decay (torch.optim.NAdam)",
    **_common(1e-3, betas=BETAS, eps=EPS, momentum_decay=Param(float, 4e-3, "momentum decay psi", low=0.0)),
)(_torch("NAdam", decoupled_weight_decay=True))
OPTIMIZERS.register(
    "radam",
    "rectified Adam, decoupled weight decay (torch.optim.RAdam)",
    **_common(1e-3, betas=BETAS, eps=EPS),
)(_torch("RAdam", decoupled_weight_decay=True))
OPTIMIZERS.register(
    "rmsprop",
    "RMSprop (torch.optim.RMSprop)",
    **_common(
        1e-3,
        impls=("auto", "forloop", "foreach"),
        alpha=Param(float, 0.99, "squared-gradient smoothing", low=0.0, high=1.0),
        eps=EPS,
        momentum=Param(float, 0.0, "momentum", low=0.0, high=1.0),
        centered=Param(bool, False, "normalize by the gradient's variance"),
    ),
)(_torch("RMSprop"))
OPTIMIZERS.register(
    "adagrad",
    "Adagrad (torch.optim.Adagrad)",
    **_common(1e-2, eps=Param(float, 1e-10, "denominator epsilon", positive=True)),
)(_torch("Adagrad"))
OPTIMIZERS.register(
    "adafactor",
    "Adafactor, factored second moments (torch.optim.Adafactor)",
    **_common(
        1e-2,
        impls=("auto", "forloop", "foreach"),
        beta2_decay=Param(float, -0.8, "decay exponent of beta2", high=0.0),
        d=Param(float, 1.0, "update clipping threshold", low=1.0),  # torch refuses d < 1
    ),
)(_torch("Adafactor"))


@OPTIMIZERS.register(
    "lion",
    "Lion, sign of interpolated momentum (Chen et al. 2023; lion-pytorch)",
    **_common(
        1e-4,
        impls=None,  # lion-pytorch has one implementation on the CPU (its triton kernel is CUDA-only)
        betas=Param(tuple, (0.9, 0.99), "(beta1, beta2)", length=2, low=0.0, high=1.0),
    ),
)
def build_lion(model: Any, p: dict, device: str = "cpu") -> list:
    from lion_pytorch import Lion

    return [Lion(param_groups(model, p), lr=p["lr"], betas=p["betas"])]


@OPTIMIZERS.register(
    "muon",
    "Muon on hidden matrices (torch.optim.Muon), AdamW on embeddings, norms and biases",
    **_common(
        1e-3,
        0.1,
        impls=("auto", "forloop", "foreach"),
        momentum=Param(float, 0.95, "Muon momentum", low=0.0, high=1.0, search=("float", 0.85, 0.99)),
        nesterov=Param(bool, True, "Nesterov momentum in Muon"),
        ns_steps=Param(int, 5, "Newton-Schulz iterations", low=1),
        betas=Param(tuple, (0.9, 0.95), "AdamW (beta1, beta2) for the other parameters", length=2, low=0.0, high=1.0),
    ),
)
def build_muon(model: Any, p: dict, device: str = "cpu") -> list:
    import torch

    hidden = {id(q) for q in model.hidden_matrices()}
    others = [
        {"params": [q for q in g["params"] if id(q) not in hidden], "weight_decay": g["weight_decay"]}
        for g in param_groups(model, p)
    ]
    # match_rms_adamw scales Muon's update to AdamW's RMS, so one learning rate serves both halves.
    muon = torch.optim.Muon(
        [q for q in model.parameters() if id(q) in hidden],
        lr=p["lr"],
        weight_decay=p["weight_decay"],
        momentum=p["momentum"],
        nesterov=p["nesterov"],
        ns_steps=p["ns_steps"],
        adjust_lr_fn="match_rms_adamw",
    )
    adamw = torch.optim.AdamW(
        [g for g in others if g["params"]],
        lr=p["lr"],
        betas=p["betas"],
        **impl_kwargs("AdamW", p["impl"], device, sum(q.numel() for q in model.parameters())),
    )
    return [muon, adamw]


@OPTIMIZERS.register(
    "schedule_free_adamw",
    "schedule-free AdamW (Defazio et al. 2024; schedulefree): evaluates at the averaged weights",
    **_common(
        2.5e-3,
        impls=("auto", "forloop", "foreach"),
        betas=BETAS,
        eps=EPS,
        r=Param(float, 0.0, "polynomial weighting power of the average", low=0.0),
        weight_lr_power=Param(float, 2.0, "learning-rate power in the average's weights", low=0.0),
    ),
)
def build_schedule_free_adamw(model: Any, p: dict, device: str = "cpu") -> list:
    from schedulefree import AdamWScheduleFree

    opt = AdamWScheduleFree(
        param_groups(model, p),
        lr=p["lr"],
        betas=p["betas"],
        eps=p["eps"],
        r=p["r"],
        weight_lr_power=p["weight_lr_power"],
        foreach=p["impl"] != "forloop",
    )
    opt.train()  # schedule-free optimizers start in eval mode; train() moves the weights to y
    return [opt]
