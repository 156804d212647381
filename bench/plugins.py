"""Plugins: Python files or importable modules that register entries on any axis of bench.axes.

A plugin registers through the same API the built-ins use (bench.axes.register, or a registry's own
`register`), and each entry must meet its axis's contract (bench.contracts):

    from bench.axes import register
    from bench.registry import Param

    @register("schedule", "halving", "halves the rate every `every` steps", warmup=Param(int, 0, "warmup", low=0),
              every=Param(int, 100, "steps", low=1), promise=lambda p, n: {0: 1.0, p["every"]: 0.5})
    def halving(p, t, n):
        return 0.5 ** (t // p["every"])

Suite and run files name plugins in a top-level `plugins = ["my_plugin.py", "package.module"]` (files relative
to the suite file); `--plugin` names more on the command line; installed packages register modules in the
`optbench.plugins` entry-point group, loaded by every optbench process. Command-line plugins are passed to
spawned workers in OPTBENCH_PLUGINS, and suite-file plugins load with the suite in each worker, so every
worker knows the same entries. A plugin that cannot load is bad input (ConfigError: exit 2, one line) and
leaves no entry behind.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench import settings, standin
from bench.registry import ConfigError

ENV = "OPTBENCH_PLUGINS"  # os.pathsep-separated plugins for spawned workers (absolute paths or modules)
ENTRY_POINT_GROUP = "optbench.plugins"  # installed packages: [project.entry-points."optbench.plugins"] x = "pkg.mod"
_loaded: dict[str, str] = {}  # plugin (absolute path or module) -> its provenance, once loaded
_installed_scanned = False  # the entry-point group was read in this process


def load(specs: Any, base_dir: Path | None, key: str) -> None:
    """Load each plugin once; `specs` as written in a file (`key` names it in errors) or on the command line."""
    if not isinstance(specs, list) or not all(isinstance(s, str) and s.strip() for s in specs):
        raise ConfigError(key, f"must be a list of plugin files or module names, got {specs!r}")
    for spec in specs:
        load_one(spec, base_dir, key)


def loaded() -> str:
    """The plugins loaded in this process, with their provenance (a cache key for parsed suites)."""
    return json.dumps(_loaded, sort_keys=True)


def load_declared(doc: Any, path: str | Path) -> None:
    """A suite or run file's `plugins` (relative to it), and the command line's (in a spawned worker)."""
    load_from_env()
    if "plugins" in doc:
        try:
            load(doc["plugins"], Path(path).parent, "plugins")
        except ConfigError as e:
            raise e.with_source(str(path)) from None


def load_from_env() -> None:
    """Installed packages' plugins, and the command line's in a spawned worker."""
    load_installed()
    specs = list(settings.get(ENV))
    if specs:
        load(specs, None, "--plugin")


def load_installed() -> None:
    """Every module registered in the `optbench.plugins` entry-point group (each loads once)."""
    from importlib import metadata

    global _installed_scanned
    if _installed_scanned:  # scanning the installed distributions costs milliseconds; every suite read calls this
        return
    _installed_scanned = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        load_one(ep.value.split(":")[0].strip(), None, f"entry point {ep.name}")


def load_cli(specs: list[str]) -> None:
    """`--plugin` values: loaded here and handed to spawned workers through the environment."""
    resolved = [str(Path(s).resolve()) if is_file_spec(s) else s for s in specs]
    load(resolved, None, "--plugin")
    known = list(settings.get(ENV))
    os.environ[ENV] = os.pathsep.join(dict.fromkeys([*known, *resolved]))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ for a child optbench process, with every plugin this process loaded (suite-file ones too)
    in OPTBENCH_PLUGINS, so configs naming their entries validate there."""
    known = list(settings.get(ENV))
    specs = dict.fromkeys([*known, *_loaded])
    return {**os.environ, **(extra or {}), **({ENV: os.pathsep.join(specs)} if specs else {})}


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_one(spec: str, base_dir: Path | None, key: str) -> None:
    from bench.axes import AXES

    if is_file_spec(spec):
        path = Path(spec) if Path(spec).is_absolute() or base_dir is None else base_dir / spec
        path = path.resolve()
        ident = str(path)
    else:
        path, ident = None, spec
    if standin.is_reading():  # results are read, not run: the plugin's identity is needed, never its code
        origin = standin.provenance_unrun(path, spec)
        if origin:
            standin.plugin_now(origin)
        return
    if ident in _loaded:
        return
    if path is not None and not path.is_file():
        raise ConfigError(key, f"plugin file {path} does not exist")
    before = {axis_name: dict(axis.registry.entries) for axis_name, axis in AXES.items()}
    where = f"plugin {path or spec}"
    module_name = "optbench_plugin_" + hashlib.sha256(ident.encode()).hexdigest()[:12]
    try:
        if path is not None:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
        origin = provenance(path, spec)
        for axis_name, axis in AXES.items():
            entries = axis.registry.entries
            for entry_name in sorted(set(entries) - set(before[axis_name])):
                axis.check(entries[entry_name])
                entries[entry_name] = stamped(entries[entry_name], origin)
    # BaseException too: a plugin calling sys.exit() or raising KeyboardInterrupt or its own BaseException at
    # import would otherwise end optbench silently or with a traceback. A real Ctrl-C during a slow import
    # cannot be told apart from a plugin raising KeyboardInterrupt itself, so it is the plugin's failure too.
    except BaseException as e:  # noqa: BLE001 -- whatever a plugin raises, it is bad input: one line, nothing kept
        for axis_name, axis in AXES.items():  # roll back what it registered
            axis.registry.entries.clear()
            axis.registry.entries.update(before[axis_name])
        sys.modules.pop(module_name, None)  # a file plugin's half-run module
        raise ConfigError(key, f"{where}: {describe(e)}") from None
    _loaded[ident] = origin


