import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from processes import logs, optbench, running_trials, wait_until_gone
from suite_files import GRID_12, write_suite

from bench import devices, interrupts
from bench.codec import latest_per_run, trial_status
from bench.executor import work_loop
from bench.results import suite_results
from bench.runner import Plan, default_split, run_suite
from bench.store import Store, load_results, this_worker
from bench.suite import Suite


def plan_for(path, storage, workers=1, **kw):
    return Plan(str(path), {}, storage, workers, 1, **kw)


def loop(plan):
    """One worker's loop in this process, as `optbench run --workers 1` runs it; the runs it trained."""
    return work_loop(plan.open(), plan.crew)


def finished_per_run(storage, name):
    study = Store.open(storage).existing_study(name)
    counts = {}
    for t in study.get_trials(deepcopy=False):
        if trial_status(t) in ("complete", "diverged", "stopped_early"):
            counts[t.user_attrs["run_hash"]] = counts.get(t.user_attrs["run_hash"], 0) + 1
    return counts


def test_runs_every_run_once_and_resumes(tmp_path):
    path = write_suite(tmp_path, "resume", GRID_12)
    storage = str(tmp_path / "r.journal")
    summary = run_suite(plan_for(path, storage), show_progress=False)
    assert summary.counts == {"complete": 12} and summary.best is not None
    frame = load_results("resume", storage)
    assert len(frame) == 12 and set(frame["status"]) == {"complete"}
    assert set(frame["run_hash"]) == {r.hash for r in Suite.load(path).runs()}
    assert {"config.optimizer.name", "config.optimizer.lr", "arm.optimizer", "seed", "value"} <= set(frame.columns)
    # the same command again trains nothing
    assert loop(plan_for(path, storage)) == 0
    assert len(Store.open(storage).existing_study("resume").get_trials()) == 12


def test_trial_params_are_the_axes_the_suite_varies(tmp_path):
    """Every config field was a parameter, with a categorical over every registry value: Optuna's importances
    and the dashboard gave constant fields more weight than the axes that varied."""
    path = write_suite(tmp_path, "params", 'optimizer = ["adamw", "lion"]\n"optimizer.lr" = [1e-3, 1e-2]', seeds="[0]")
    storage = str(tmp_path / "p.journal")
    run_suite(plan_for(path, storage), show_progress=False)
    study = Store.open(storage).existing_study("params")
    trials = study.get_trials()
    assert all(set(t.params) == {"optimizer", "optimizer.lr"} for t in trials)
    assert {(t.params["optimizer"], t.params["optimizer.lr"]) for t in trials} == {
        (o, lr) for o in ("adamw", "lion") for lr in (1e-3, 1e-2)
    }
    assert trials[0].distributions["optimizer.lr"] == optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)
    assert set(optuna.importance.get_param_importances(study)) == {"optimizer", "optimizer.lr"}
    # the axis edited: its runs' parameter is named apart, since a categorical's choices cannot change
    path.write_text(path.read_text().replace('optimizer = ["adamw", "lion"]', 'optimizer = ["adamw", "lion", "sgd"]'))
    run_suite(plan_for(path, storage), show_progress=False)
    new = [t for t in study.get_trials() if t.user_attrs["arm"]["optimizer"] == "sgd"]
    assert len(new) == 2 and all(set(t.params) == {"optimizer #2", "optimizer.lr"} for t in new)


