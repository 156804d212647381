"""The journal store survives crashes and hostile files (issue 11): torn tails, corrupt middles, stale locks,
a read-only or full disk, and what doctor finds and repairs of them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import journal
from bench.registry import ConfigError
from bench.store import Store
from tests.processes import one_line_error
from tests.processes import run_optbench as optbench
from tests.suite_files import GRID_12, write_suite

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def fabricated(path: Path, runs: int = 3) -> Store:
    """A journal holding `runs` finished trials (no training needed)."""
    store = Store.open(str(path))
    study = store.study("fab")
    for i in range(runs):
        study.add_trial(optuna.trial.create_trial(value=float(i), user_attrs={"run_hash": f"h{i}"}))
    return store


def hashes(path: Path) -> list[str]:
    return [t.user_attrs.get("run_hash") for t in Store.open(str(path)).existing_study("fab").get_trials()]


# -- 1. torn tails ---------------------------------------------------------------------------------


@FAST
@given(cut=st.integers(min_value=1, max_value=10_000), garbage=st.binary(max_size=40), newline=st.booleans())
def test_a_torn_or_garbage_tail_is_moved_aside_before_the_next_append(tmp_path_factory, cut, garbage, newline):
    path = tmp_path_factory.mktemp("torn") / "j.journal"
    fabricated(path)
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # the last record
    whole = len(data) - last
    cut = 1 + cut % whole  # 1 (only its newline) .. the whole record
    tail = garbage.replace(b"\n", b"") + (b"\n" if newline else b"")
    if cut < whole or journal.is_record(tail.strip()):
        tail = b""  # garbage only after a whole record
    path.write_bytes(data[: len(data) - cut] + tail)
    store = Store.open(str(path))
    store.study("fab").add_trial(optuna.trial.create_trial(value=9.0, user_attrs={"run_hash": "new"}))
    kept = hashes(path)  # readable: no JSONDecodeError, ever
    assert kept[-1] == "new" and kept[:2] == ["h0", "h1"]
    assert kept.count("h2") == (1 if cut == 1 else 0)  # a record missing only its newline is kept
    assert all(journal.is_record(line) for line in path.read_bytes().splitlines())
    torn = path.with_name("j.journal.torn")
    assert torn.exists() == (1 < cut < whole or bool(tail))


def test_the_torn_tail_is_named_on_stderr(tmp_path, capsys):
    path = tmp_path / "j.journal"
    fabricated(path)
    with open(path, "ab") as f:
        f.write(b"garbage!!\n")
    fabricated(path, 1)
    err = capsys.readouterr().err
    assert f"{path} ended in a broken record (10 bytes" in err and f"{path}.torn" in err
    assert path.with_name("j.journal.torn").read_bytes() == b"garbage!!\n"


@FAST
@given(line=st.integers(min_value=0, max_value=3), junk=st.binary(min_size=1, max_size=30))
def test_a_corrupt_middle_is_refused_naming_the_file_and_line(tmp_path_factory, line, junk):
    path = tmp_path_factory.mktemp("mid") / "j.journal"
    fabricated(path)
    lines = path.read_bytes().splitlines(keepends=True)
    bad = junk.replace(b"\n", b"") + b"\n"
    if journal.is_record(bad.strip()):
        return
    lines.insert(line, bad)
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=f"line {line + 1} of the results store is corrupt"):
        Store.open(str(path)).existing_study("fab")
    assert path.read_bytes() == before


def test_cli_refuses_a_corrupt_store_in_one_line(tmp_path):
    path = tmp_path / "j.journal"
    fabricated(path)
    records = path.read_bytes().splitlines(keepends=True)
    with open(path, "ab") as f:  # the old bug: an append glued onto a torn tail, then more appends
        f.write(b"garbage!!" + records[-1] + records[-1])
    suite = write_suite(tmp_path, "fab", GRID_12)
    line = one_line_error(optbench("results", str(suite), "--storage", str(path)))
    assert str(path) in line and "line 5" in line


# -- 2. locks ----------------------------------------------------------------------------------------


def test_a_stale_relative_lock_is_taken_over_after_the_grace_period(tmp_path):
    """The leftover of a killed writer under the old relative lock: Optuna spun forever on it."""
    (tmp_path / "results").mkdir()
    os.symlink("results/optbench.journal", tmp_path / "results" / "optbench.journal.lock")
    code = "from bench.store import Store; Store.open('results/optbench.journal').study('x'); print('done')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "OPTBENCH_LOCK_GRACE": "1", "PYTHONPATH": str(Path(__file__).parent.parent)},
    )  # fmt: skip
    assert done.stdout.strip() == "done", done.stderr
    assert "waiting for the journal lock" in done.stderr or "taking over the journal lock" in done.stderr
    assert not os.path.lexists(tmp_path / "results" / "optbench.journal.lock")


def test_journal_locks_point_at_absolute_paths(tmp_path, monkeypatch):
    targets = []
    real = os.symlink
    monkeypatch.setattr(os, "symlink", lambda src, dst: (targets.append(src), real(src, dst))[1])
    monkeypatch.chdir(tmp_path)
    Store.open("rel.journal").study("x")
    assert targets and all(os.path.isabs(t) for t in targets)


def test_a_read_only_or_full_store_is_one_line_and_stays_readable(tmp_path):
    suite = write_suite(tmp_path, "ro", 'optimizer = ["adamw"]', seeds="[0]")
    storage = tmp_path / "j.journal"
    args = ("run", str(suite), "--storage", str(storage), "--workers", "1", "--quiet", "--no-report")
    read_only = optbench(*args, env={"OPTBENCH_FAULT": "erofs:1"})  # as root, chmod cannot make one
    assert "Read-only file system" in one_line_error(read_only, after_start=True)
    assert storage.read_bytes() == b""
    full = optbench(*args, env={"OPTBENCH_FAULT": "enospc:3"})
    assert "No space left on device" in one_line_error(full, after_start=True)
    done = optbench(*args)
    assert done.returncode == 0 and "broken record" in done.stderr, done.stderr
    assert Store.open(str(storage)).existing_study("ro").get_trials()[-1].state.name == "COMPLETE"


def test_json_records_in_a_journal_are_checked_by_op_code():
    assert journal.is_record(json.dumps({"op_code": 1}).encode())
    assert not journal.is_record(b"[1, 2]") and not journal.is_record(b"garbage")


def test_doctor_finds_and_repairs_what_crashes_leave(tmp_path):
    path = tmp_path / "results" / "optbench.journal"
    path.parent.mkdir()
    fabricated(path)
    optuna.load_study(study_name="fab", storage=Store.open(str(path)).storage).ask()  # an orphaned claim
    records = path.read_bytes().splitlines(keepends=True)
    with open(path, "ab") as f:  # a torn record with the next append glued on, then one more
        f.write(records[2][:20] + records[-2] + records[-1])
    os.symlink("results/optbench.journal", f"{path}.lock")  # the old relative lock, left by a kill
    os.utime(f"{path}.lock", (0, 0), follow_symlinks=False)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / ".fab.html.999999999.part").write_text("half")
    # temporary files that are not optbench's, beside and below the store: never touched
    not_ours = [tmp_path / "results" / ".thesis.tex.999999999.part",
                tmp_path / "reports" / "deep" / ".x.html.999999999.part",
                tmp_path / "results" / "notes" / ".optbench.journal.999999999.part"]  # fmt: skip
    for other in not_ours:
        other.parent.mkdir(exist_ok=True)
        other.write_text("precious")
    env = {"OPTBENCH_GRACE_PERIOD": "0"}
    found = optbench("doctor", "--storage", str(path), "--reports", str(tmp_path / "reports"), env=env)
    assert found.returncode == 1 and "glued onto 20 bytes" in found.stdout and "journal lock" in found.stdout
    repaired = optbench("doctor", "--repair", "--storage", str(path), "--reports", str(tmp_path / "reports"), env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    for what in ("glued", "journal lock", "names no worker", ".part"):
        assert any(line.startswith("repaired: ") and what in line for line in repaired.stdout.splitlines())
    assert optbench("doctor", "--storage", str(path), "--reports", str(tmp_path / "reports")).returncode == 0
    assert all(other.read_text() == "precious" for other in not_ours)
    assert not any(str(other) in repaired.stdout for other in not_ours)
    study = Store.open(str(path)).existing_study("fab")
    assert [t.user_attrs.get("run_hash") for t in study.get_trials()].count("h2") == 2  # the glued record kept
    assert not any(t.state.name == "RUNNING" for t in study.get_trials())
