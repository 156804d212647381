"""What every entry of every axis must do, checked the same way for built-ins and plugins.

The static check of an entry (its builder's shape, its promise, its required parameters) lives with the axis
table (bench.axes.check_entry): a plugin's entries pass it when the plugin loads. `verify` runs the entry: an
init gives the statistics it promises, a clip bounds what it promises, a regularizer changes what its hooks
say, an optimizer lowers the tiny model's loss, a schedule hits its defining values, a corpus round-trips
its text. tests/test_contracts.py runs `verify` on every entry of every axis, generated from bench.axes.
"""

from __future__ import annotations

import math
from typing import Any

from bench.axes import (
    CLIP_MEASURES,
    STOP_STATUSES,
    BuildClip,
    BuildCorpus,
    BuildInit,
    BuildOptimizer,
    BuildRegularizer,
    ScheduleFactor,
)
from bench.registry import Entry


def verify(axis: Any, entry: Entry) -> None:
    """AssertionError when the entry, run at its default parameters, breaks its axis's contract. Checked at 1
    thread: the tiny model's kernels are too small to share (SGD's 40 steps took 11.6 s at 2 threads, 0.8 s at 1)."""
    from bench.train import torch_threads

    p = {name: param.default for name, param in entry.params.items()}
    with torch_threads(1):
        VERIFY[axis.contract](entry, p)  # by contract, not name: a new axis of an existing kind is checked too


# -- per axis -------------------------------------------------------------------------------------


