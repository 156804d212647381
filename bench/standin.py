"""Reading results without running their code: stand-ins for the entries a suite's plugins and class_paths
define.

`optbench results`, `report`, `doctor`, `compare` and `export` only read; a suite file is code (its plugins
run, a class_path imports a module), and reading a store someone sent must not run it. So these commands call
`reading()` first: from then on no plugin is imported (bench.plugins hashes a plugin file, as its runs'
identity needs, without running it) and no class_path module is imported. A suite is still parsed into runs
with the same hashes as when it ran: every entry that came from outside code is stood in for by what the store
recorded of it when its runs were claimed (`describe`: its parameters' types and defaults), with its
provenance computed again without importing (a plugin file's hash, a distribution's version, a module's source
hash), so an edited plugin still reads as runs not yet run. An entry the store never recorded is opaque: its
parameters are taken as written, and its runs read as not run yet.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
from collections.abc import Mapping
from typing import Any

from bench.registry import Entry, Param, Registry

_KINDS = {"bool": bool, "int": int, "float": float, "str": str, "tuple": tuple}
_reading = False
# a registry's kind (or "class_path") -> entry name (or import path) -> describe() of it
_recorded: dict[str, dict[str, dict[str, Any]]] = {}
_plugins: dict[str, str] = {}  # a plugin's file or distribution name -> its provenance now (bench.plugins)


def is_reading() -> bool:
    return _reading


def reading() -> None:
    """This process reads results from now on: no plugin or class_path code runs in it."""
    global _reading
    _reading = True
    Registry.missing = stand_in  # type: ignore[attr-defined]


def done_reading() -> None:
    """Back to running code (a process that runs several commands, as the tests do)."""
    global _reading
    _reading = False
    Registry.missing = None  # type: ignore[attr-defined]
    _recorded.clear()
    _plugins.clear()


def describe(entry: Entry) -> dict[str, Any]:
    """What a stand-in needs of an entry: each parameter's type, default, and whether it may be nothing."""
    out = {}
    for name, p in entry.params.items():
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        out[name] = {"kind": p.kind.__name__, "default": default, "optional": p.optional, "length": p.length}
    return out


def plugin_now(provenance: str) -> None:
    """A plugin declared now, hashed but not run ('my_plugin.py sha256:...', or 'package 1.2')."""
    _plugins[provenance.split(" ", 1)[0]] = provenance


def record(entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Stand-ins from what a store recorded (study attribute `entries`: kind -> name -> describe())."""
    for axis, named in entries.items():
        if isinstance(named, Mapping):
            _recorded.setdefault(axis, {}).update({n: d for n, d in named.items() if isinstance(d, Mapping)})


class Opaque(Entry):
    """An entry whose code is not run and whose parameters are unknown: takes them as written."""

    def resolve(self, given: Mapping[str, Any], key: str) -> dict[str, Any]:
        return dict(given)


def entry(kind: str, name: str, provenance: tuple[str, str] | None = None, called: str | None = None) -> Entry:
    """The stand-in for `name` of a registry's `kind` ("class_path": the import path): the recorded parameters,
    with the provenance parameter (`plugin` or `version`) set to what the code there now is, read without
    running it. `called`: the entry's own name, where it is not `name` (every class_path's is class_path)."""
    described = _recorded.get(kind, {}).get(name)
    if described is None:
        return Opaque(called or name, "not recorded by this store: its code is not run to read results", {})
    params = {}
    for pname, d in described.items():
        typ = _KINDS.get(str(d.get("kind")), str)
        default = tuple(d["default"]) if typ is tuple and isinstance(d.get("default"), list) else d.get("default")
        optional = bool(d.get("optional")) or default is None
        params[pname] = Param(typ, default, optional=optional, length=d.get("length"))
    if provenance is not None and provenance[0] in params:
        params[provenance[0]] = Param(str, provenance[1])
    return Entry(called or name, "as the store recorded it: its code is not run to read results", params)


def stand_in(registry: Registry, name: str) -> Entry | None:
    """Registry.missing while reading: an entry a plugin would have registered, stood in for, its `plugin`
    parameter the provenance of the plugin of that file name declared now (the recorded one if none is)."""
    recorded = (_recorded.get(registry.kind, {}).get(name) or {}).get("plugin", {}).get("default")
    now = _plugins.get(str(recorded).split(" ", 1)[0]) if recorded else None
    return entry(registry.kind, name, ("plugin", now or str(recorded)))


def class_path_entry(path: str) -> Entry:
    """The stand-in of a class_path optimizer while reading."""
    return entry("class_path", path, ("version", version_unrun(path)), called="class_path")


def locate(module: str) -> str | None:
    """The source file of `module`, found on sys.path without importing it or its packages."""
    spec, locations = None, None
    for part in module.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, locations)  # finds, never executes
        if spec is None:
            return None
        locations = spec.submodule_search_locations
    return spec.origin if spec is not None else None


def file_hash(path: Any) -> str | None:
    try:
        with open(path, "rb") as f:
            return "sha256:" + hashlib.sha256(f.read()).hexdigest()[:16]
    except (OSError, TypeError):
        return None


def distribution(top: str) -> str | None:
    """'<distribution> <version>' of the installed package providing the top-level module `top`."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def provenance_unrun(path: Any, spec: str) -> str | None:
    """A plugin's provenance as bench.plugins.provenance gives it ('file.py sha256:...', or 'dist 1.2'), found
    without running the plugin; None where its file is not there."""
    from pathlib import Path

    if path is None:
        found = distribution(spec.split(".")[0])
        if found:
            return found
        path = locate(spec)
        if path is None:
            return None
    digest = file_hash(path)
    return f"{Path(path).name} {digest}" if digest else None


def version_unrun(path: str) -> str:
    """class_path's provenance ('<distribution> <version>', else the sha256 of the module's source) found
    without importing anything: the distribution from installed metadata, the source by searching the path."""
    module = path.rpartition(".")[0]
    return distribution(module.split(".")[0]) or file_hash(locate(module)) or "unknown"
