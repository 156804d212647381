"""Whether a claim's worker lives is judged by a kernel flock it holds for its life (bench.store), which
means the same in every PID namespace of a host: a live worker in a container sharing the host's network
(the same hostname) is not judged gone, and a dead one is, at once."""

import os
import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest

from bench.store import Store, liveness_held
from bench.suite import Suite
from tests.journals import ROOT
from tests.suite_files import write_suite

needs_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1) for a PID namespace"
)

# Claims one run in the store given, then lives until the file given appears.
CLAIMER = """
import sys, time
from pathlib import Path
from bench.store import Store
store = Store.open(sys.argv[1])
study = store.study("ns")
store.create_running_trial(study, {"run_hash": "r", "worker": store.worker()})
Path(sys.argv[2] + ".claimed").write_text("")
while not Path(sys.argv[2]).exists():
    time.sleep(0.05)
"""


def in_namespace(*argv):
    """argv run as pid 1 of a new PID namespace (same host, same files)."""
    return ["unshare", "--pid", "--fork", "--mount-proc", *argv]


def wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.05)


@needs_unshare
def test_a_live_claim_from_another_pid_namespace_is_alive_and_a_dead_one_is_gone(tmp_path):
    storage, done = str(tmp_path / "j.journal"), tmp_path / "done"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(in_namespace(sys.executable, "-c", CLAIMER, storage, str(done)), env=env)
    wait_for(tmp_path / "done.claimed")
    store = Store.open(storage)
    study = store.existing_study("ns")
    (claim,) = study.get_trials()
    worker = claim.user_attrs["worker"]
    assert worker["pid"] == 1 and worker["pidns"] != os.readlink("/proc/self/ns/pid")  # its pid means nothing here
    assert store.stale_claims(study) == []  # alive: its flock is held
    done.write_text("")
    assert proc.wait(timeout=60) == 0
    ((gone, why),) = store.stale_claims(study)
    assert gone.number == claim.number and "is gone" in why
    assert not (store.alive_dir / worker["alive"]).exists()  # the dead worker's lock file is removed


@needs_unshare
def test_two_runners_one_in_another_pid_namespace_train_every_run_once(tmp_path):
    path = write_suite(tmp_path, "split", 'optimizer = ["adamw", "lion", "sgd"]', seeds="[0, 1]", steps=150)
    storage = str(tmp_path / "j.journal")
    args = [sys.executable, "-m", "bench", "run", str(path), "--storage", storage, "--workers", "1", "--threads",
            "1", "--quiet", "--no-report"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPTBENCH_GRACE_PERIOD": "1"}
    procs = [subprocess.Popen(in_namespace(*args), env=env, stderr=subprocess.PIPE, text=True),
             subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)]  # fmt: skip
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    trials = Store.open(storage).existing_study("split").get_trials()
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 6}, errs  # nothing judged gone, nothing twice
    assert sorted(t.user_attrs["run_hash"] for t in trials) == sorted(r.hash for r in Suite.load(path).runs())
    namespaces = {t.user_attrs["worker"]["pidns"] for t in trials}
    assert len(namespaces) == 2  # both trained some


def test_a_token_from_the_store_names_a_file_in_the_lock_folder_and_nothing_else(tmp_path):
    """A store is data: a hostile `alive` token must not make a judge open, lock or remove another file."""
    folder, outside = tmp_path / "j.journal.alive", tmp_path / "precious"
    folder.mkdir()
    outside.write_text("keep")
    for token in ["../precious", "/etc/passwd", ".hidden", "", None, 3, "a/b"]:
        assert liveness_held(folder, token) is False
    assert outside.read_text() == "keep"
