import json
import math

import pytest
import torch

from bench.devices import why_no_cuda
from bench.techniques.regularization import LabelSmoothing, ZLoss
from bench.train import Training, loss_terms, train

NO_CUDA = "needs a CUDA device: " + ("present" if torch.cuda.is_available() else why_no_cuda())


def test_same_config_and_seed_give_identical_curves(tiny):
    cfg = tiny(steps=30, regularization={"dropout": {"p": 0.1}})
    a, b = train(cfg), train(cfg)
    assert a.status == b.status == "complete"
    assert a.curves["train_loss"] == b.curves["train_loss"]
    assert a.curves["val_loss"] == b.curves["val_loss"] and a.final_val_loss == b.final_val_loss
    c = train(cfg.override({"seed": 1}))
    assert c.curves["train_loss"] != a.curves["train_loss"]


def test_record_contents(tiny):
    cfg = tiny(steps=20, target=10.0)
    r = train(cfg)
    assert r.status == "complete" and r.error is None
    assert r.config_hash == cfg.hash and r.config == cfg.to_dict()
    assert r.steps == 20 and r.tokens == 20 * 4 * 64
    assert len(r.curves["train_loss"]) == len(r.curves["grad_norm"]) == len(r.curves["lr"]) == 20
    assert r.curves["val_step"] == [10, 20] and r.final_val_loss == r.curves["val_loss"][-1]
    assert r.best_val_loss == min(r.curves["val_loss"])
    assert r.loss_floor is not None and 0 < r.loss_floor < math.log(8)
    assert r.target_step == 10 and r.target_tokens == 10 * 4 * 64 and r.target_time > 0
    assert r.wall_time >= r.train_time > 0 and r.tokens_per_second > 0 and r.peak_memory_mb > 0
    assert r.cpu_time > 0  # process CPU seconds over the timed steps, beside their wall seconds
    assert r.env["torch"] == torch.__version__ and r.env["threads"] == 1 and r.env["device"] == "cpu"
    json.loads(r.to_json())  # serializable as it is


def test_training_approaches_the_loss_floor(tiny):
    # lr 1e-2 sat at the edge of stability: one trajectory plateaued near 1.64 on an Intel Xeon (bound 1.58)
    # while it reached 1.37 on AMD EPYC. At 1e-3 every evaluation of seeds 0-2 closes 96% of the gap from
    # log(8) to the floor on AMD; the bound asks for half, at every evaluation, over two seeds.
    start = math.log(8)
    for seed in (0, 1):
        r = train(tiny(steps=150, eval_interval=50, seed=seed, optimizer={"name": "adamw", "lr": 1e-3}))
        assert r.curves["val_step"] == [50, 100, 150]
        assert all(v < r.loss_floor + 0.5 * (start - r.loss_floor) for v in r.curves["val_loss"]), r.curves


def test_divergence_ends_the_run_with_its_step(tiny):
    r = train(tiny(steps=60, optimizer={"name": "sgd", "lr": 1e6}, clip="none"))
    assert r.status == "diverged"
    assert 1 <= r.status_step <= 60 and r.steps == r.status_step
    bad = r.curves["train_loss"][r.status_step - 1]
    assert bad is None or bad > 3 * r.curves["train_loss"][0]
    assert all(
        v is not None and v <= 3 * r.curves["train_loss"][0] for v in r.curves["train_loss"][: r.status_step - 1]
    )


def test_divergence_is_noticed_within_a_sync_interval(tiny):
    r = train(tiny(steps=100, eval_interval=100, optimizer={"name": "sgd", "lr": 1e6}, clip="none"))
    assert r.status == "diverged" and r.status_step <= 100


def test_early_stopping_status_and_step(tiny):
    # a learning rate of ~0 never improves: stops after `patience` evaluations past the first
    cfg = tiny(
        steps=100,
        eval_interval=10,
        optimizer={"name": "sgd", "lr": 1e-12},
        regularization={"early_stopping": {"patience": 2, "min_delta": 0.01}},
    )
    r = train(cfg)
    assert r.status == "stopped_early" and r.status_step == 30 and r.steps == 30
    assert r.curves["val_step"] == [10, 20, 30]


