"""The store survives crashes and hostile files (issue 11): torn tails, corrupt middles, stale locks,
orphaned claims, hostile suite names and storage files, unbounded grids and memory, bad encodings."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import journal
from bench.files import atomic_path
from bench.registry import ConfigError
from bench.resources import check_fits, estimate_bytes
from bench.store import Store
from bench.suite import Suite
from tests.suite_files import GRID_12, TINY_BASE, write_suite

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


def optbench(*args, env=None, cwd=None, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def one_line_error(done, after_start: int = 0) -> str:
    """The error line of a command that exited 2; `after_start`: it may have printed its plan first (the
    optimizer-kernel choices `optbench run` announces with its plan are not counted)."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and " kernels for " not in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 + int(after_start) and lines[-1].startswith("optbench: error:"), done.stderr[-2000:]
    return lines[-1]


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


# -- 3. orphaned claims --------------------------------------------------------------------------------


def test_a_claim_is_one_journal_write(tmp_path):
    from bench.runner import Plan

    path = write_suite(tmp_path, "one", GRID_12)
    work = Plan(str(path), {}, str(tmp_path / "j.journal"), 1, 1).open()
    before = len(Path(work.store.url).read_bytes().splitlines())
    job = work.claim()
    assert len(Path(work.store.url).read_bytes().splitlines()) == before + 1
    trial = work.study.get_trials()[0]
    assert trial._trial_id == job.trial_id and trial.user_attrs["run_hash"] and trial.user_attrs["worker"]
    assert trial.params


