"""Any torch optimizer by import path: `optimizer = { class_path = "package.module.Class", lr = 1e-3, ... }`.

The other keys are the class's constructor arguments, typed and checked from its signature (an unknown key
is bad input, listing the allowed ones); the class's own defaults are taken as they are (inf included).
Parameters get the built-ins' groups: weight decay on matrices only unless `decay_all`, where the
constructor takes `weight_decay`. A class whose first argument is a `model` gets the model. An argument
that takes an optimizer class (SAM's `base_optimizer`) is given as an import path, and the wrapped class's
arguments (its `lr`) join the wrapper's. The resolved choice records the classes' distribution and version
(or, for a module no installed distribution provides, a hash of its source file), so the run hash changes
when the code that defines the optimizer does.

What the class's step needs from the training loop is found when the config is read, by trying two steps
on a small layer: a plain step after backward(); a step given a closure that recomputes the loss (LBFGS,
SAM); a step after backward(create_graph=True), for optimizers that differentiate the gradients to
estimate the Hessian (AdaHessian, SophiaH). The loop gives each what it needs (bench.train, LoopNeeds); a
class that can take none of these steps is bad input, with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

from bench import standin
from bench.registry import ConfigError, Entry, Param
from bench.techniques.optimizers import OPTIMIZERS, param_groups

CLASS_PATH = "class_path"  # the choice's name, and the key that holds the import path
OURS = ("class_path", "version", "decay_all")  # keys that are no constructor argument


@dataclass(frozen=True)
class LoopNeeds:
    """What an optimizer's step needs from the training loop beyond gradients. A registered optimizer (or a
    plugin's) declares it as `build.loop_needs = LoopNeeds(...)`; a class_path class is probed."""

    closure: bool = False  # step(closure): the closure clears the gradients, recomputes loss and gradients
    create_graph: bool = False  # backward(create_graph=True): the step differentiates the gradients

    def __str__(self) -> str:
        wants = [w for w, on in (("a closure", self.closure), ("backward(create_graph=True)", self.create_graph)) if on]
        return " and ".join(wants) or "a plain step"


PLAIN = LoopNeeds()
NO_LR = "keeps no `lr` in its parameter groups (it sets its own step size): the schedules scale a learning rate"
PROBES = (PLAIN, LoopNeeds(closure=True), LoopNeeds(create_graph=True), LoopNeeds(closure=True, create_graph=True))


def optimizer_entry(choice: Any) -> Entry:
    """The entry that builds a chosen optimizer: a registered one, or the class a class_path names."""
    if choice.name == CLASS_PATH:
        return class_path_entry(choice[CLASS_PATH], "optimizer", choice.params)
    return OPTIMIZERS[choice.name]


def loop_needs(choice: Any) -> LoopNeeds:
    """What the chosen optimizer's step needs from the loop."""
    needs = getattr(optimizer_entry(choice).build, "loop_needs", PLAIN)
    return needs(choice.params) if callable(needs) else needs


def class_path_entry(path: Any, key: str, given: Any = None) -> Entry:
    """An Entry for the class at `path`: its parameters from the constructor's signature (and, for a wrapper,
    those of the class `given` names for it)."""
    if not isinstance(path, str) or "." not in path.strip("."):
        raise ConfigError(f"{key}.{CLASS_PATH}", f"must be an import path 'package.module.Class', got {path!r}")
    if standin.is_reading():  # results are read without importing the module
        return standin.class_path_entry(path)
    signature = _signature(path, f"{key}.{CLASS_PATH}")
    given = given or {}
    wrapped = tuple((name, given.get(name, default)) for name, default in signature.class_args.items())
    return _class_path_entry(path, key, wrapped)


@dataclass(frozen=True)
class Signature:
    cls: type
    arguments: dict[str, Param]  # the constructor's arguments a TOML value can give
    class_args: dict[str, str | None]  # those that take an optimizer class (by import path) -> the default
    takes: str  # what its first argument takes: "params", "model", or "muon groups" (`use_muon` flags)
    forwards: bool  # it takes **kwargs (a wrapper passes them to the class it wraps)


@functools.cache  # a suite validates its base once per combination: import and inspect the class once
def _signature(path: str, where: str) -> Signature:
    import torch

    cls = import_class(path, where)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(where, f"'{path}' is not a torch.optim.Optimizer subclass (it is {cls!r})")
    signature = read_signature(cls, where)
    parameters = list(signature.parameters.values())[1:]  # self
    takes = "muon groups" if asks_use_muon(cls) else "params"
    if parameters and parameters[0].name == "model":
        takes = "model"
    arguments, class_args = constructor_params(cls, parameters[1:])
    forwards = any(p.kind is p.VAR_KEYWORD for p in parameters)
    return Signature(cls, arguments, class_args, takes, forwards)


