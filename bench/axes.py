"""The one table of axes. Every axis a run varies is declared here once: its registry, its default, whether
one entry is chosen or several combine, whether a search chooses among its entries, the contract its
builders follow (a Protocol) and the static check each entry must pass (`check_entry`; bench.contracts
runs each entry against its contract).

`RunConfig`'s fields and defaults, validation, `optbench list`, search spaces, the store's distributions,
plugins and the contract tests iterate over `AXES`; nothing else lists the axes. A new axis is one `Axis`
here plus its registry module (bench/techniques/), and the point in bench.train where its builder is used.

This module imports nothing heavy: `optbench list` and `--help` stay fast.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bench.registry import Entry, Registry
from bench.techniques.clipping import CLIPPING
from bench.techniques.corpora import CORPORA
from bench.techniques.init import INITS
from bench.techniques.models import MODEL_PARAMS, MODELS
from bench.techniques.optimizers import OPTIMIZERS
from bench.techniques.regularization import REGULARIZERS, Regularizer
from bench.techniques.schedules import SCHEDULES

# -- the builders' contracts ----------------------------------------------------------------------


class BuildOptimizer(Protocol):
    def __call__(self, model: Any, p: dict[str, Any], device: str) -> list[Any]:
        """The torch.optim.Optimizer(s) stepping `model`'s parameters (bench.techniques.optimizers.param_groups
        gives the built-ins' groups: weight decay on matrices unless `decay_all`)."""


class ScheduleFactor(Protocol):
    def __call__(self, p: dict[str, Any], t: int, n: int) -> float:
        """The multiplier of the peak learning rate `t` steps after warmup, of a post-warmup phase of `n` steps.
        Promise: `promise(p, n) -> {t: factor}`, the schedule's defining values."""


class BuildInit(Protocol):
    def __call__(self, model: Any, p: dict[str, Any]) -> None:
        """Initialize the freshly built GPT in place. Promise: `promise(name, shape, p, n_layer) -> std`
        (or None where it promises nothing) for each matrix of the model."""


class BuildClip(Protocol):
    def __call__(self, p: dict[str, Any]) -> Callable[[list[Any]], Any]:
        """A function clipping the parameters' gradients in place and returning their global norm before.
        Promise: `promise(p) -> (measure, bound)`, measure one of CLIP_MEASURES."""


class BuildRegularizer(Protocol):
    def __call__(self, p: dict[str, Any]) -> Any:
        """A bench.techniques.regularization.Regularizer: the hooks it overrides say what it changes."""


class BuildCorpus(Protocol):
    def __call__(self, p: dict[str, Any]) -> Any:
        """A bench.data.Corpus (bench.data.text_corpus tokenizes and splits any text)."""


# What a clip's promise may bound: the global L2 norm of all gradients, each element's absolute value, each
# unit's (row's) gradient norm over max(its weight norm, eps), or nothing.
CLIP_MEASURES = ("global_norm", "max_abs", "unit_ratio", "unbounded")
STOP_STATUSES = ("stopped_early", "diverged")  # what an after_evaluation hook may stop a run with


def check_entry(axis: Axis, entry: Entry) -> None:
    """ValueError when `entry` breaks `axis`'s static contract: the builder's shape, its promise, its
    required parameters (a plugin's entries are checked on load; bench.contracts.verify runs them)."""
    where = f"{axis.name} entry '{entry.name}'"
    missing = [p for p in axis.required_params if p not in entry.params]
    if missing:
        raise ValueError(f"{where} must take parameter(s) {', '.join(missing)}")
    if axis.contract is None:
        if entry.build is not None:
            raise ValueError(f"{where}: {axis.name} entries take parameters only, no builder")
        return
    if not callable(entry.build):
        raise ValueError(f"{where} has no builder (register it as a decorator on a function)")
    wanted = [p for p in inspect.signature(axis.contract.__call__).parameters if p != "self"]
    try:
        inspect.signature(entry.build).bind(*wanted)
    except TypeError:
        raise ValueError(f"{where}: its builder must take ({', '.join(wanted)})") from None
    except ValueError:  # a builtin without a signature: trusted
        pass
    if axis.contract is BuildRegularizer:  # cheap to build: its hooks object must be a Regularizer
        built = entry.build({n: param.default for n, param in entry.params.items()})
        if not isinstance(built, Regularizer):
            raise ValueError(f"{where}: its builder must return a bench.techniques.regularization.Regularizer")
    if axis.promise and not callable(entry.promise):
        doc = inspect.getdoc(axis.contract.__call__) or ""
        said = doc[doc.find("Promise:") :].splitlines()[0] if "Promise:" in doc else ""
        raise ValueError(f"{where} declares no promise=... for its contract test ({said.rstrip('.')})")


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    name: str  # the config key
    registry: Registry
    default: Any  # as a config file writes it: a name, a table with `name`, or {} for a combining axis
    combine: bool = False  # several entries at once (a table of name -> parameters), not one
    searched: bool = False  # `[search] AXIS = "auto"` or a list of names chooses among its entries
    contract: type | None = None  # the Protocol its builders follow; None: entries are parameters only
    promise: bool = False  # each entry declares a promise its contract test checks
    required_params: tuple[str, ...] = ()  # parameters every entry must take
    # False for an axis added after stores exist: a config at its default then hashes as before the axis
    # existed, so adding it orphans no stored run (tests/test_run_hashes.py)
    hashed_at_default: bool = True

    def check(self, entry: Entry) -> None:
        """ValueError when `entry` breaks this axis's contract (a plugin's entries are checked on load)."""
        check_entry(self, entry)


AXES: dict[str, Axis] = {
    axis.name: axis
    for axis in (
        Axis("model", MODELS, "small", required_params=MODEL_PARAMS),
        Axis("data", CORPORA, "synthetic", contract=BuildCorpus),
        Axis(
            "optimizer",
            OPTIMIZERS,
            {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.1},
            searched=True,
            contract=BuildOptimizer,
            required_params=("lr",),
        ),
        Axis(
            "schedule",
            SCHEDULES,
            "warmup_cosine",
            searched=True,
            contract=ScheduleFactor,
            promise=True,
            required_params=("warmup",),
        ),  # fmt: skip
        Axis("init", INITS, "gpt2", searched=True, contract=BuildInit, promise=True),
        Axis("clip", CLIPPING, {"name": "norm", "max_norm": 1.0}, searched=True, contract=BuildClip, promise=True),
        Axis("regularization", REGULARIZERS, {}, combine=True, contract=BuildRegularizer),
    )
}

CHOICE_AXES: dict[str, Registry] = {a.name: a.registry for a in AXES.values() if not a.combine}
SEARCHED_AXES: tuple[str, ...] = tuple(a.name for a in AXES.values() if a.searched)


def register(
    axis: str, name: str, description: str, *, promise: Callable[..., Any] | None = None, **params: Any
) -> Callable:
    """The public way to add an entry on any axis, as the built-ins do: a decorator on its builder.

    @register("schedule", "halving", "halves the rate every `every` steps", every=Param(int, 100, "steps"),
              warmup=Param(int, 0, "linear warmup steps", low=0), promise=lambda p, n: {0: 1.0, 100: 0.5})
    def halving(p, t, n):
        return 0.5 ** (t // p["every"])
    """
    if axis not in AXES:
        from bench.registry import unknown

        raise ValueError(unknown("axis", axis, list(AXES)))
    return AXES[axis].registry.register(name, description, promise=promise, **params)