def test_an_orphaned_claim_is_failed_and_its_run_retried(tmp_path):
    """A RUNNING trial with no worker (a bare ask()) made `optbench run` wait forever."""
    path = write_suite(tmp_path, "orphan", 'optimizer = ["adamw"]', seeds="[0]")
    storage = str(tmp_path / "j.journal")
    optuna.create_study(study_name="orphan", storage=Store.open(storage).storage).ask()
    done = optbench("run", str(path), "--storage", storage, "--workers", "1", "--quiet", "--no-report",
                    env={"OPTBENCH_GRACE_PERIOD": "1"}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    states = [t.state.name for t in Store.open(storage).existing_study("orphan").get_trials()]
    assert sorted(states) == ["COMPLETE", "FAIL"]


def test_a_study_without_any_claim_reads_as_no_results(tmp_path):
    path = write_suite(tmp_path, "early", GRID_12)
    storage = str(tmp_path / "j.journal")
    optuna.create_study(study_name="early", storage=Store.open(storage).storage).ask()
    done = optbench("results", str(path), "--storage", storage)
    assert done.returncode == 0 and "no results for suite 'early' yet" in done.stdout, done.stderr


# -- hostile input ------------------------------------------------------------------------------------


@FAST
@given(name=st.text(min_size=1, max_size=40))
def test_suite_names_are_safe_file_names_or_refused(tmp_path_factory, name):
    reports = tmp_path_factory.mktemp("r") / "reports"
    try:
        suite = Suite.parse({"suite": {"name": name}, "base": {"model": "tiny"}})
    except ConfigError as e:
        assert e.key == "suite.name"
        return
    target = (reports / f"{suite.name}.html").resolve()
    assert target.parent == reports.resolve()


def test_cli_refuses_a_suite_name_that_is_a_path(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[suite]\nname = "../../tmp/x"\n' + TINY_BASE.replace("STEPS", "10"))
    line = one_line_error(optbench("run", str(path), "--storage", str(tmp_path / "j.journal")))
    assert "suite.name" in line and not (tmp_path / "j.journal").exists()


@FAST
@given(content=st.binary(min_size=1, max_size=200))
def test_a_storage_file_that_is_not_a_journal_is_refused_untouched(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("s") / "settings.cfg"
    if content.startswith(journal.JOURNAL_PREFIX) or journal.JOURNAL_PREFIX.startswith(content):
        return
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not an optbench results store|SQLite"):
        Store.open(str(path))
    assert path.read_bytes() == content


def test_cli_refuses_a_passwd_like_storage_untouched(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    suite = write_suite(tmp_path, "pw", GRID_12)
    line = one_line_error(optbench("run", str(suite), "--storage", str(path), "--no-report"))
    assert str(path) in line
    assert path.read_text() == "root:x:0:0:root:/root:/bin/bash\n"


@FAST
@given(
    lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    design=st.sampled_from(["grid", "ablation"]),
    tuned=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_a_combination_by_index_is_the_expanded_one(lengths, design, tuned):
    keys = ["optimizer.lr", "optimizer.weight_decay", "optimizer.eps"][: len(lengths)]
    axes = {k: [0.1 * (i + 1) for i in range(n)] for k, n in zip(keys, lengths, strict=True)}
    tune = [k for k, t in zip(keys, tuned, strict=False) if t]
    suite = Suite.parse({"suite": {"name": "c", "design": design, "tune": tune}, "base": {"model": "tiny"},
                         "axes": axes})  # fmt: skip
    combos = suite.combinations()
    assert suite.configuration_count() == len(combos)
    assert [suite.combination(i) for i in range(len(combos))] == combos
    if design == "ablation":  # every arm (the base too) at every tuned value, each other axis one at a time
        for key in keys:
            values = [c.get(key) for c in combos]
            if key in tune:
                assert all(values.count(v) == len(combos) // len(axes[key]) for v in axes[key])
            else:  # once per combination of the tuned values
                crossed = math.prod(len(axes[k]) for k in tune)
                assert sorted(v for v in values if v is not None) == sorted(axes[key] * crossed)


def huge_grid(max_runs: str = "") -> dict:
    values = [1e-4 * (i + 1) for i in range(100)]
    return {
        "suite": {"name": "huge", **({"max_runs": int(max_runs)} if max_runs else {})},
        "base": {"model": "tiny", "data": {"name": "synthetic", "alphabet": 8}, "steps": 10, "schedule": "constant"},
        "axes": {"optimizer.lr": values, "optimizer.weight_decay": values, "optimizer.eps": values},
    }


def test_a_grid_over_the_limit_is_refused_unless_sampled_and_sampling_never_expands_it(monkeypatch):
    with pytest.raises(ConfigError, match="1,000,000 configurations, over the limit of 100,000"):
        Suite.parse(huge_grid())
    monkeypatch.setattr(Suite, "combinations", lambda self: pytest.fail("the grid was expanded"))
    runs = Suite.parse(huge_grid("10")).runs()
    assert len(runs) == 10 and len({r.hash for r in runs}) == 10
    assert [r.hash for r in runs] == [r.hash for r in Suite.parse(huge_grid("10")).runs()]


@FAST
@given(batch=st.integers(12, 10_000), width=st.sampled_from([32, 64, 128]))
def test_the_memory_estimate_grows_with_batch_and_width(batch, width):
    from bench.config import RunConfig

    small = RunConfig.build({"model": {"name": "tiny", "n_embd": width}, "batch_size": batch})
    bigger = small.override({"batch_size": batch * 2})
    wider = small.override({"model.n_embd": width * 2})
    assert estimate_bytes(small) < estimate_bytes(bigger) and estimate_bytes(small) < estimate_bytes(wider)


def test_a_run_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch):
    from bench.config import RunConfig

    cfg = RunConfig.build({"model": "tiny"})
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", str(estimate_bytes(cfg) - 1))
    with pytest.raises(ConfigError, match="GiB, over the .* GiB of OPTBENCH_MEMORY_LIMIT"):
        check_fits([cfg])
    monkeypatch.setenv("OPTBENCH_MEMORY_LIMIT", str(estimate_bytes(cfg)))
    check_fits([cfg])
    line = one_line_error(optbench("train", "--set", "model=tiny", "--set", "batch_size=100000"))
    assert "batch_size" in line and "GiB" in line


def test_bad_files_exit_2_in_one_line(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[suite]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8" in one_line_error(optbench("run", str(latin)))
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert "nothing to run" in one_line_error(optbench("run", str(empty)))
    assert "not a regular file" in one_line_error(optbench("run", "/dev/zero"))
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 50)
    text_data = f'data={{name="text", path="{blob}"}}'
    line = one_line_error(optbench("train", "--set", "model=tiny", "--set", text_data, "--set", "schedule=constant"))
    assert "not UTF-8 text" in line and "data.path" in line
    line = one_line_error(optbench("train", "--set", "model=tiny", "--set", "tokens=1"))
    assert "'tokens'" in line and "warmup" not in line


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


def test_temporary_files_of_killed_writers_are_cleaned(tmp_path):
    target = tmp_path / "r.html"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".r.html.{dead.stdout.strip()}.part"
    live = tmp_path / f".r.html.{os.getppid()}.part"
    stale.write_text("half")
    live.write_text("in progress")
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and not stale.exists() and live.exists()


def test_a_failed_run_says_why_in_one_line_and_keeps_the_traceback(tmp_path, monkeypatch, capsys):
    from bench import train as train_module
    from bench.executor import work_loop
    from bench.runner import Plan

    path = write_suite(tmp_path, "fails", 'optimizer = ["adamw"]', seeds="[0]")
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'
    monkeypatch.setattr(
        train_module, "run_training",
        lambda cfg, device=None, hooks=(): (train_module.RunRecord(cfg.to_dict(), cfg.hash, error=error), None),
    )  # fmt: skip
    storage = str(tmp_path / "j.journal")
    import torch

    plan = Plan(str(path), {}, storage, 1, torch.get_num_threads())
    work_loop(plan.open(), plan.crew)  # threads kept: see tests/faults.py
    assert "failed: ValueError: boom" in capsys.readouterr().err
    (trial,) = Store.open(storage).existing_study("fails").get_trials()
    assert trial.user_attrs["error"] == error and trial.user_attrs["status"] == "failed"


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


@pytest.mark.skipif(not os.environ.get("OPTBENCH_TEST_POSTGRES"), reason="needs OPTBENCH_TEST_POSTGRES")
def test_an_orphaned_claim_without_a_heartbeat_is_stale_in_postgres_too(monkeypatch):
    import uuid

    import bench.store

    store = Store.open(os.environ["OPTBENCH_TEST_POSTGRES"])
    study = store.study(f"orphan-{uuid.uuid4().hex[:8]}")
    orphan = study.ask()  # no worker, never a heartbeat
    beating = study.ask()
    store.storage.record_heartbeat(beating._trial_id)  # judged by Optuna's heartbeat check instead
    monkeypatch.setattr(bench.store, "GRACE_PERIOD", -1)
    assert [t.number for t, _ in store.stale_claims(study)] == [orphan.number]
    store.fail_stale(study)
    assert study.get_trials()[orphan.number].state.name == "FAIL"
    assert study.get_trials()[beating.number].state.name == "RUNNING"


def test_a_claim_from_another_host_in_a_file_store_is_left_to_its_owner(tmp_path, monkeypatch):
    """A journal on a shared folder may serve several hosts: without heartbeats, only the owner knows."""
    import bench.store

    store = Store.open(str(tmp_path / "j.journal"))
    study = store.study("hosts")
    store.create_running_trial(study, {"run_hash": "a", "worker": {"host": "elsewhere", "pid": 1}}, {})
    study.ask()  # no worker at all: an orphan
    monkeypatch.setattr(bench.store, "GRACE_PERIOD", -1)
    assert [t.number for t, _ in store.stale_claims(study)] == [1]


def test_a_suite_file_is_parsed_once_per_content(tmp_path, monkeypatch):
    """A command loads its suite in several places: a large grid is validated once, not six times."""
    path = write_suite(tmp_path, "once", GRID_12)
    parse, calls = Suite.parse, []
    monkeypatch.setattr(Suite, "parse", lambda *a, **k: (calls.append(1), parse(*a, **k))[1])
    first = Suite.load(path, {"device": "cpu"})
    assert Suite.load(path, {"device": "cpu"}) is first and len(calls) == 1
    path.write_text(path.read_text().replace("[0, 1]", "[0]"))
    assert len(Suite.load(path, {"device": "cpu"}).runs()) == 6 and len(calls) == 2


def test_a_full_disk_while_writing_the_report_is_one_line(tmp_path):
    suite = write_suite(tmp_path, "fullreport", 'optimizer = ["adamw"]', seeds="[0]")
    storage = str(tmp_path / "j.journal")
    args = ("run", str(suite), "--storage", storage, "--workers", "1", "--quiet", "--no-sample")
    assert optbench(*args, "--no-report").returncode == 0
    # two study creations (runner and worker), then the report file (the suite's description is stored once)
    done = optbench(*args, env={"OPTBENCH_FAULT": "enospc:3"}, cwd=tmp_path)
    assert "No space left on device" in one_line_error(done, after_start=2)
    assert not list(tmp_path.rglob("*.part"))
