"""Any torch optimizer by import path: `optimizer = { class_path = "package.module.Class", lr = 1e-3, ... }`.

The other keys are the class's constructor arguments, typed and checked from its signature (an unknown key
is bad input, listing the allowed ones). Parameters get the built-ins' groups: weight decay on matrices
only unless `decay_all`, where the constructor takes `weight_decay`. The resolved choice records the class's
distribution and version (or, for a module no installed distribution provides, a hash of its source file),
so the run hash changes when the code that defines the optimizer does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import typing
from typing import Any

from bench import standin
from bench.registry import ConfigError, Entry, Param
from bench.techniques.optimizers import OPTIMIZERS, param_groups

CLASS_PATH = "class_path"  # the choice's name, and the key that holds the import path
OURS = ("class_path", "version", "decay_all")  # keys that are no constructor argument


def optimizer_entry(choice: Any) -> Entry:
    """The entry that builds a chosen optimizer: a registered one, or the class a class_path names."""
    if choice.name == CLASS_PATH:
        return class_path_entry(choice[CLASS_PATH], "optimizer")
    return OPTIMIZERS[choice.name]


def class_path_entry(path: Any, key: str) -> Entry:
    """An Entry for the class at `path`: its parameters from the constructor's signature."""
    if not isinstance(path, str) or "." not in path.strip("."):
        raise ConfigError(f"{key}.{CLASS_PATH}", f"must be an import path 'package.module.Class', got {path!r}")
    if standin.is_reading():  # results are read without importing the module
        return standin.class_path_entry(path)
    return _class_path_entry(path, key)


@functools.cache  # a suite validates its base once per combination: import and inspect the class once
def _class_path_entry(path: str, key: str) -> Entry:
    import torch

    where = f"{key}.{CLASS_PATH}"
    cls = import_class(path, where)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(where, f"'{path}' is not a torch.optim.Optimizer subclass (it is {cls!r})")
    arguments = constructor_params(cls, where)
    if "lr" not in arguments:
        raise ConfigError(where, f"'{path}' takes no `lr`: the schedules scale a learning rate")
    lr = arguments["lr"]
    arguments["lr"] = Param(float, lr.default, "peak learning rate", positive=True,
                            search=("log", lr.default / 30, lr.default * 30) if lr.default else None)  # fmt: skip
    params = {CLASS_PATH: Param(str, path, "import path of the optimizer class")}
    params["version"] = Param(str, provenance(cls), "what defined the class: distribution and version, or hash")
    if "weight_decay" in arguments:
        wd = arguments["weight_decay"]
        arguments["weight_decay"] = Param(float, float(wd.default or 0.0), "weight decay", low=0.0,
                                          search=("float", 0.0, 0.3))  # fmt: skip
        params["decay_all"] = Param(bool, False, "decay every parameter, not only matrices")
    params.update(arguments)

    def build(model: Any, p: dict, device: str = "cpu") -> list:
        kwargs = {k: v for k, v in p.items() if k in arguments and k != "weight_decay"}
        if "weight_decay" in arguments:
            return [cls(param_groups(model, p), **kwargs)]
        return [cls([q for q in model.parameters() if q.requires_grad], **kwargs)]

    def check(p: dict, key: str) -> None:
        kwargs = {k: v for k, v in p.items() if k in arguments}
        failure = first_step_failure(cls, tuple(sorted(kwargs.items())))
        if failure:
            raise ConfigError(where, f"'{path}' cannot take a step with these arguments: {failure}")

    return Entry(CLASS_PATH, f"{path} ({params['version'].default})", params, build, check=check)


@functools.lru_cache(maxsize=256)
def first_step_failure(cls: type, kwargs: tuple) -> str:
    """What constructing the optimizer on one small matrix and taking a step raised ('' if nothing): the
    constructor's own checks (nesterov without momentum) and a step the loop cannot take (LBFGS wants a
    closure) are bad input before any run, not a failed run."""
    import torch

    weight = torch.nn.Parameter(torch.ones(2, 2))
    try:
        optimizer = cls([weight], **dict(kwargs))
        weight.grad = torch.full_like(weight, 0.1)
        optimizer.step()
    except Exception as e:  # noqa: BLE001 -- whatever it raises, the run would raise too
        return f"{type(e).__name__}: {first_line(e)}"
    return ""


def import_class(path: str, where: str) -> Any:
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 -- any failure to import is bad input, named in one line
        raise ConfigError(where, f"cannot import '{module_name}': {type(e).__name__}: {first_line(e)}") from None
    if not hasattr(module, name):
        raise ConfigError(where, f"module '{module_name}' has no '{name}'")
    return getattr(module, name)


def constructor_params(cls: type, where: str) -> dict[str, Param]:
    """Constructor argument -> Param, for the arguments whose type the signature tells (after `params`)."""
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError) as e:
        raise ConfigError(where, f"cannot read the constructor's signature of {cls.__name__}: {e}") from None
    out: dict[str, Param] = {}
    for name, arg in list(signature.parameters.items())[2:]:  # self, params
        if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        kind = arg_kind(arg)
        if kind is None:
            continue  # a type a TOML value cannot give (a callable, a tensor): left at its default
        default = None if arg.default is arg.empty else arg.default
        if kind is tuple and default is not None:
            default = tuple(float(v) for v in default)
        elif kind is float and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        # an argument without a default must be given; one defaulting to None may stay None
        out[name] = Param(kind, default, f"{cls.__name__}({name})", optional=arg.default is None)
    return out


def arg_kind(arg: inspect.Parameter) -> type | None:
    annotation = arg.annotation
    options = typing.get_args(annotation) or (annotation,)
    options = tuple(typing.get_origin(o) or o for o in options)
    for kind in (bool, float, int, tuple, str):
        if kind in options:
            return kind
    default = arg.default
    for kind in (bool, float, int, tuple, str):
        if isinstance(default, kind):
            return kind
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
