"""The store survives crashes and hostile files (issue 11): orphaned claims, hostile suite names and
storage files, unbounded grids and memory, bad encodings. The journal's own tests (torn tails, corrupt
records, its lock) are in tests/test_journal.py, doctor's in tests/test_doctor.py."""

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
from tests.journals import one_line_error, optbench
from tests.suite_files import GRID_12, TINY_BASE, write_suite

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- orphaned claims --------------------------------------------------------------------------------


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