@functools.cache
def _class_path_entry(path: str, key: str, wrapped: tuple[tuple[str, Any], ...]) -> Entry:
    where = f"{key}.{CLASS_PATH}"
    sig = _signature(path, where)
    cls, arguments = sig.cls, dict(sig.arguments)
    classes: dict[str, type] = {}
    for name, base_path in wrapped:
        if base_path is None:
            raise ConfigError(f"{key}.{name}", f"is required: the import path of the optimizer class "
                              f"{cls.__name__} wraps, e.g. 'torch.optim.SGD'")  # fmt: skip
        valid = isinstance(base_path, str) and "." in base_path.strip(".")
        base = _signature(base_path, f"{key}.{name}") if valid else None
        if base is None:
            raise ConfigError(f"{key}.{name}", f"must be an import path 'package.module.Class', got {base_path!r}")
        classes[name] = base.cls
        if sig.forwards:  # the wrapper passes its other keyword arguments to the class it wraps
            arguments.update({k: v for k, v in base.arguments.items() if k not in arguments})
    if "lr" not in arguments:
        raise ConfigError(where, f"'{path}' takes no `lr`: the schedules scale a learning rate")
    lr = arguments["lr"]
    if lr.default is None:  # required once the class is known to keep an lr (check, below)
        arguments["lr"] = Param(float, None, "peak learning rate", positive=True, optional=True)
    else:
        arguments["lr"] = Param(float, lr.default, "peak learning rate", positive=True,
                                search=("log", lr.default / 30, lr.default * 30) if lr.default else None)  # fmt: skip
    params = {CLASS_PATH: Param(str, path, "import path of the optimizer class")}
    origins = dict.fromkeys([provenance(cls), *(provenance(c) for c in classes.values())])
    params["version"] = Param(str, "; ".join(origins), "what defined the classes: distribution and version, or hash")
    grouped = "weight_decay" in arguments and sig.takes == "params"  # else the class groups them itself
    if "weight_decay" in arguments:
        wd = arguments["weight_decay"]
        arguments["weight_decay"] = Param(float, float(wd.default or 0.0), "weight decay", low=0.0,
                                          search=("float", 0.0, 0.3))  # fmt: skip
        if grouped:
            params["decay_all"] = Param(bool, False, "decay every parameter, not only matrices")
    for name in classes:
        arguments[name] = Param(str, dict(wrapped)[name], f"import path of the optimizer class {cls.__name__} wraps")
    params.update(arguments)

    def wd(p: dict) -> dict:  # the probe builds the weight-decay groups itself
        return {"weight_decay": p["weight_decay"]} if grouped else {}

    def kwargs_of(p: dict) -> dict:
        kwargs = {k: v for k, v in p.items() if k in arguments and not (grouped and k == "weight_decay")}
        return {**kwargs, **classes}

    def build(model: Any, p: dict, device: str = "cpu") -> list:
        return [cls(parameters_for(model, sig.takes, p if grouped else None), **kwargs_of(p))]

    def needs(p: dict) -> LoopNeeds:
        return probe_step(cls, sig.takes, grouped, tuple(sorted({**kwargs_of(p), **wd(p)}.items())))[0]

    def check(p: dict, key: str) -> None:
        failure = probe_step(cls, sig.takes, grouped, tuple(sorted({**kwargs_of(p), **wd(p)}.items())))[1]
        if failure == NO_LR:
            raise ConfigError(where, f"'{path}' {NO_LR}")
        if failure:
            raise ConfigError(where, f"'{path}' cannot take a step with these arguments: {failure}")
        if p["lr"] is None:
            raise ConfigError(f"{key}.lr", f"is required: {cls.__name__} has no default learning rate, and the "
                              "schedules scale one")  # fmt: skip

    build.loop_needs = needs
    return Entry(CLASS_PATH, f"{path} ({params['version'].default})", params, build, check=check)


