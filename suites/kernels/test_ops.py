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
# Ops whose figure of merit is bandwidth: on a GPU their inputs are cycled through copies that exceed L2.
# Not the embedding: its 65-row table lives in L2 however many copies there are.
MEMORY_BOUND = {"layer_norm", "gelu", "softmax", "cross_entropy"}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("op", list(OPS))
def test_op(benchmark, run_kernel, op, preset, dtype, device):
    benchmark.group = op
    run_kernel(lambda: OPS[op](preset, dtype, device), dtype, leave_l2=op in MEMORY_BOUND)
