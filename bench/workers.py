"""Worker processes and their supervision: spawned with their thread count, stopped with their parent
(Ctrl-C, SIGTERM, or the parent's death), watched for their death of anything (SIGKILL from the OOM killer,
a crash in native code, a library's error) and replaced by a fresh process a bounded number of times; bad
input found in a worker reaches the parent as one line."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import interrupts
from bench.devices import CUDA_POISONED_EXIT
from bench.errors import StoreUnreachable
from bench.registry import ConfigError

POLL_SECONDS = 1.0

# Fresh processes started in one worker's place (its CUDA context broke, or it died) before that slot gives up.
MAX_REPLACEMENTS = 10
DIED = 1  # the exit status of a worker that died of an exception (its one line reaches the parent)
UNREACHABLE = 3  # a worker whose database stayed away (bench.database): not replaced, the command ends


def _watch_parent(parent_pid: int) -> None:
    """Stop this worker (as SIGTERM does) once the process that spawned it is gone, even by SIGKILL:
    an orphaned worker would go on claiming runs that nobody watches."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _supervised(target: Callable, parent_pid: int, errors: Any, *args: Any) -> None:
    """Entry point of a spawned worker process: SIGTERM or its parent's death stops it as Ctrl-C does;
    bad input found while running (an unwritable store) and any other exception it dies of go to
    `errors` as ('bad input' or 'died', pid, one line), for the parent's one line."""
    interrupts.install()
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="watch-parent").start()
    try:
        target(*args)
    except KeyboardInterrupt:
        interrupts.ignore()
        sys.exit(130)
    except ConfigError as e:
        _tell(errors, "bad input", e.format())
        sys.exit(2)
    except StoreUnreachable as e:
        _tell(errors, "unreachable", str(e))
        sys.exit(UNREACHABLE)
    except Exception as e:  # noqa: BLE001 -- whatever kills a worker, its parent says what in one line
        _tell(errors, "died", describe_error(e), traceback.format_exc())
        sys.exit(DIED)


def _tell(errors: Any, kind: str, line: str, trace: str = "") -> None:
    if errors is None:
        print(f"optbench: error: {line}" if kind == "bad input" else f"optbench: worker died of {line}\n{trace}",
              file=sys.stderr)  # fmt: skip
    else:
        errors.put((kind, os.getpid(), line))


def describe_error(e: BaseException) -> str:
    """'StorageInternalError: An exception is raised during the commit ...' (its first line)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def exit_reason(code: int | None, said: str | None = None) -> str:
    """Why a worker process ended, to follow 'worker 1 (pid 123)' in messages and its run's record: 'was killed
    by SIGKILL, as the OOM killer does', 'died of RuntimeError: ...', 'exited with status 3'."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {
            "SIGKILL": ", as the OOM killer does", "SIGSEGV": " (a crash in native code)",
            "SIGBUS": " (a crash in native code)", "SIGABRT": " (an abort in native code)",
        }.get(name, "")  # fmt: skip
        return f"was killed by {name}{why}"
    if code == DIED and said:
        return f"died of {said}"
    if code == 130:
        return "was stopped by a signal sent to it alone"
    return f"exited with status {code}"


def spawn_workers(target: Callable, args: list[tuple], threads: int, errors: Any = None) -> list:
    """Started worker processes running target(*a), one per args tuple, each supervised (see
    `_supervised`). They start with their thread count from the environment (OMP_NUM_THREADS), so they
    never need torch.set_num_threads (see bench.env.set_threads)."""
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_supervised, args=(target, os.getpid(), errors, *a)) for a in args]
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        for p in procs:
            p.start()
    finally:
        if previous is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return procs


# on_death(pid, reason): a worker died (not of bad input, not stopped with its parent); whatever it claimed
# is to be handed back, naming why
OnDeath = Callable[[int, str], None]


def run_workers(
    target: Callable, args: list[tuple], threads: int, poll: Callable[[], None] | None = None,
    on_death: OnDeath | None = None,
) -> list[str]:  # fmt: skip
    """Run target(*a) in one worker process per args tuple and wait for them all, calling `poll` every
    POLL_SECONDS meanwhile. A worker that dies is noticed at once: `on_death` hands its claim back and a
    fresh process takes its place, up to MAX_REPLACEMENTS times per worker. Ctrl-C or SIGTERM stops the
    workers (their runs marked interrupted), then raises KeyboardInterrupt here. Returns one line per
    death; bad input found by a worker is raised as ConfigError once all have ended."""
    procs: list = []
    replaced = [0] * len(args)
    deaths: list[str] = []
    said: dict[int, str] = {}  # pid -> the one line a dying worker sent
    bad: list[str] = []
    unreachable: list[str] = []
    errors = multiprocessing.get_context("spawn").SimpleQueue()

    def drain() -> None:
        while not errors.empty():
            kind, pid, line = errors.get()
            {"bad input": bad, "unreachable": unreachable}.get(kind, []).append(line)
            said[pid] = line

    try:
        with interrupts.on_stop_signals():
            procs = spawn_workers(target, args, threads, errors)
            ended = [False] * len(procs)
            while not all(ended):
                live = [p.sentinel for p, done in zip(procs, ended, strict=True) if not done]
                multiprocessing.connection.wait(live, timeout=POLL_SECONDS)  # a death is seen at once
                drain()
                for i, p in enumerate(procs):
                    if ended[i] or p.exitcode is None:
                        continue
                    p.join()
                    code = p.exitcode
                    if code in (0, 2, UNREACHABLE):  # done; bad input, or a database away (said in one line)
                        ended[i] = True
                        continue
                    poisoned = code == CUDA_POISONED_EXIT  # its run is stored as failed already
                    why = "lost its CUDA context" if poisoned else exit_reason(code, said.pop(p.pid, None))
                    if not poisoned:
                        if on_death is not None:
                            on_death(p.pid, why)
                        deaths.append(f"worker {i} (pid {p.pid}) {why}")
                    if replaced[i] < MAX_REPLACEMENTS:
                        replaced[i] += 1
                        print(f"optbench: worker {i} (pid {p.pid}) {why}; starting a fresh one in its place",
                              file=sys.stderr)  # fmt: skip
                        procs[i] = spawn_workers(target, [args[i]], threads, errors)[0]
                    else:
                        print(f"optbench: worker {i} (pid {p.pid}) {why}; not replaced: it was replaced "
                              f"{MAX_REPLACEMENTS} times already", file=sys.stderr)  # fmt: skip
                        ended[i] = True
                if poll:
                    poll()
    except BaseException:  # Ctrl-C, or the database gone from under the supervisor too
        stop_workers(procs)
        raise
    finally:
        for p in procs:
            p.join()
    drain()
    if bad:  # the first worker's message; the others likely met the same
        raise ConfigError("", bad[0])
    if unreachable:
        raise StoreUnreachable(unreachable[0])
    return deaths


def stop_workers(procs: list, grace: float = 30.0) -> None:
    """SIGTERM every live worker (each marks its run interrupted and exits), then SIGKILL stragglers."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