def _tiny_model(seed: int = 0, **options: Any) -> Any:
    import torch

    from bench.model import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(**{"vocab_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 16, **options}))


def _verify_model(entry: Entry, p: dict[str, Any]) -> None:
    import torch

    from bench.model import GPT, GPTConfig

    small = {**p, "n_layer": min(p["n_layer"], 2), "block_size": min(p["block_size"], 16)}
    model = GPT(GPTConfig(vocab_size=16, **small))
    logits = model(torch.zeros(2, small["block_size"], dtype=torch.long))
    assert logits.shape == (2, small["block_size"], 16), f"{entry.name}: logits of shape {tuple(logits.shape)}"


def _verify_corpus(entry: Entry, p: dict[str, Any], text_file: str | None = None) -> None:
    import torch

    if "path" in p and not p["path"]:
        if text_file is None:
            return  # a corpus of the user's own file: tested with one (tests/test_contracts.py)
        p = {**p, "path": text_file}
    if "length" in p:
        p = {**p, "length": entry.params["length"].low or p["length"]}
    corpus = entry.build(p)
    for split in (corpus.train, corpus.val):
        assert split.dim() == 1 and split.dtype == torch.int64 and len(split) > 0, f"{entry.name}: bad split"
        assert 0 <= int(split.min()) and int(split.max()) < corpus.vocab_size, f"{entry.name}: ids out of vocab"
    ids = corpus.val[:64].tolist()
    assert corpus.encode(corpus.decode(ids)) == ids, f"{entry.name}: decode then encode changes the tokens"


def _verify_optimizer(entry: Entry, p: dict[str, Any]) -> None:
    from bench.config import RunConfig
    from bench.train import Training

    cfg = RunConfig.build({
        "model": "tiny", "data": {"name": "synthetic", "alphabet": 8, "length": 20_000}, "steps": 40,
        "batch_size": 8, "eval_batches": 2, "optimizer": {"name": entry.name}, "schedule": "constant",
        "clip": "none", "init": "gpt2",
    })  # fmt: skip
    run = Training(cfg)
    before = run.evaluate()
    for _ in range(cfg.total_steps):
        run.step()
    after = run.evaluate()
    assert after < before - 0.05, f"{entry.name} at its defaults: validation loss {before:.3f} -> {after:.3f}"


def _verify_schedule(entry: Entry, p: dict[str, Any]) -> None:
    n = 100
    promised = entry.promise(p, n)
    assert promised, f"{entry.name}: its promise names no values"
    for t, value in promised.items():
        got = entry.build(p, t, n)
        assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12), (
            f"{entry.name}: factor {got} at t={t}, promised {value}"
        )
    factors = [entry.build(p, t, n) for t in range(n + 1)]
    assert all(math.isfinite(f) and f >= 0 for f in factors), f"{entry.name}: a negative or non-finite factor"


def _verify_init(entry: Entry, p: dict[str, Any]) -> None:
    import torch

    model = _tiny_model(n_embd=128, vocab_size=256)  # matrices of 2k-64k elements: sample stds within ~2%
    entry.build(model, p)
    checked = 0
    for name, w in model.named_parameters():
        if w.dim() < 2:
            continue
        std = entry.promise(name, tuple(w.shape), p, model.config.n_layer)
        if std is None:
            continue
        checked += 1
        got = w.detach().float().std().item()
        if std == 0:
            assert torch.count_nonzero(w) == 0, f"{entry.name}: {name} promised zero"
        else:
            assert abs(got / std - 1) < 0.1, f"{entry.name}: {name} std {got:.4g}, promised {std:.4g}"
    assert checked, f"{entry.name}: its promise names no matrix"


def _verify_clip(entry: Entry, p: dict[str, Any]) -> None:
    import torch

    from bench.techniques.clipping import total_norm, unitwise_norm

    measure, bound = entry.promise(p)
    assert measure in CLIP_MEASURES, f"{entry.name}: promise measure {measure!r} is not one of {CLIP_MEASURES}"
    model = _tiny_model()
    params = [w for w in model.parameters()]
    torch.manual_seed(1)
    for w in params:
        w.grad = torch.randn_like(w) * 10.0
    before = [w.grad.clone() for w in params]
    expected_norm = total_norm(params).item()
    returned = entry.build(p)(params)
    assert math.isclose(float(returned), expected_norm, rel_tol=1e-4), (
        f"{entry.name}: returns {returned}, not the norm before"
    )
    tol = 1 + 1e-4
    if measure == "global_norm":
        assert total_norm(params).item() <= bound * tol, f"{entry.name}: global norm above {bound}"
    elif measure == "max_abs":
        assert max(w.grad.abs().max().item() for w in params) <= bound * tol, f"{entry.name}: an element above {bound}"
    elif measure == "unit_ratio":
        eps = p.get("eps", 1e-3)
        for w in params:
            dims = tuple(range(1, w.dim())) if w.dim() > 1 else None
            ratio = unitwise_norm(w.grad, dims) / unitwise_norm(w.detach(), dims).clamp_min(eps)
            assert ratio.max().item() <= bound * tol, f"{entry.name}: a unit's gradient/weight ratio above {bound}"
    else:
        assert all(torch.equal(a, w.grad) for a, w in zip(before, params, strict=True)), (
            f"{entry.name}: changed the gradients"
        )


def _verify_regularizer(entry: Entry, p: dict[str, Any]) -> None:
    import torch

    from bench.techniques.regularization import HOOKS, Regularizer, overridden

    reg = entry.build(p)
    assert isinstance(reg, Regularizer), f"{entry.name}: its builder must return a Regularizer"
    hooks = [h for h in HOOKS if overridden([reg], h)]
    assert hooks, f"{entry.name} at its defaults overrides no hook: it would do nothing"
    if "model_options" in hooks:
        options: dict[str, Any] = {}
        reg.model_options(options)
        assert options, f"{entry.name}: model_options changed nothing"
        torch.manual_seed(0)
        model = _tiny_model(**options).train()
        x = torch.randint(0, 16, (4, 16))
        assert not torch.equal(model(x), model(x)), f"{entry.name}: the model's options change no forward pass"
    if "loss" in hooks:
        torch.manual_seed(0)
        logits = torch.randn(32, 16) * 3
        y = torch.randint(0, 16, (32,))
        logp = torch.log_softmax(logits, dim=-1)
        ce = -logp.gather(1, y[:, None]).mean()
        objective = reg.loss(ce, ce, logits, logp)
        assert objective.shape == () and not torch.equal(objective, ce), f"{entry.name}: the loss is unchanged"
    run = _TinyRun()
    reg.setup(run)
    if "after_backward" in hooks:
        before = [w.grad.clone() for w in run.params]
        reg.after_backward(run)
        assert any(not torch.equal(a, w.grad) for a, w in zip(before, run.params, strict=True)), (
            f"{entry.name}: gradients unchanged"
        )
    if "after_step" in hooks or "evaluated_model" in hooks:
        for _ in range(3):
            run.take_step()
            reg.after_step(run)
        evaluated = reg.evaluated_model(run.model)
        assert isinstance(evaluated, torch.nn.Module), f"{entry.name}: evaluated_model must return a module"
        if "evaluated_model" in hooks:
            pairs = zip(evaluated.parameters(), run.model.parameters(), strict=True)
            assert any(not torch.equal(a, b) for a, b in pairs), (
                f"{entry.name}: evaluates the trained weights unchanged"
            )
    if "after_evaluation" in hooks:
        said = [reg.after_evaluation(step, 2.0) for step in range(1, 101)]
        assert all(s is None or s in STOP_STATUSES for s in said), (
            f"{entry.name}: stop statuses allowed: {STOP_STATUSES}"
        )
        assert any(said), f"{entry.name}: never stops a run that never improves"


class _TinyRun:
    """The parts of bench.train.Training a regularizer's hooks may touch, on the tiny model."""

    def __init__(self) -> None:
        import torch

        self.model = _tiny_model()
        self.params = list(self.model.parameters())
        self.matrices = [w for w in self.params if w.dim() >= 2]
        self.optimizer = torch.optim.SGD(self.params, lr=0.1)
        self.take_step(step=False)

    def take_step(self, step: bool = True) -> None:
        import torch

        self.optimizer.zero_grad()
        torch.manual_seed(len(self.params))
        x = torch.randint(0, 16, (4, 16))
        torch.nn.functional.cross_entropy(self.model(x).flatten(0, 1), x.flatten()).backward()
        if step:
            self.optimizer.step()


VERIFY = {
    None: _verify_model,  # entries of parameters only: model presets
    BuildCorpus: _verify_corpus,
    BuildOptimizer: _verify_optimizer,
    ScheduleFactor: _verify_schedule,
    BuildInit: _verify_init,
    BuildClip: _verify_clip,
    BuildRegularizer: _verify_regularizer,
}