def provenance(path: Path | None, spec: str) -> str:
    """What defined a plugin's entries: a hash of its file, or its distribution's name and version."""
    from importlib import metadata

    if path is None:
        for dist in metadata.packages_distributions().get(spec.split(".")[0], []):
            return f"{dist} {metadata.version(dist)}"
        path = Path(importlib.import_module(spec).__file__ or "")
    # the file's name, never its folder: the same plugin hashes alike on every machine sharing a store
    return f"{path.name} sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def outside_entries(configs: list[Any]) -> dict[str, dict[str, Any]]:
    """What reading results needs of the entries these configs take from code outside optbench (a plugin's,
    a class_path's): registry kind (or "class_path") -> name -> bench.standin.describe() of the entry."""
    from bench.axes import AXES
    from bench.techniques.class_path import CLASS_PATH, class_path_entry

    out: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for cfg in configs:
        for axis_name, axis in AXES.items():
            value = getattr(cfg, axis_name)
            for choice in value if isinstance(value, tuple) else (value,):
                params = choice.params
                if choice.name == CLASS_PATH:
                    kind, name = CLASS_PATH, params.get(CLASS_PATH)
                elif "plugin" in params:
                    kind, name = axis.registry.kind, choice.name
                else:
                    continue
                if (kind, name) not in seen:
                    seen.add((kind, name))
                    entry = class_path_entry(name, axis_name) if kind == CLASS_PATH else axis.registry[name]
                    out.setdefault(kind, {})[name] = standin.describe(entry)
    return out


def used(flat_configs: Any) -> dict[str, list[str]]:
    """Provenance -> the plugin entries ("axis entry") that runs chose, from flat configs (dotted keys,
    `optimizer.plugin` beside `optimizer.name`; `regularization.NAME.plugin` on a combining axis)."""
    out: dict[str, set[str]] = {}
    for flat in flat_configs:
        for key, origin in flat.items():
            if not key.endswith(".plugin") or not isinstance(origin, str) or not origin:
                continue
            path = key.removesuffix(".plugin").split(".")
            label = f"{path[0]} {flat.get(f'{path[0]}.name')}" if len(path) == 1 else " ".join(path)
            out.setdefault(origin, set()).add(label)
    return {origin: sorted(labels) for origin, labels in sorted(out.items())}


def describe_used(flat_configs: Any) -> str:
    """'plugins: my_techniques.py sha256:... (clip norm_half, optimizer sgd_nesterov_wd)', or ''."""
    parts = [f"{origin} ({', '.join(labels)})" for origin, labels in used(flat_configs).items()]
    return "plugins: " + "; ".join(parts) if parts else ""


def stamped(entry: Any, origin: str) -> Any:
    """The entry with a `plugin` parameter holding its provenance: resolved into every config that chooses it,
    so the run hash changes when the plugin's code does (bench.config recomputes it, never reads it back)."""
    import dataclasses

    from bench.registry import Param

    plugin = Param(str, origin, "the plugin that registered this entry: its file's hash or its package version")
    return dataclasses.replace(entry, params={**entry.params, "plugin": plugin})


def describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):  # its "message" is an exit code
        return f"it raised SystemExit({e.code!r})"
    if isinstance(e, SyntaxError):
        return f"syntax error at line {e.lineno}: {e.msg}"
    if isinstance(e, ConfigError):
        return e.format()
    text = str(e).strip().splitlines()
    what = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return what if isinstance(e, Exception) else f"it raised {what}"  # KeyboardInterrupt and kin: say it raised
