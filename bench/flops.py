"""How many floating-point operations a training step of the GPT does: the one FLOP count that the
training record (`env.step_flops`), the kernel suite and the roofline share.

A step is mostly matrix multiplies: every Linear layer once forward and twice backward (the gradient of
its input and of its weight), plus causal attention, which computes only the T(T+1)/2 scores of its
triangle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MatMul:
    """(M x K) @ (K x N), `count` times per step."""

    m: int
    k: int
    n: int
    count: int
    role: str

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n * self.count


def linear_layers(cfg: Any, vocab_size: int) -> list[tuple[int, int, int]]:
    """(in_features, out_features, layers with that shape) of every Linear in the model of `cfg`."""
    c, layers = cfg.model["n_embd"], cfg.model["n_layer"]
    return [(c, 3 * c, layers), (c, c, layers), (c, 4 * c, layers), (4 * c, c, layers), (c, vocab_size, 1)]


def matmul_shapes(cfg: Any, vocab_size: int) -> list[MatMul]:
    """Every matrix multiply of one training step (one micro-batch): forward, grad of input, grad of weight."""
    tokens = cfg.batch_size * cfg.model["block_size"]
    shapes = []
    for k, n, count in linear_layers(cfg, vocab_size):
        shapes.append(MatMul(tokens, k, n, count, f"forward {k}->{n}"))
        shapes.append(MatMul(tokens, n, k, count, f"grad input {k}->{n}"))
        shapes.append(MatMul(n, tokens, k, count, f"grad weight {k}->{n}"))
    return shapes


def step_flops(cfg: Any, vocab_size: int) -> float:
    """FLOPs of one optimizer step: three times the forward's matmuls and causal attention (only the
    T(T+1)/2 scores it computes)."""
    b, t, c = cfg.batch_size, cfg.model["block_size"], cfg.model["n_embd"]
    attention = causal_attention_flops(b, 1, t, c) * cfg.model["n_layer"]
    return cfg.grad_accum * (sum(mm.flops for mm in matmul_shapes(cfg, vocab_size)) + 3 * attention)


def causal_attention_flops(B: int, H: int, T: int, hd: int) -> float:
    """QK^T and PV over the causal triangle only: T(T+1)/2 scores per head, 2 hd FLOPs each, twice."""
    return 4 * B * H * hd * T * (T + 1) / 2
