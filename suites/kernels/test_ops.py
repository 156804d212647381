"""Single operators at the model presets' shapes: matmul, attention, norms, activations, losses, lookups."""

import pytest
import torch

from bench import kernels

DTYPES = [torch.float32, torch.bfloat16]
OPS = {
    "linear": kernels.linear,
    "attention_sdpa": kernels.attention_sdpa,
    "attention_explicit": kernels.attention_explicit,
    "layer_norm": kernels.layer_norm,
    "gelu": kernels.gelu,
    "softmax": kernels.softmax,
    "cross_entropy": kernels.cross_entropy,
    "embedding": kernels.embedding,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("op", list(OPS))
def test_op(benchmark, run_kernel, op, preset, dtype, device):
    benchmark.group = op
    run_kernel(OPS[op](preset, dtype, device), dtype)