def test_failure_is_recorded_with_traceback(tiny, monkeypatch):
    def broken(self):
        raise RuntimeError("a kernel failed")

    monkeypatch.setattr(Training, "step", broken)
    r = train(tiny())
    assert r.status == "failed" and "Traceback" in r.error and "a kernel failed" in r.error and r.steps == 0
    assert "cuda_context_lost" not in r.env  # the CPU has no context to lose


@pytest.mark.parametrize(
    "regularization",
    [
        {"ema": {"decay": 0.9}},
        {"label_smoothing": {"eps": 0.1}},
        {"z_loss": {"coef": 1e-3}},
        {"l2": {"coef": 1e-3}},
    ],
)
def test_regularizers_change_the_run(tiny, regularization):
    plain = train(tiny())
    reg = train(tiny(regularization=regularization))
    assert reg.status == "complete"
    assert reg.final_val_loss != plain.final_val_loss


def test_label_smoothing_objective_is_torchs():
    torch.manual_seed(0)
    logits, y = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    objective, ce = loss_terms(logits, y, [LabelSmoothing({"eps": 0.1}).loss])
    assert torch.allclose(
        objective, torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), label_smoothing=0.1)
    )
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()))
    objective, _ = loss_terms(logits, y, [ZLoss({"coef": 0.5}).loss])
    z = logits.flatten(0, 1).logsumexp(-1).square().mean()
    assert torch.allclose(objective, ce + 0.5 * z)


def test_same_data_seed_same_batches_across_configs(tiny):
    """Paired comparisons: the first step's loss depends on weights and batch, so equal inits + equal
    data seeds give equal first losses across optimizers."""
    a = train(tiny(optimizer="adamw"))
    b = train(tiny(optimizer={"name": "lion"}))
    assert a.curves["train_loss"][0] == b.curves["train_loss"][0]
    c = train(tiny(data_seed=5))
    assert c.curves["train_loss"][0] != a.curves["train_loss"][0]


def test_grad_accumulation_and_token_budget(tiny):
    r = train(tiny(batch_size=2, grad_accum=2, tokens=2 * 2 * 64 * 12, eval_interval=6))
    assert r.status == "complete" and r.steps == 12 and r.tokens == 12 * 256


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
def test_other_positions_train(tiny, positions):
    r = train(tiny(model={"name": "tiny", "positions": positions}))
    assert r.status == "complete" and r.curves["train_loss"][-1] < r.curves["train_loss"][0]


def test_schedule_free_and_muon_train(tiny):
    for opt in ("schedule_free_adamw", "muon"):
        r = train(tiny(optimizer=opt))
        assert r.status == "complete" and r.final_val_loss < math.log(8)


@pytest.mark.device
def test_warmup_steps_are_timed_apart(tiny):
    r = train(tiny(steps=20))
    assert r.warmup_steps == 2 and r.warmup_time > 0
    tokens_per_step = r.tokens // r.steps
    assert r.tokens_per_second == pytest.approx((r.steps - 2) * tokens_per_step / r.train_time)


@pytest.mark.device
def test_records_carry_the_precision_settings(tiny):
    r = train(tiny())
    p = r.env["precision"]
    assert p["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert p["autocast"] == "none" and p["deterministic"] is False
    assert p["sdpa_backend"] in {"flash_attention", "efficient_attention", "math", "cudnn_attention", "overrideable"}
    json.dumps(r.env)  # storable as it is


@pytest.mark.device
def test_deterministic_mode_is_on_for_the_run_only_and_keeps_the_hash(tiny, monkeypatch):
    seen = []
    step = Training.step

    def watching(self):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return step(self)

    monkeypatch.setattr(Training, "step", watching)
    cfg = tiny(deterministic=True)
    r = train(cfg)
    assert r.status == "complete" and set(seen) == {True}
    assert r.env["precision"]["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()
    assert cfg.hash == tiny().hash
    assert math.isclose(r.final_val_loss, train(tiny()).final_val_loss, rel_tol=0, abs_tol=0)  # the CPU agrees


@pytest.mark.device
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_a_tiny_run_on_the_gpu(tiny):
    r = train(tiny(device="cuda", autocast="bf16"))
    assert r.status == "complete" and r.env["device"].startswith("cuda") and r.env["precision"]["driver"]
