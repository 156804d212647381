"""Every write failure is one line naming the file: an OSError, or a library's own error (torch.save raises
RuntimeError on a full disk), injected inside the library's write by bench.faults."""

import errno
import os

import pytest
import torch

from bench import faults
from bench.checkpoint import checkpoint_path, save_checkpoint
from bench.cli import main
from bench.files import atomic_path
from bench.model import GPT, GPTConfig
from bench.registry import ConfigError
from bench.suite import Suite
from tests.fabricate import fabricate_runs
from tests.suite_files import write_suite


@pytest.fixture
def fault(monkeypatch):
    """Plan OPTBENCH_FAULT for the next write boundaries of this process, counted from 1."""

    def plan(spec):
        monkeypatch.setattr(faults, "_count", 0)
        monkeypatch.setenv("OPTBENCH_FAULT", spec)

    return plan


@pytest.mark.parametrize("spec", ["enospc:1", "erofs:1", "enospc:2", "erofs:2"])
def test_a_checkpoint_torch_cannot_write_is_one_line_naming_it(fault, spec):
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=8))
    fault(spec)  # 1: inside torch.save (torch raises its RuntimeError); 2: the file about to replace the target
    with pytest.raises(ConfigError) as e:
        save_checkpoint("abc", model)
    path = checkpoint_path("abc")
    # inside torch.save, torch's own words (a real full disk adds the cause, read from the disk)
    reason = "RuntimeError: [enforce fail" if spec == "enospc:1" else os.strerror(errno.ENOSPC)
    reason = os.strerror(errno.EROFS) if spec.startswith("erofs") else reason
    assert e.value.format().startswith(f"cannot write {path}: {reason}"), e.value.format()
    assert not path.exists() and not list(path.parent.glob("*.part"))


def test_torch_itself_turns_a_full_disk_into_its_runtime_error(fault):
    """What the injection exercises: the error comes from torch, not from the harness."""
    fault("enospc:1")
    with open("x.pt", "wb") as f, pytest.raises(RuntimeError, match="enforce fail|PytorchStreamWriter"):
        torch.save({"x": torch.zeros(1000)}, faults.stream(f, "checkpoint"))


# the report's conclusions (rep.json, its temporary file: 1), then its HTML (as written: 2; its temporary file: 3)
@pytest.mark.parametrize(
    ("spec", "named"),
    [("enospc:1", "rep.json"), ("erofs:1", "rep.json"), ("enospc:2", "rep.html"), ("erofs:2", "rep.html"),
     ("enospc:3", "rep.html")],
)  # fmt: skip
def test_a_report_that_cannot_be_written_is_one_line_naming_it_exit_2(tmp_path, fault, capsys, spec, named):
    path = write_suite(tmp_path, "rep", 'optimizer = ["adamw", "sgd"]', seeds="[0]")
    fabricate_runs(Suite.load(path), None, lambda i: "complete")
    fault(spec)
    assert main(["report", str(path), "--no-sample"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write reports/{named}: " in err, err
    assert not (tmp_path / "reports" / "rep.html").exists() and not list(tmp_path.rglob("*.part"))


def test_a_library_error_is_a_write_failure_only_where_the_body_only_writes(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(ConfigError, match=f"cannot write {target}: Exception: the library failed"):
        with atomic_path(target, library=True):
            raise Exception("the library failed")
    with pytest.raises(KeyError):  # a plain body's own bug stays what it is
        with atomic_path(target):
            raise KeyError("a bug")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs of this test's own (root only), unmounted after; fill() leaves no byte free."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode:
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk):
    """Write a filler file until the disk is full: every later write fails with ENOSPC."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_checkpoint_on_a_really_full_disk_is_one_line_naming_it_with_the_cause(small_disk, monkeypatch):
    """Not injected: a real ENOSPC, met inside torch.save (its RuntimeError) or as the file is closed."""
    monkeypatch.setenv("OPTBENCH_RESULTS_DIR", str(small_disk / "results"))
    (small_disk / "results" / "checkpoints").mkdir(parents=True)
    fill(small_disk)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=64, block_size=16, vocab_size=64))
    with pytest.raises(ConfigError) as e:
        save_checkpoint("abc", model)
    said = e.value.format()
    assert said.startswith(f"cannot write {checkpoint_path('abc')}: No space left on device"), said
    assert "\n" not in said and not list((small_disk / "results").rglob("*.part"))


def test_a_report_on_a_really_full_disk_is_one_line_naming_it_exit_2(tmp_path, small_disk, capsys):
    path = write_suite(tmp_path, "full", 'optimizer = ["adamw", "sgd"]', seeds="[0]")
    fabricate_runs(Suite.load(path), None, lambda i: "complete")
    fill(small_disk)
    out = small_disk / "full.html"
    assert main(["report", str(path), "--no-sample", "--out", str(out)]) == 2
    err = capsys.readouterr().err  # the first file the report writes: its conclusions, beside it
    assert err.count("\n") == 1 and f"cannot write {out.with_suffix('.json')}: No space left on device" in err, err
    assert not out.exists() and not list(small_disk.glob(".*.part"))


def test_a_store_whose_disk_fills_mid_suite_is_exit_2_naming_it_and_keeps_what_finished(tmp_path, small_disk):
    """The disk fills while a two-worker suite runs: not "2 complete of 6, exit 0" but exit 2, one line
    naming the store; freed, the same command finishes every run once."""
    import subprocess
    import sys
    import time
    from collections import Counter

    from tests.journals import ROOT

    path = write_suite(tmp_path, "fills", 'optimizer = ["adamw", "lion", "sgd"]', seeds="[0, 1]", steps=200)
    storage = small_disk / "j.journal"
    args = [sys.executable, "-m", "bench", "run", str(path), "--storage", str(storage), "--workers", "2",
            "--threads", "1", "--quiet", "--no-report"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while b'"op_code":4' not in (storage.read_bytes() if storage.exists() else b""):  # a claim: training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    filler = fill(small_disk)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert str(storage) in last and "No space left on device" in last, err
    assert "Traceback" not in err
    filler.unlink()
    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    from bench.store import Store

    trials = Store.open(str(storage)).existing_study("fills").get_trials()
    complete = Counter(t.user_attrs["run_hash"] for t in trials if t.state.name == "COMPLETE")
    assert complete == Counter(r.hash for r in Suite.load(path).runs())