@functools.lru_cache(maxsize=256)
def probe_step(cls: type, takes: str, grouped: bool, kwargs: tuple) -> tuple[LoopNeeds, str]:
    """(what two steps of the optimizer on a small layer needed, '' ) or (PLAIN, why none worked). The
    constructor's own checks (nesterov without momentum) and a step no loop can take are bad input before
    any run, not a failed run."""
    import warnings

    import torch

    failures: list[str] = []
    kwargs_dict = dict(kwargs)
    groups = {"weight_decay": kwargs_dict.pop("weight_decay", 0.0), "decay_all": False} if grouped else None
    for needs in PROBES:
        torch.manual_seed(0)
        net = probe_net()
        x = torch.randint(0, 8, (2, 6))

        def loss_fn(net: Any = net, x: torch.Tensor = x) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(net(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())

        try:
            optimizer = cls(parameters_for(net, takes, groups), **kwargs_dict)
        except Exception as e:  # noqa: BLE001 -- whatever the constructor raises, the run would raise too
            return PLAIN, f"{type(e).__name__}: {first_line(e)}"
        if any("lr" not in group for group in optimizer.param_groups):
            return PLAIN, NO_LR

        def closure(optimizer: Any = optimizer, needs: LoopNeeds = needs) -> torch.Tensor:
            with torch.enable_grad():
                optimizer.zero_grad()
                loss = loss_fn()
                loss.backward(create_graph=needs.create_graph)
            return loss.detach()

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # create_graph's reference-cycle warning; probing only
                for _ in range(2):
                    optimizer.zero_grad()
                    loss_fn().backward(create_graph=needs.create_graph)
                    optimizer.step(closure) if needs.closure else optimizer.step()
        except Exception as e:  # noqa: BLE001 -- each way of stepping it is tried in turn
            failures.append(f"{type(e).__name__}: {first_line(e)}")
            continue
        return needs, ""
    plain, with_closure, with_graph = failures[:3]
    if plain == "NotImplementedError: " and hasattr(cls, "fused_backward"):
        return (
            PLAIN,
            "its step() is not implemented: it updates inside its own fused_backward(loss, lr), which "
            "replaces backward and step",
        )
    if "closure" in plain.lower():
        return PLAIN, f"with a closure (it asked for one): {with_closure}"
    if "does not require grad" in plain:
        return PLAIN, f"it needs second-order gradients, backward(create_graph=True), and with them: {with_graph}"
    return PLAIN, plain


def parameters_for(model: Any, takes: str, grouped: dict | None) -> Any:
    """What the constructor's first argument gets: the model, groups flagged `use_muon` (the blocks' matrices
    on Muon, the rest on its AdamW), the built-ins' weight-decay groups, or the parameters."""
    if takes == "model":
        return model
    params = [q for q in model.parameters() if q.requires_grad]
    if takes == "muon groups":
        hidden = {id(q) for q in model.hidden_matrices()}
        return [{"params": [q for q in params if id(q) in hidden], "use_muon": True},
                {"params": [q for q in params if id(q) not in hidden], "use_muon": False}]  # fmt: skip
    return param_groups(model, grouped) if grouped is not None else params


def asks_use_muon(cls: type) -> bool:
    """Whether the constructor reads a `use_muon` flag from each parameter group (pytorch_optimizer's Muon
    family), by its source: nothing else in the signature says so."""
    import torch

    for klass in cls.__mro__:
        if klass is torch.optim.Optimizer:
            break
        if "__init__" in vars(klass):
            try:
                if "use_muon" in inspect.getsource(klass.__init__):
                    return True
            except (OSError, TypeError):
                continue
    return False


@functools.cache
def probe_net_class() -> type:
    import torch
    from torch import nn

    class ProbeNet(nn.Module):
        """The GPT's kinds of parameters in miniature: a tied embedding, layer norms, matrices of two shapes
        with biases; a residual MLP block."""

        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(8, 4)
            self.blocks = nn.ModuleList([nn.LayerNorm(4), nn.Linear(4, 16), nn.Linear(16, 4)])
            self.ln_f = nn.LayerNorm(4)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.wte(idx)
            ln, fc, proj = self.blocks
            x = x + proj(nn.functional.gelu(fc(ln(x))))
            return self.ln_f(x) @ self.wte.weight.T

        def hidden_matrices(self) -> list[nn.Parameter]:
            return [p for p in self.blocks.parameters() if p.dim() == 2]

    return ProbeNet


def probe_net() -> Any:
    return probe_net_class()()


def import_class(path: str, where: str) -> Any:
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 -- any failure to import is bad input, named in one line
        raise ConfigError(where, f"cannot import '{module_name}': {type(e).__name__}: {first_line(e)}") from None
    if not hasattr(module, name):
        raise ConfigError(where, f"module '{module_name}' has no '{name}'")
    return getattr(module, name)


def read_signature(cls: type, where: str) -> inspect.Signature:
    """The constructor's signature, its annotations evaluated where they can be (postponed annotations)."""
    try:
        return inspect.signature(cls.__init__, eval_str=True)
    except (NameError, TypeError, SyntaxError, AttributeError):
        pass
    try:
        return inspect.signature(cls.__init__)
    except (TypeError, ValueError) as e:
        raise ConfigError(where, f"cannot read the constructor's signature of {cls.__name__}: {e}") from None


def constructor_params(
    cls: type, parameters: list[inspect.Parameter]
) -> tuple[dict[str, Param], dict[str, str | None]]:
    """(argument -> Param for the arguments a TOML value can give, argument -> default import path for
    those that take an optimizer class)."""
    out: dict[str, Param] = {}
    class_args: dict[str, str | None] = {}
    for arg in parameters:
        if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        if takes_optimizer_class(arg):
            default = arg.default if arg.default is not arg.empty and isinstance(arg.default, type) else None
            class_args[arg.name] = f"{default.__module__}.{default.__qualname__}" if default else None
            continue
        param = arg_param(cls.__name__, arg)
        if param is not None:  # else a type no TOML value gives (a callable, a tensor): left at its default
            out[arg.name] = param
    return out, class_args


def takes_optimizer_class(arg: inspect.Parameter) -> bool:
    """An argument whose value is an optimizer class (SAM's base_optimizer): `type[Optimizer]`, or a class
    as its default."""
    import torch

    def is_optimizer(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, torch.optim.Optimizer)

    if is_optimizer(arg.default):
        return True
    return any(typing.get_origin(o) is type and any(is_optimizer(a) for a in typing.get_args(o))
               for o in union_options(arg.annotation))  # fmt: skip


def union_options(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation (`str | tuple`, Optional[...]), or the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(o for member in typing.get_args(annotation) for o in union_options(member))
    return (annotation,)


KIND_ORDER = (bool, float, int, tuple, str)  # for an argument defaulting to None: the first kind it admits


def arg_param(owner: str, arg: inspect.Parameter) -> Param | None:
    """A Param for one constructor argument: its kind from the annotation (a union's member that matches
    the default), else from the default's type; None when no TOML value can give it."""
    default = None if arg.default is arg.empty else arg.default
    kinds: dict[type, dict[str, Any]] = {}
    optional = default is None
    for option in union_options(arg.annotation):
        origin = typing.get_origin(option) or option
        if option is type(None) or option is None:
            optional = True
        elif origin is typing.Literal and all(isinstance(v, str) for v in typing.get_args(option)):
            kinds.setdefault(str, {})["choices"] = tuple(typing.get_args(option))
        elif origin in (tuple, list) and numeric_items(option):
            kinds.setdefault(tuple, {})
        elif origin in (bool, int, float, str):
            kinds.setdefault(origin, {})
    if not kinds or arg.annotation is arg.empty:
        kind = value_kind(default)
        if kind is None:
            return None
        kinds = {kind: {}}
    kind = value_kind(default)
    if kind is int and float in kinds and int not in kinds:
        kind = float  # `weight_decay: float = 0`
    if kind not in kinds:
        if default is not None:
            return None  # a default no admitted kind holds (a tuple of tuples): left as it is
        kind = next(k for k in KIND_ORDER if k in kinds)
    if kind is tuple and default is not None:
        default = tuple(float(v) for v in default)
    elif kind is float and default is not None:
        default = float(default)
    if arg.default is arg.empty:
        return Param(kind, None, f"{owner}({arg.name}) has no default: give it", required=True, **kinds[kind])
    return Param(kind, default, f"{owner}({arg.name})", optional=optional and default is None, finite=False,
                 **kinds[kind])  # fmt: skip


def numeric_items(annotation: Any) -> bool:
    """A tuple or list annotation whose items are numbers (`tuple[float, float]`, `tuple[int, ...]`)."""
    items = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    return all(any(o in (int, float) for o in union_options(a)) for a in items)


def value_kind(value: Any) -> type | None:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float | str):
        return type(value) if not isinstance(value, str) else str
    if isinstance(value, tuple | list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return tuple
    return None


def provenance(cls: type) -> str:
    """'<distribution> <version>' of the installed package defining `cls`, else a hash of its source file."""
    from importlib import metadata

    top = cls.__module__.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    try:
        source = inspect.getsourcefile(cls)
        with open(source or "", "rb") as f:
            return "sha256:" + hashlib.sha256(f.read()).hexdigest()[:16]
    except (OSError, TypeError):
        return "unknown"


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""