def test_interrupted_and_failed_runs_run_again(tmp_path):
    path = write_suite(tmp_path, "retry", 'optimizer = ["adamw", "lion"]', seeds="[0]")
    storage = str(tmp_path / "f.journal")
    suite = Suite.load(path)
    store = Store.open(storage)
    study = store.study("retry")
    runs = suite.runs()
    # a claim left by a worker that died (its pid no longer exists)
    dead = study.ask()
    store.storage.set_trial_user_attr(dead._trial_id, "run_hash", runs[0].hash)
    store.storage.set_trial_user_attr(dead._trial_id, "worker", {**this_worker(), "pid": 2**22 + 12345})
    # a run that failed in an earlier session
    failed = study.ask()
    store.storage.set_trial_user_attr(failed._trial_id, "run_hash", runs[1].hash)
    store.storage.set_trial_user_attr(failed._trial_id, "status", "failed")
    store.storage.set_trial_user_attr(failed._trial_id, "session", "earlier")
    store.storage.set_trial_state_values(failed._trial_id, optuna.trial.TrialState.FAIL)
    assert loop(plan_for(path, storage)) == 2
    latest = latest_per_run(Store.open(storage).existing_study("retry").get_trials())
    assert {h: (trial_status(t), n) for h, (t, n) in latest.items()} == {
        runs[0].hash: ("complete", 2),
        runs[1].hash: ("complete", 2),
    }


def test_a_failing_run_is_stored_and_the_suite_goes_on(tmp_path, monkeypatch):
    from bench.train import Training

    step = Training.step

    def lion_fails(self):
        if self.cfg.optimizer.name == "lion":
            raise RuntimeError("lion failed")
        return step(self)

    monkeypatch.setattr(Training, "step", lion_fails)  # one worker: the suite trains in this process
    path = write_suite(tmp_path, "fails", 'optimizer = ["adamw", "lion"]', seeds="[0]")
    storage = str(tmp_path / "x.journal")
    summary = run_suite(plan_for(path, storage), show_progress=False)
    assert summary.counts == {"complete": 1, "failed": 1}
    frame = load_results("fails", storage)
    assert "Traceback" in frame[frame.status == "failed"]["error"].iloc[0]
    # the same session does not retry it; a new one does (and it fails again, once)
    summary = run_suite(plan_for(path, storage), show_progress=False)
    assert load_results("fails", storage).set_index("status")["attempts"].to_dict() == {
        "complete": 1,
        "failed": 2,
    }


def test_suites_sharing_a_storage_never_train_a_run_twice(tmp_path):
    storage = str(tmp_path / "shared.journal")
    first = write_suite(tmp_path, "first", 'optimizer = ["adamw", "lion"]', seeds="[0]")
    second = write_suite(tmp_path, "second", 'optimizer = ["lion", "sgd"]', seeds="[0]")
    run_suite(plan_for(first, storage), show_progress=False)
    summary = run_suite(plan_for(second, storage), show_progress=False)
    assert summary.copied == 1 and summary.counts == {"complete": 2}
    frame = load_results("second", storage).set_index("arm")
    lion_first = load_results("first", storage).set_index("arm").loc["optimizer=lion", "value"]
    assert frame.loc["optimizer=lion", "value"] == lion_first


def test_default_split_is_one_single_threaded_worker_per_core_for_small_models(tmp_path):
    tiny = Suite.load(write_suite(tmp_path, "d", GRID_12))
    assert default_split(tiny, cores=2) == (2, 1)
    wide = Suite.parse({"suite": {"name": "w"}, "base": {"model": "base"}})
    assert default_split(wide, cores=2) == (1, 2)


def test_a_stop_signal_during_a_claim_waits_for_it_and_marks_the_run_interrupted(tmp_path, monkeypatch):
    """The race CI once hit: SIGTERM after a claim's trial exists but before its params are written."""
    path = write_suite(tmp_path, "claimsig", GRID_12)
    storage = str(tmp_path / "c.journal")
    create = Store.create_running_trial

    def signalled_midway(self, study, user_attrs, flat):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        return create(self, study, user_attrs, flat)

    monkeypatch.setattr(Store, "create_running_trial", signalled_midway)
    with interrupts.on_stop_signals(), pytest.raises(KeyboardInterrupt):
        loop(plan_for(path, storage))
    (trial,) = Store.open(storage).existing_study("claimsig").get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["status"] == "interrupted"
    assert trial.params  # the claim was written whole


