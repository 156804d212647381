"""bench.flops: a training step's FLOPs and the matmuls it runs, against the kernel suite's count and
torch.profiler's record of a real step."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

from bench import flops, kernels
from bench.train import Training
from conftest import tiny_config


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["tiny", "small", "base"]), st.integers(1, 64))
def test_step_flops_agree_with_the_kernel_suites_count(preset, batch):
    cfg = tiny_config(model=preset, batch_size=batch)
    shape = {**kernels.shape(preset), "B": batch}
    assert flops.step_flops(cfg, kernels.VOCAB) == pytest.approx(kernels._model_flops(shape))


@pytest.mark.parametrize("values", [{}, {"model.n_layer": 3, "batch_size": 3}, {"model.n_embd": 32}])
def test_matmul_shapes_are_the_matmuls_a_step_runs(tiny, values):
    """torch.profiler's mm calls of one Training.step: the same count and FLOPs as matmul_shapes says."""
    run = Training(tiny(**values))
    run.step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run.step()
    ran = []
    for event in prof.events():
        if event.name in ("aten::mm", "aten::addmm"):
            a, b = event.input_shapes[-2:]
            ran.append(2 * a[0] * a[1] * b[1])
    shapes = flops.matmul_shapes(run.cfg, run.corpus.vocab_size)
    assert len(ran) == sum(mm.count for mm in shapes)
    assert sum(ran) == sum(mm.flops for mm in shapes)


@settings(max_examples=50, deadline=None)
@given(T=st.integers(1, 24), hd=st.integers(1, 8), B=st.integers(1, 3), H=st.integers(1, 3))
def test_causal_attention_flops_count_the_triangle(T, hd, B, H):
    pairs = sum(1 for i in range(T) for j in range(T) if j <= i)  # scores the causal mask keeps
    assert flops.causal_attention_flops(B, H, T, hd) == B * H * pairs * 2 * hd * 2
    q = torch.zeros(B, H, T, hd)
    assert kernels._attention_work(q)[0] == flops.causal_attention_flops(B, H, T, hd)
