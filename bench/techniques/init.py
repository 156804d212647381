"""Weight initializations, applied in place to a freshly built model (torch.nn.init).

Every scheme but `default` sets biases to zero and LayerNorm gains to one, then initializes every
matrix (linear and embedding weights; the output head is tied to the token embedding).
"""

from __future__ import annotations

import math
from typing import Any

from bench.registry import Param, Registry

INITS = Registry("init", "how the weights start")

STD = Param(float, 0.02, "standard deviation", positive=True, search=("log", 0.005, 0.1))
GAIN = Param(float, 1.0, "gain", positive=True)
NONLINEARITY = Param(str, "linear", "gain for this nonlinearity", choices=("linear", "relu"))


def _matrices(model: Any) -> list[tuple[str, Any]]:
    return [(name, p) for name, p in model.named_parameters() if p.dim() >= 2]


def _reset_vectors(model: Any) -> None:
    import torch

    for name, p in model.named_parameters():
        if p.dim() < 2:
            if name.endswith("bias"):
                torch.nn.init.zeros_(p)
            else:  # LayerNorm gain
                torch.nn.init.ones_(p)


def _is_residual_projection(name: str) -> bool:
    return name.endswith("c_proj.weight")


def _scheme(apply_one):
    def build(model: Any, p: dict) -> None:
        import torch

        with torch.no_grad():
            _reset_vectors(model)
            for name, w in _matrices(model):
                apply_one(torch.nn.init, name, w, p, model)

    return build


def _torch_default_std(name: str, shape: tuple, p: dict, n_layer: int) -> float:
    # nn.Embedding: normal(0, 1); nn.Linear: kaiming_uniform(a=sqrt(5)), bound 1/sqrt(fan_in), std bound/sqrt(3)
    return 1.0 if name.startswith(("wte.", "wpe.")) else 1.0 / math.sqrt(3 * shape[1])


INITS.register("default", "torch's own initialization of each layer, untouched", promise=_torch_default_std)(
    lambda model, p: None
)


def _gpt2(init: Any, name: str, w: Any, p: dict, model: Any) -> None:
    std = p["std"]
    if _is_residual_projection(name):
        std /= math.sqrt(2 * model.config.n_layer)
    init.normal_(w, 0.0, std)


INITS.register(
    "gpt2",
    "normal(0, std); residual projections std/sqrt(2*n_layer) (GPT-2, nanoGPT)",
    std=STD,
    promise=lambda name, shape, p, n_layer: (
        p["std"] / math.sqrt(2 * n_layer) if _is_residual_projection(name) else p["std"]
    ),
)(_scheme(_gpt2))


def _zero_residual(init: Any, name: str, w: Any, p: dict, model: Any) -> None:
    if _is_residual_projection(name):
        init.zeros_(w)
    else:
        init.normal_(w, 0.0, p["std"])


INITS.register(
    "zero_residual",
    "normal(0, std); residual projections zero, so every block starts as the identity",
    std=STD,
    promise=lambda name, shape, p, n_layer: 0.0 if _is_residual_projection(name) else p["std"],
)(_scheme(_zero_residual))


def _glorot(name: str, shape: tuple, p: dict, n_layer: int) -> float:
    return p["gain"] * math.sqrt(2.0 / (shape[0] + shape[1]))  # fan_out = rows, fan_in = columns


def _he(name: str, shape: tuple, p: dict, n_layer: int) -> float:
    return (math.sqrt(2.0) if p["nonlinearity"] == "relu" else 1.0) / math.sqrt(shape[1])


INITS.register("xavier_uniform", "Glorot uniform: var = 2 gain^2 / (fan_in + fan_out)", gain=GAIN, promise=_glorot)(
    _scheme(lambda init, name, w, p, model: init.xavier_uniform_(w, gain=p["gain"]))
)
INITS.register("xavier_normal", "Glorot normal: var = 2 gain^2 / (fan_in + fan_out)", gain=GAIN, promise=_glorot)(
    _scheme(lambda init, name, w, p, model: init.xavier_normal_(w, gain=p["gain"]))
)
INITS.register("kaiming_uniform", "He uniform: var = gain^2 / fan_in", nonlinearity=NONLINEARITY, promise=_he)(
    _scheme(lambda init, name, w, p, model: init.kaiming_uniform_(w, nonlinearity=p["nonlinearity"]))
)
INITS.register("kaiming_normal", "He normal: var = gain^2 / fan_in", nonlinearity=NONLINEARITY, promise=_he)(
    _scheme(lambda init, name, w, p, model: init.kaiming_normal_(w, nonlinearity=p["nonlinearity"]))
)
INITS.register(
    "orthogonal",
    "(semi-)orthogonal matrices times gain (Saxe et al.)",
    gain=GAIN,
    promise=lambda name, shape, p, n_layer: p["gain"] / math.sqrt(max(shape)),  # unit rows (or columns) x gain
)(_scheme(lambda init, name, w, p, model: init.orthogonal_(w, gain=p["gain"])))
