"""Regularizers. Unlike the other axes several combine: a config's `regularization` maps each enabled
regularizer to its parameters, e.g. {dropout = {p = 0.1}, ema = {decay = 0.999}}.

Decoupled weight decay is the optimizer's `weight_decay` (torch.optim puts it there); `l2` here is the
coupled form, added to the gradient before the optimizer sees it. train() reads these entries.
"""

from __future__ import annotations

from bench.registry import Param, Registry

REGULARIZERS = Registry("regularizer", "what keeps the model from overfitting (several may combine)")

REGULARIZERS.add(
    "dropout",
    "dropout on embeddings, attention weights and residual branches",
    p=Param(float, 0.1, "drop probability", low=0.0, high=0.9, search=("float", 0.0, 0.3)),
)
REGULARIZERS.add(
    "l2",
    "coupled L2 penalty coef/2*|w|^2 on matrices, added to the gradient (not decoupled decay)",
    coef=Param(float, 1e-4, "penalty coefficient", low=0.0, search=("log", 1e-6, 1e-2)),
)
REGULARIZERS.add(
    "label_smoothing",
    "cross-entropy against targets smoothed by eps (validation loss stays plain cross-entropy)",
    eps=Param(float, 0.1, "smoothing", low=0.0, high=1.0, search=("float", 0.0, 0.2)),
)
REGULARIZERS.add(
    "z_loss",
    "coef * logsumexp(logits)^2 keeps the softmax normalizer near 1 (PaLM)",
    coef=Param(float, 1e-4, "penalty coefficient", low=0.0, search=("log", 1e-6, 1e-2)),
)
REGULARIZERS.add(
    "early_stopping",
    "stop when validation loss has not improved by min_delta for `patience` evaluations",
    patience=Param(int, 3, "evaluations without improvement", low=1),
    min_delta=Param(float, 0.0, "smallest improvement that counts", low=0.0),
)
REGULARIZERS.add(
    "ema",
    "evaluate an exponential moving average of the weights (AveragedModel's numbers, no per-step host copy)",
    decay=Param(float, 0.99, "EMA decay per step", low=0.0, high=1.0, search=("float", 0.9, 0.9999)),
)
