"""Writing files so that a reader never sees half of one, even with several writers at once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from bench import faults


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(path: Path) -> list[Path]:
    """Delete the temporary files of `path` left by killed writers (their pid is gone)."""
    removed = []
    for part in path.parent.glob(f".{path.name}.*.part"):
        pid = part.name[len(path.name) + 2 : -len(".part")]
        if pid.isdigit() and not pid_alive(int(pid)):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` (unique to this process); on success it replaces `path`.
    Temporary files that killed writers left beside `path` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        faults.boundary("temporary file")  # the crash tests kill here: the .part written, not yet in place
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_path(path: str | Path, flag: str) -> None:
    """ConfigError naming `flag` when `path` cannot become a file written by atomic_path, so that bad
    output paths are refused before any work instead of after it: a folder, a regular file where a folder
    of the path should be, a name too long (with atomic_path's temporary suffix), or an unwritable folder."""
    from bench.registry import ConfigError

    path = Path(path).expanduser()
    try:
        if path.is_dir():
            raise ConfigError(flag, f"{path} is a folder; name a file to write")
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:  # the folders atomic_path would create
            ancestor = ancestor.parent
    except OSError as e:  # stat itself refuses a name too long
        raise ConfigError(flag, f"{path}: {e.strerror}") from None
    if not ancestor.is_dir():
        raise ConfigError(flag, f"{ancestor} is not a folder, so {path} cannot be written")
    name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    temporary = f".{path.name}.{'9' * 10}.part"  # atomic_path's name for the file while it is written
    too_long = [p for p in (*path.relative_to(ancestor).parts, temporary) if len(os.fsencode(p)) > name_max]
    if too_long or len(os.fsencode(os.path.abspath(path))) >= os.pathconf(ancestor, "PC_PATH_MAX"):
        raise ConfigError(flag, f"{path}: file name too long (at most {name_max} bytes a name)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(flag, f"cannot write in {ancestor}: permission denied")
