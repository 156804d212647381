"""Writing files so that a reader never sees half of one, even with several writers at once."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from bench import faults
from bench.registry import ConfigError


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
def atomic_path(path: str | Path, library: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` (unique to this process); on success it replaces `path`.
    Temporary files that killed writers left beside `path` are removed first. A write that fails is
    ConfigError, one line naming `path` (exit 2): any OSError, and with `library` any exception at all, for
    a body that only writes through a library whose own errors mean the write failed (torch.save raises
    RuntimeError on a full disk, the tokenizers library a plain Exception)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(path)
        yield tmp
        faults.boundary("temporary file")  # the crash tests kill here: the .part written, not yet in place
        tmp.replace(path)
    except ConfigError:
        raise
    except Exception as e:
        if not (library or isinstance(e, OSError)):
            raise
        raise write_failure(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_failure(path: Path, e: BaseException) -> ConfigError:
    """'cannot write PATH: No space left on device', for whatever the write raised: an OSError's own words;
    a library's error (which names no file and often no cause) with the cause read from the disk if it is
    full."""
    if isinstance(e, OSError) and e.strerror:
        return ConfigError("", f"cannot write {path}: {e.strerror}")
    text = (str(e).strip().splitlines() or [""])[0][:160]
    said = f"{type(e).__name__}: {text}" if text else type(e).__name__
    try:
        st = os.statvfs(path.parent)
        full = st.f_bavail == 0 or (st.f_favail == 0 and st.f_files > 0)
    except OSError:
        full = False
    return ConfigError("", f"cannot write {path}: {os.strerror(errno.ENOSPC) + ' (' + said + ')' if full else said}")


def check_output_path(path: str | Path, flag: str) -> None:
    """ConfigError naming `flag` when `path` cannot become a file written by atomic_path, so that bad
    output paths are refused before any work instead of after it: a folder, a regular file where a folder
    of the path should be, a name too long (with atomic_path's temporary suffix), or an unwritable folder."""
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
