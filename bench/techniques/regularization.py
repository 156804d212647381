"""Regularizers. Unlike the other axes several combine: a config's `regularization` maps each enabled
regularizer to its parameters, e.g. {dropout = {p = 0.1}, ema = {decay = 0.999}}.

Each entry's builder returns a `Regularizer`: an object whose hooks the training loop calls at fixed points
(bench.train names no regularizer). A regularizer overrides only the hooks it needs; the loop calls only
overridden hooks, so an unused point costs nothing per step. Enabled regularizers run in name order.

Decoupled weight decay is the optimizer's `weight_decay` (torch.optim puts it there); `l2` here is the
coupled form, added to the gradient before the optimizer sees it.
"""

from __future__ import annotations

from typing import Any

from bench.registry import Param, Registry

REGULARIZERS = Registry("regularizer", "what keeps the model from overfitting (several may combine)")


class Regularizer:
    """The hooks, in the order a run meets them. `run` is the bench.train.Training being trained."""

    def model_options(self, options: dict[str, Any]) -> None:
        """Change the GPTConfig fields (dropout) before the model is built."""

    def setup(self, run: Any) -> None:
        """Once the model and optimizers exist (EMA copies the initial weights here)."""

    def loss(self, objective: Any, ce: Any, logits: Any, logp: Any) -> Any:
        """The objective to minimize given the plain cross-entropy `ce`, the (N, vocab) `logits` and their
        float32 log-softmax `logp`; called in name order, each on the previous one's objective."""
        return objective

    def after_backward(self, run: Any) -> None:
        """Gradients are accumulated; clipping and the optimizer step come next."""

    def after_step(self, run: Any) -> None:
        """After the optimizer step (and the schedule's)."""

    def after_evaluation(self, step: int, val_loss: float) -> str | None:
        """After each evaluation: a status to stop the run with (e.g. 'stopped_early'), or None."""
        return None

    def evaluated_model(self, model: Any) -> Any:
        """The weights evaluation and the report use."""
        return model


HOOKS = ("model_options", "setup", "loss", "after_backward", "after_step", "after_evaluation", "evaluated_model")


def overridden(regularizers: list[Regularizer], hook: str) -> list[Any]:
    """The bound `hook` of each regularizer that overrides it: the loop calls these and nothing else."""
    return [getattr(r, hook) for r in regularizers if getattr(type(r), hook) is not getattr(Regularizer, hook)]


class Dropout(Regularizer):
    def __init__(self, p: dict[str, Any]):
        self.p = p["p"]

    def model_options(self, options: dict[str, Any]) -> None:
        options["dropout"] = self.p


class CoupledL2(Regularizer):
    def __init__(self, p: dict[str, Any]):
        self.coef = p["coef"]

    def after_backward(self, run: Any) -> None:
        import torch

        torch._foreach_add_([w.grad for w in run.matrices], run.matrices, alpha=self.coef)


class LabelSmoothing(Regularizer):
    def __init__(self, p: dict[str, Any]):
        self.eps = p["eps"]

    def loss(self, objective: Any, ce: Any, logits: Any, logp: Any) -> Any:
        # the same mixture as F.cross_entropy(label_smoothing=eps); validation loss stays plain cross-entropy
        return (1 - self.eps) * objective - self.eps * logp.mean()


class ZLoss(Regularizer):
    def __init__(self, p: dict[str, Any]):
        self.coef = p["coef"]

    def loss(self, objective: Any, ce: Any, logits: Any, logp: Any) -> Any:
        return objective + self.coef * logits.float().logsumexp(dim=-1).square().mean()


class EarlyStopping(Regularizer):
    def __init__(self, p: dict[str, Any]):
        self.patience, self.min_delta = p["patience"], p["min_delta"]
        self.best, self.stale = float("inf"), 0

    def after_evaluation(self, step: int, val_loss: float) -> str | None:
        if val_loss < self.best - self.min_delta:
            self.best, self.stale = val_loss, 0
            return None
        self.stale += 1
        return "stopped_early" if self.stale >= self.patience else None


class ExponentialMovingAverage(Regularizer):
    """The weights' exponential moving average, as torch.optim.swa_utils.AveragedModel with
    get_ema_multi_avg_fn computes it (the same foreach lerp, so the same numbers), with the update count kept
    in Python: AveragedModel keeps it in a CPU tensor and copies it to the device at every update, a blocking
    host-to-device copy each step."""

    def __init__(self, p: dict[str, Any]):
        self.decay = p["decay"]
        self.module: Any = None
        self.updates = 0

    def setup(self, run: Any) -> None:
        import copy

        self.module = copy.deepcopy(run.model)
        self._averaged = [w.detach() for w in self.module.parameters()]

    def after_step(self, run: Any) -> None:
        self.update_parameters(run.model)

    def update_parameters(self, model: Any) -> None:
        import torch

        with torch.no_grad():
            current = [w.detach() for w in model.parameters()]
            if self.updates == 0:
                torch._foreach_copy_(self._averaged, current)
            else:
                torch._foreach_lerp_(self._averaged, current, 1 - self.decay)
        self.updates += 1

    def evaluated_model(self, model: Any) -> Any:
        return self.module


REGULARIZERS.register(
    "dropout",
    "dropout on embeddings, attention weights and residual branches",
    p=Param(float, 0.1, "drop probability", low=0.0, high=0.9, search=("float", 0.0, 0.3)),
)(Dropout)
REGULARIZERS.register(
    "l2",
    "coupled L2 penalty coef/2*|w|^2 on matrices, added to the gradient (not decoupled decay)",
    coef=Param(float, 1e-4, "penalty coefficient", low=0.0, search=("log", 1e-6, 1e-2)),
)(CoupledL2)
REGULARIZERS.register(
    "label_smoothing",
    "cross-entropy against targets smoothed by eps (validation loss stays plain cross-entropy)",
    eps=Param(float, 0.1, "smoothing", low=0.0, high=1.0, search=("float", 0.0, 0.2)),
)(lambda p: LabelSmoothing(p) if p["eps"] else Regularizer())  # eps 0: plain cross-entropy, as without
REGULARIZERS.register(
    "z_loss",
    "coef * logsumexp(logits)^2 keeps the softmax normalizer near 1 (PaLM)",
    coef=Param(float, 1e-4, "penalty coefficient", low=0.0, search=("log", 1e-6, 1e-2)),
)(lambda p: ZLoss(p) if p["coef"] else Regularizer())
REGULARIZERS.register(
    "early_stopping",
    "stop when validation loss has not improved by min_delta for `patience` evaluations",
    patience=Param(int, 3, "evaluations without improvement", low=1),
    min_delta=Param(float, 0.0, "smallest improvement that counts", low=0.0),
)(EarlyStopping)
REGULARIZERS.register(
    "ema",
    "evaluate an exponential moving average of the weights (AveragedModel's numbers, no per-step host copy)",
    decay=Param(float, 0.99, "EMA decay per step", low=0.0, high=1.0, search=("float", 0.9, 0.9999)),
)(ExponentialMovingAverage)
