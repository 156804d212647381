import math

import pytest
import torch

from bench.model import GPT, GPTConfig
from bench.techniques.init import INITS


def initialized(name, **params):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=16, bias=True))
    INITS[name].build(model, INITS[name].resolve(params, "init"))
    return model


def std(t):
    return t.detach().std().item()


def test_gpt2_std_and_scaled_residual_projections():
    model = initialized("gpt2")
    block = model.blocks[0]
    assert std(block.attn.c_attn.weight) == pytest.approx(0.02, rel=0.03)
    assert std(model.wte.weight) == pytest.approx(0.02, rel=0.03)
    assert std(block.mlp.c_proj.weight) == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.03)
    assert std(block.attn.c_proj.weight) == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)
    assert torch.all(block.mlp.c_fc.bias == 0) and torch.all(block.ln_1.weight == 1)


def test_zero_residual_starts_blocks_as_identity():
    model = initialized("zero_residual")
    for block in model.blocks:
        assert torch.all(block.attn.c_proj.weight == 0) and torch.all(block.mlp.c_proj.weight == 0)
    assert std(model.blocks[0].mlp.c_fc.weight) == pytest.approx(0.02, rel=0.03)


@pytest.mark.parametrize(
    ("name", "variance"),
    [
        ("xavier_uniform", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
        ("xavier_normal", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
        ("kaiming_uniform", lambda fan_in, fan_out: 1 / fan_in),
        ("kaiming_normal", lambda fan_in, fan_out: 1 / fan_in),
    ],
)
def test_fan_based_inits_give_their_variance(name, variance):
    w = initialized(name).blocks[1].mlp.c_fc.weight  # (512, 128): fan_in 128, fan_out 512
    assert w.detach().var().item() == pytest.approx(variance(128, 512), rel=0.05)


def test_kaiming_relu_gain():
    w = initialized("kaiming_normal", nonlinearity="relu").blocks[0].mlp.c_fc.weight
    assert w.detach().var().item() == pytest.approx(2 / 128, rel=0.05)


def test_orthogonal_rows_are_orthonormal():
    w = initialized("orthogonal").blocks[0].attn.c_proj.weight.detach()  # square
    assert torch.allclose(w @ w.T, torch.eye(w.size(0)), atol=1e-4)


def test_default_leaves_torch_init():
    model = initialized("default")
    assert std(model.wte.weight) == pytest.approx(1.0, rel=0.05)  # nn.Embedding's N(0, 1)
    bound = 1 / math.sqrt(128)  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert model.blocks[0].mlp.c_fc.weight.abs().max().item() <= bound