def test_crash_safety_sigkill_at_random_moments(tmp_path):
    """The runner (and its workers) killed with SIGKILL mid-suite, then resumed: one record per run."""
    path = write_suite(tmp_path, "crash", GRID_12, steps=300)
    storage = str(tmp_path / "crash.journal")
    rng = random.Random(1234)
    kills = 0
    for _ in range(4):
        proc = optbench("run", str(path), "--storage", storage, "--workers", "2", "--quiet", "--no-report")
        time.sleep(rng.uniform(3.0, 7.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    proc = optbench(
        "run", str(path), "--storage", storage, "--workers", "2", "--quiet", "--no-report", log=tmp_path / "final.log"
    )
    assert proc.wait(timeout=300) == 0, logs(tmp_path)
    counts = finished_per_run(storage, "crash")
    assert counts == {r.hash: 1 for r in Suite.load(path).runs()}
    frame = load_results("crash", storage)
    assert len(frame) == 12 and set(frame["status"]) == {"complete"}
    assert frame["value"].notna().all()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_workers_stop_with_the_runner(tmp_path, how):
    """SIGTERM to the runner alone stops its workers as Ctrl-C does; after a SIGKILL of the runner alone
    the orphaned workers notice and stop too. Either way their runs are marked interrupted, not left
    running, and the same command finishes the suite."""
    path = write_suite(tmp_path, "stop", 'optimizer = ["adamw", "lion"]', seeds="[0]", steps=2000)
    storage = str(tmp_path / "stop.journal")
    proc = optbench("run", str(path), "--storage", storage, "--workers", "2", "--quiet", "--no-report",
                    log=tmp_path / "runner.log")  # fmt: skip
    pids = {t.user_attrs["worker"]["pid"] for t in running_trials(storage, "stop", 2, attr="worker")}
    os.kill(proc.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    assert proc.wait(timeout=60) == (130 if how == "sigterm" else -signal.SIGKILL), logs(tmp_path)
    assert wait_until_gone(pids) == [], logs(tmp_path)
    trials = Store.open(storage).existing_study("stop").get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    interrupted = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    assert {t.user_attrs["worker"]["pid"] for t in interrupted} == pids
    summary = run_suite(plan_for(path, storage, workers=2), show_progress=False)
    assert summary.counts == {"complete": 2}


POSTGRES = os.environ.get("OPTBENCH_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="set OPTBENCH_TEST_POSTGRES (.ci/postgres.sh starts one)")


def unique(name):
    return f"{name}_{os.getpid()}_{time.time_ns()}"


def fresh_seeds():
    """Seeds no earlier test used: the database outlives tests, and finished runs would be reused."""
    n = time.time_ns() % 10**9
    return f"[{n}, {n + 1}]"


@pytest.fixture
def fresh_database():
    """The URL of a new, empty database on the test server (dropped afterwards): the state every machine
    of a distributed suite meets when they all start the same command at once."""
    import sqlalchemy

    name = unique("optbench_fresh")
    admin = sqlalchemy.create_engine(POSTGRES, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


OPEN_STORE = "import sys; from bench.store import Store; Store.open(sys.argv[1])"


@needs_postgres
@pytest.mark.parametrize("attempt", range(3))
def test_processes_opening_a_fresh_database_at_once_all_succeed(fresh_database, attempt):
    # concurrent CREATE TABLEs collide in PostgreSQL's catalog (pg_type_typname_nsp_index) unless serialized
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE, fresh_database], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors


@needs_postgres
def test_three_workers_share_one_postgres_storage_exactly_once(tmp_path, fresh_database):
    name = unique("pg_grid")
    path = write_suite(tmp_path, name, GRID_12, steps=40)
    args = ["run", str(path), "--storage", fresh_database, "--workers", "1", "--threads", "1", "--quiet", "--no-report"]
    procs = [optbench(*args, log=tmp_path / f"worker{i}.log") for i in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0], logs(tmp_path)
    study = Store.open(fresh_database).existing_study(name)
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert finished_per_run(fresh_database, name) == {r.hash: 1 for r in Suite.load(path).runs()}
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) >= 2  # the work was shared


@needs_postgres
def test_killed_worker_run_is_retried_by_another_through_heartbeats(tmp_path):
    name = unique("pg_kill")
    path = write_suite(tmp_path, name, GRID_12, steps=400, seeds=fresh_seeds())
    env = {**os.environ, "OPTBENCH_HEARTBEAT_INTERVAL": "1", "OPTBENCH_GRACE_PERIOD": "4"}
    args = ["run", str(path), "--storage", POSTGRES, "--workers", "1", "--threads", "1", "--quiet", "--no-report"]
    procs = [optbench(*args, env=env, log=tmp_path / f"worker{i}.log") for i in range(3)]
    store = Store.open(POSTGRES)
    victim = procs[0]
    deadline = time.time() + 120
    killed_run = None
    while time.time() < deadline and killed_run is None:
        study = store.existing_study(name)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if study else []:
            if t.user_attrs.get("worker", {}).get("pid") == victim.pid:
                time.sleep(0.5)  # mid-run
                os.killpg(victim.pid, signal.SIGKILL)
                killed_run = t.user_attrs["run_hash"]
                break
        time.sleep(0.2)
    assert killed_run is not None
    victim.wait()
    assert [p.wait(timeout=300) for p in procs[1:]] == [0, 0], logs(tmp_path)
    assert finished_per_run(POSTGRES, name) == {r.hash: 1 for r in Suite.load(path).runs()}
    attempts = [t for t in store.existing_study(name).get_trials() if t.user_attrs.get("run_hash") == killed_run]
    assert [t.state for t in attempts] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert attempts[1].user_attrs["worker"]["pid"] != victim.pid


def test_a_tuned_suite_extends_refines_and_confirms_each_run_exactly_once(tmp_path):
    """Two workers compute the protocol's next stages from the same stored results: every added run is
    trained once, the chosen settings again on the confirming seeds, and the same command trains nothing."""
    axes = 'optimizer = ["adamw", "sgd"]\n"optimizer.lr" = [1e-4, 1e-3]'
    extra = 'tune = ["optimizer.lr"]\ntune_extend = 1\ntune_refine = 1\nconfirm_seeds = 2'
    path = write_suite(tmp_path, "tuned", axes, seeds="[0]", extra=extra)
    storage = str(tmp_path / "t.journal")
    run_suite(plan_for(path, storage, workers=2), show_progress=False)
    frame = suite_results(Suite.load(path), storage)
    trials = Store.open(storage).existing_study("tuned").get_trials()
    hashes = [t.user_attrs["run_hash"] for t in trials]
    assert len(hashes) == len(set(hashes)) == len(frame) > 4  # something was added, nothing trained twice
    confirm = frame[frame["stage"] == "confirm"]
    assert sorted(confirm["seed"]) == [1, 1, 2, 2] and set(frame[frame["stage"] != "confirm"]["seed"]) == {0}
    assert {t.user_attrs["stage"] for t in trials} == set(frame["stage"]) <= {"grid", "tune", "confirm"}
    assert loop(plan_for(path, storage)) == 0


@pytest.mark.device
def test_auto_on_a_cpu_only_host_splits_as_the_cpu(tmp_path, monkeypatch):
    """The worker split must not take `auto` for a GPU on a host without one."""
    monkeypatch.setattr(devices, "cuda_count", lambda: 0)  # only device counting
    path = write_suite(tmp_path, "auto", 'optimizer = ["adamw", "lion"]', extra="")
    suite = Suite.load(path, {"device": "auto"})
    assert default_split(suite, cores=4) == (4, 1)  # small model: one single-threaded worker per core


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
