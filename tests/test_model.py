import pytest
import torch

from bench.model import GPT, GPTConfig


def make(positions="learned", **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=16, block_size=8, positions=positions, **kw)).eval()


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_shapes_and_causality(positions):
    model = make(positions)
    idx = torch.randint(0, 11, (3, 8))
    logits = model(idx)
    assert logits.shape == (3, 8, 11)
    changed = idx.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 11
    # a token never sees the future: logits before position 5 are unchanged
    assert torch.allclose(model(changed)[:, :5], logits[:, :5], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 5:], logits[:, 5:])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_positions_matter(positions):
    model = make(positions)
    idx = torch.tensor([[1, 2, 3, 4]])
    swapped = torch.tensor([[2, 1, 3, 4]])
    assert not torch.allclose(model(idx)[0, -1], model(swapped)[0, -1], atol=1e-5)


def test_head_is_tied_to_embedding():
    model = make()
    assert model.lm_head.weight is model.wte.weight
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_hidden_matrices_are_block_matrices():
    model = make()
    hidden = model.hidden_matrices()
    assert len(hidden) == 2 * 4  # c_attn, attn c_proj, c_fc, mlp c_proj per block
    assert all(p.dim() == 2 for p in hidden)
    assert all(p is not model.wte.weight for p in hidden)


def test_too_long_input_raises():
    with pytest.raises(ValueError, match="longer than the context"):
        make()(torch.zeros(1, 9, dtype=torch.long))


def test_decoding_methods_agree_where_they_must():
    model = make()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = model.generate(prompt, 12, method="greedy")
    assert greedy.shape == (1, 15) and torch.equal(greedy[:, :3], prompt)  # crops to the context past 8
    top1 = model.generate(prompt, 12, method="sample", top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy, top1)
    beam1 = model.generate(prompt, 12, method="beam", beams=1)
    assert torch.equal(greedy, beam1)


def test_beam_search_finds_at_least_greedys_likelihood():
    model = make()
    prompt = torch.tensor([[4, 5]])

    @torch.no_grad()
    def logprob(seq):
        logp = torch.log_softmax(model(seq[:, :-1]), -1)
        return logp[0, torch.arange(1, seq.size(1) - 1), seq[0, 2:]].sum()

    greedy = model.generate(prompt, 5, method="greedy")
    beam = model.generate(prompt, 5, method="beam", beams=8)
    assert logprob(beam) >= logprob(greedy) - 1e-5


def test_sampling_is_seeded():
    model = make()
    prompt = torch.tensor([[1]])
    a = model.generate(prompt, 10, method="sample", temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 10, method="sample", temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_attention_runs_in_float32_under_cpu_bf16_autocast(monkeypatch):
    """bf16 autocast on the CPU keeps attention in float32 (its bf16 flash-attention backward took five
    times float32's on AVX-512 without AMX); float32 runs pass their tensors through untouched."""
    import bench.model

    seen = []
    real = bench.model.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return real(q, k, v, **kw)

    monkeypatch.setattr(bench.model.F, "scaled_dot_product_attention", spy)
    model = GPT(GPTConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=16, block_size=8))
    idx = torch.randint(0, 11, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)
    assert logits.dtype == torch.bfloat16 and seen == [(torch.float32, False)] * 2
    seen.clear()
    model(idx).sum().backward()
    assert seen == [(torch.float32, False)] * 2
