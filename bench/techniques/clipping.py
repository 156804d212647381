"""Gradient clipping: name -> builder(params) -> clip(parameters) -> total gradient norm before clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.registry import Param, Registry

CLIPPING = Registry("clip", "how large gradients are tamed")

Clipper = Callable[[list], Any]


def total_norm(parameters: list) -> Any:
    import torch

    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, foreach=True)


CLIPPING.register(
    "none", "no clipping (the gradient norm is still recorded)", promise=lambda p: ("unbounded", float("inf"))
)(lambda p: total_norm)


@CLIPPING.register(
    "norm",
    "rescale the whole gradient to a global L2 norm of at most max_norm (clip_grad_norm_)",
    max_norm=Param(float, 1.0, "largest global norm", positive=True, search=("log", 0.1, 10.0)),
    promise=lambda p: ("global_norm", p["max_norm"]),
)
def build_norm(p: dict) -> Clipper:
    import torch

    return lambda parameters: torch.nn.utils.clip_grad_norm_(parameters, p["max_norm"], foreach=True)


@CLIPPING.register(
    "value",
    "clamp every gradient element to [-clip_value, clip_value] (clip_grad_value_)",
    clip_value=Param(float, 1.0, "largest absolute element", positive=True),
    promise=lambda p: ("max_abs", p["clip_value"]),
)
def build_value(p: dict) -> Clipper:
    import torch

    def clip(parameters: list) -> Any:
        norm = total_norm(parameters)
        torch.nn.utils.clip_grad_value_(parameters, p["clip_value"], foreach=True)
        return norm

    return clip


@CLIPPING.register(
    "adaptive",
    "unit-wise adaptive clipping (AGC, Brock et al. 2021): |g_i| <= clipping * max(|w_i|, eps) per row",
    clipping=Param(float, 0.01, "largest gradient/weight norm ratio", positive=True, search=("log", 1e-3, 0.1)),
    eps=Param(float, 1e-3, "floor on the weight norm", positive=True),
    promise=lambda p: ("unit_ratio", p["clipping"]),
)
def build_adaptive(p: dict) -> Clipper:
    import torch

    def clip(parameters: list) -> Any:
        norm = total_norm(parameters)
        with torch.no_grad():
            for w in parameters:
                if w.grad is None:
                    continue
                g = w.grad
                dims = tuple(range(1, w.dim())) if w.dim() > 1 else None  # unit = row; a vector is one unit
                w_norm = unitwise_norm(w, dims).clamp_min(p["eps"])
                g_norm = unitwise_norm(g, dims)
                max_norm = p["clipping"] * w_norm
                scale = torch.where(g_norm > max_norm, max_norm / g_norm.clamp_min(1e-6), torch.ones_like(g_norm))
                g.mul_(scale)
        return norm

    return clip


def unitwise_norm(x: Any, dims: tuple | None) -> Any:
    if dims is None:
        return x.norm()
    return x.norm(dim=dims, keepdim=True)
