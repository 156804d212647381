"""bench.techniques.regularization: regularizers as objects whose hooks the training loop calls; EMA as
torch's own averaged model, with no host copy per step."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.train import Training


@pytest.mark.device
@settings(max_examples=20, deadline=None)
@given(decay=st.floats(0.5, 0.9999), updates=st.integers(1, 6), seed=st.integers(0, 1000))
def test_ema_matches_averaged_model(decay, updates, seed):
    from types import SimpleNamespace

    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from bench.techniques.regularization import ExponentialMovingAverage

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    ours = ExponentialMovingAverage({"decay": decay})
    ours.setup(SimpleNamespace(model=model))
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    for _ in range(updates):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ours.update_parameters(model)
        theirs.update_parameters(model)
    for a, b in zip(ours.module.parameters(), theirs.module.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.device
def test_ema_update_makes_no_host_to_device_copy(tiny, monkeypatch):
    run = Training(tiny(regularization={"ema": {"decay": 0.9}}))
    run.step()
    copies = []
    to = torch.Tensor.to

    def counting(self, *args, **kwargs):
        copies.append(args)
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting)
    for hook in run.after_step:  # the EMA's update
        hook(run)
    assert copies == []
