"""Worker processes and their supervision: spawned with their thread count, stopped with their parent
(Ctrl-C, SIGTERM, or the parent's death), replaced when their CUDA context breaks; bad input found in a
worker reaches the parent as one line."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import interrupts
from bench.devices import CUDA_POISONED_EXIT
from bench.registry import ConfigError

POLL_SECONDS = 1.0


# Fresh processes started in one worker's place after its CUDA context broke, before that slot gives up.
MAX_REPLACEMENTS = 10


def _watch_parent(parent_pid: int) -> None:
    """Stop this worker (as SIGTERM does) once the process that spawned it is gone, even by SIGKILL:
    an orphaned worker would go on claiming runs that nobody watches."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _supervised(target: Callable, parent_pid: int, errors: Any, *args: Any) -> None:
    """Entry point of a spawned worker process: SIGTERM or its parent's death stops it as Ctrl-C does;
    bad input found while running (an unwritable store) goes to `errors`, for the parent's one line."""
    interrupts.install()
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="watch-parent").start()
    try:
        target(*args)
    except KeyboardInterrupt:
        interrupts.ignore()
        sys.exit(130)
    except ConfigError as e:
        if errors is None:
            print(f"optbench: error: {e.format()}", file=sys.stderr)
        else:
            errors.put(e.format())
        sys.exit(2)


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


def run_workers(target: Callable, args: list[tuple], threads: int, poll: Callable[[], None] | None = None) -> None:
    """Run target(*a) in one worker process per args tuple and wait for them all, calling `poll` every
    POLL_SECONDS meanwhile. Ctrl-C or SIGTERM stops the workers (their runs marked interrupted), then
    raises KeyboardInterrupt here."""
    procs: list = []
    replaced = [0] * len(args)
    errors = multiprocessing.get_context("spawn").SimpleQueue()
    try:
        with interrupts.on_stop_signals():
            procs = spawn_workers(target, args, threads, errors)
            while True:
                for i, p in enumerate(procs):  # a worker whose CUDA context broke: a fresh process takes over
                    if p.exitcode == CUDA_POISONED_EXIT and replaced[i] < MAX_REPLACEMENTS:
                        replaced[i] += 1
                        print(f"optbench: worker {i} lost its CUDA context; starting a fresh one", file=sys.stderr)
                        procs[i] = spawn_workers(target, [args[i]], threads, errors)[0]
                if not any(p.is_alive() for p in procs):
                    break
                if poll:
                    poll()
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        stop_workers(procs)
        raise
    finally:
        for p in procs:
            p.join()
    if not errors.empty():  # the first worker's message; the others likely met the same
        raise ConfigError("", errors.get())


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
