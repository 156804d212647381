import pytest
import torch

from bench.techniques.clipping import CLIPPING


def params_with_grads():
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    for p in ps:
        p.grad = torch.randn_like(p) * 10
    return ps


def build(name, **params):
    return CLIPPING[name].build(CLIPPING[name].resolve(params, "clip"))


def global_norm(ps):
    return torch.sqrt(sum((p.grad**2).sum() for p in ps)).item()


def test_none_reports_norm_and_leaves_gradients():
    ps = params_with_grads()
    before = [p.grad.clone() for p in ps]
    norm = build("none")(ps)
    assert norm.item() == pytest.approx(global_norm(ps))
    assert all(torch.equal(a, p.grad) for a, p in zip(before, ps, strict=True))


def test_norm_bounds_the_global_norm_and_returns_the_norm_before():
    ps = params_with_grads()
    before = global_norm(ps)
    norm = build("norm", max_norm=1.0)(ps)
    assert norm.item() == pytest.approx(before) and before > 1
    assert global_norm(ps) == pytest.approx(1.0, rel=1e-4)


def test_value_clamps_every_element():
    ps = params_with_grads()
    build("value", clip_value=0.5)(ps)
    assert all(p.grad.abs().max().item() <= 0.5 for p in ps)


def test_adaptive_clips_each_row_against_its_weight_norm():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))  # row norms 5 and 0 (floored to eps)
    w.grad = torch.tensor([[6.0, 8.0], [0.0, 1.0]])  # row norms 10 and 1
    build("adaptive", clipping=0.1, eps=1e-3)([w])
    # row 0: max 0.1 * 5 = 0.5 -> scaled from 10 to 0.5; row 1: max 0.1 * 1e-3 -> scaled from 1 to 1e-4
    assert torch.allclose(w.grad[0], torch.tensor([0.3, 0.4]))
    assert torch.allclose(w.grad[1], torch.tensor([0.0, 1e-4]))


def test_adaptive_leaves_small_gradients_alone():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    w.grad = torch.tensor([[0.03, 0.04]])  # ratio 0.01 < 0.1
    build("adaptive", clipping=0.1)([w])
    assert torch.allclose(w.grad, torch.tensor([[0.03, 0.04]]))
