import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.model import GPT, GPTConfig
from bench.registry import Choice
from bench.techniques.optimizers import OPTIMIZERS, param_groups


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=16, n_layer=1, n_head=2, n_embd=32, block_size=16))


def resolved(name, **params):
    return OPTIMIZERS[name].resolve(params, "optimizer")


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_lowers_the_loss_in_a_few_steps(name):
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 16, (8, 16), generator=gen)
    y = torch.roll(x, -1, dims=1)  # a learnable target: the next token of the same sequence
    optimizers = OPTIMIZERS[name].build(model, resolved(name), "cpu")
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_weight_decay_only_on_matrices_unless_decay_all():
    model = tiny_model()
    groups = param_groups(model, resolved("adamw", weight_decay=0.1))
    decayed, plain = groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() < 2 for p in plain["params"]) and plain["params"]
    (everything,) = param_groups(model, resolved("adamw", weight_decay=0.1, decay_all=True))
    assert len(everything["params"]) == len(list(model.parameters()))


def test_impl_selects_kernels():
    model = tiny_model()
    (fused,) = OPTIMIZERS["adamw"].build(model, resolved("adamw", impl="fused"))
    (loop,) = OPTIMIZERS["adamw"].build(model, resolved("adamw", impl="forloop"))
    assert fused.defaults["fused"] is True and loop.defaults["foreach"] is False
    with pytest.raises(ValueError, match="no fused"):
        OPTIMIZERS["nadam"].build(model, resolved("nadam", impl="fused"))


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    model = tiny_model()
    muon, adamw = OPTIMIZERS["muon"].build(model, resolved("muon"))
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_ids = {id(p) for g in muon.param_groups for p in g["params"]}
    adamw_ids = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert muon_ids == {id(p) for p in model.hidden_matrices()}
    assert muon_ids.isdisjoint(adamw_ids) and len(muon_ids | adamw_ids) == len(list(model.parameters()))


def test_lion_matches_the_published_update_rule():
    """Chen et al. 2023, Alg. 2: c = b1 m + (1-b1) g; p -= lr (sign(c) + wd p); m = b2 m + (1-b2) g."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    from lion_pytorch import Lion

    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    ref_p, ref_m = [1.0, -2.0], [0.0, 0.0]
    for grad in ([0.5, 0.3], [-1.0, 0.01], [0.2, -0.4]):
        p.grad = torch.tensor(grad)
        opt.step()
        for i, g in enumerate(grad):
            c = 0.9 * ref_m[i] + 0.1 * g
            ref_p[i] = ref_p[i] - 0.1 * ((c > 0) - (c < 0) + 0.5 * ref_p[i])
            ref_m[i] = 0.99 * ref_m[i] + 0.01 * g
        assert torch.allclose(p.detach(), torch.tensor(ref_p), atol=1e-6)


def test_schedule_free_adamw_matches_the_published_update_rule():
    """Defazio et al. 2024, Alg. 1 (as in the authors' reference code: bias correction on v, weights lr^2):
    y = (1-b1) z + b1 x;  v = b2 v + (1-b2) g(y)^2;  z -= lr (g / (sqrt(v/(1-b2^t)) + eps) + wd y);
    x = (1 - c) x + c z with c = 1/t for a constant learning rate."""
    a, b = 3.0, 0.5  # f(w) = a/2 (w - b)^2
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-8, 0.01

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([[2.0]]))

    module = One()
    (opt,) = OPTIMIZERS["schedule_free_adamw"].build(
        module, resolved("schedule_free_adamw", lr=lr, betas=[b1, b2], eps=eps, weight_decay=wd)
    )
    x = z = 2.0
    v = 0.0
    for t in range(1, 6):
        y = (1 - b1) * z + b1 * x
        assert math.isclose(module.w.item(), y, rel_tol=1e-5)  # training weights sit at y
        loss = 0.5 * a * (module.w - b).pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        g = a * (y - b)
        v = b2 * v + (1 - b2) * g * g
        z = z - lr * (g / (math.sqrt(v / (1 - b2**t)) + eps) + wd * y)
        c = 1.0 / t
        x = (1 - c) * x + c * z
    opt.eval()  # evaluation weights are the average x
    assert math.isclose(module.w.item(), x, rel_tol=1e-5)


def test_every_optimizer_declares_lr_and_weight_decay():
    for entry in OPTIMIZERS:
        if "plugin" in entry.params:
            continue  # a plugin's entry (tests/test_plugins.py registers some in this process) keeps its own rules
        assert {"lr", "weight_decay", "decay_all"} <= set(entry.params)
        # `impl` only where the builder honours it: Lion's single implementation had one it ignored
        assert ("impl" in entry.params) == (entry.name != "lion")
        assert entry.params["lr"].default > 0 and entry.description


def test_choice_round_trip():
    c = Choice.of("adamw", resolved("adamw"))
    assert c.to_dict()["name"] == "adamw" and c["lr"] == 1e-3


def _edges(param):
    """The values at the edges of a number parameter's allowed range (positive ones: just above 0)."""
    if param.kind not in (int, float):
        return [param.default]
    low = param.low if param.low is not None else (1e-9 if param.positive else None)
    return [param.kind(v) for v in (low, param.high) if v is not None] or [param.default]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(OPTIMIZERS.names()), st.data())
def test_every_optimizer_steps_at_the_edges_of_its_parameters(name, data):
    # before: nesterov accepted momentum = 0 and adafactor d < 1, which torch refuses when the run starts
    entry = OPTIMIZERS[name]
    params = {n: data.draw(st.sampled_from(_edges(p)), label=n) for n, p in entry.params.items() if n != "impl"}
    model = tiny_model()
    x = torch.randint(0, 16, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    for opt in entry.build(model, entry.resolve(params, "optimizer"), "cpu"):
        opt.step()
