"""Model pieces: one block forward, forward+backward, the whole model, every optimizer's step with each of
its implementations, gradient clipping, and the full training step as train() takes it."""

import pytest
import torch

from bench import kernels
from bench.techniques.optimizers import OPTIMIZERS

DTYPES = [torch.float32, torch.bfloat16]
PIECES = {
    "block_forward": kernels.block_forward,
    "block_forward_backward": kernels.block_forward_backward,
    "model_forward_backward": kernels.model_forward_backward,
    "train_step": kernels.train_step,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("piece", list(PIECES))
def test_piece(benchmark, run_kernel, piece, preset, dtype, device):
    benchmark.group = piece
    run_kernel(lambda: PIECES[piece](preset, dtype, device), dtype)


OPTIMIZER_CASES = [(name, impl) for name in OPTIMIZERS.names() for impl in kernels.optimizer_impls(name, "cpu")]


@pytest.mark.parametrize(("optimizer", "impl"), OPTIMIZER_CASES, ids=[f"{n}-{i}" for n, i in OPTIMIZER_CASES])
def test_optimizer_step(benchmark, run_kernel, optimizer, impl, preset, device):
    benchmark.group = f"optimizer_step[{optimizer}]"
    if impl not in kernels.optimizer_impls(optimizer, device):
        pytest.skip(f"torch {torch.__version__} has no {impl} {optimizer} on {device}")
    run_kernel(lambda: kernels.optimizer_step(preset, optimizer, impl, device))


def test_clip_grad_norm(benchmark, run_kernel, preset, device):
    benchmark.group = "clip_grad_norm"
    run_kernel(lambda: kernels.clip_grad_norm(preset, torch.float32, device))
