"""bench.workers: worker processes spawned with their thread count, stopped as Ctrl-C stops them, replaced
when their CUDA context breaks, and bad input found in one reaching the parent as one line."""

import os

import pytest
from processes import exit_poisoned_once, raise_bad_input, wait_for_stop, write_threads

from bench.registry import ConfigError
from bench.workers import run_workers, spawn_workers, stop_workers


@pytest.mark.device
def test_a_poisoned_worker_is_replaced(tmp_path):
    marker = tmp_path / "marker"
    run_workers(exit_poisoned_once, [(str(marker),)], threads=1)
    assert marker.read_text() == "replaced"


def test_a_worker_starts_with_its_thread_count_and_leaves_the_parents_as_it_was(tmp_path):
    before = os.environ.get("OMP_NUM_THREADS")
    run_workers(write_threads, [(str(tmp_path / "a"),), (str(tmp_path / "b"),)], threads=1)
    # OMP_NUM_THREADS and torch's count, whatever this process runs with
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == "1 1"
    assert os.environ.get("OMP_NUM_THREADS") == before


def test_bad_input_found_in_a_worker_reaches_the_parent_as_one_error():
    with pytest.raises(ConfigError) as e:
        run_workers(raise_bad_input, [("storage is read-only",)], threads=1)
    assert e.value.format() == "key '--storage': storage is read-only"


def test_a_stopped_worker_exits_as_ctrl_c_does(tmp_path):
    started = tmp_path / "started"
    (proc,) = spawn_workers(wait_for_stop, [(str(started),)], threads=1)
    try:
        for _ in range(600):  # its stop handlers are installed once it has said so
            if started.exists() or not proc.is_alive():
                break
            proc.join(0.1)
        assert started.exists()
    finally:
        stop_workers([proc], grace=30)
    assert proc.exitcode == 130
