"""Per-machine defaults: optimizer kernels, the workers x threads split and the threads of one run, measured
once and cached."""

import json
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from suite_files import write_suite

from bench import calibrate, cli, machine
from bench.config import nested
from bench.runner import Plan, default_split, rule_split, run_suite
from bench.store import load_results
from bench.suite import Suite
from bench.train import Training, train
from conftest import tiny_config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    monkeypatch.setenv("OPTBENCH_CALIBRATION", str(path))
    return path


def n_params(cfg):
    return Training(cfg).model.num_params()


def impl_of(optimizer):
    d = optimizer.defaults
    return "fused" if d.get("fused") else "foreach" if d.get("foreach") else "forloop"


timings = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=9)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pick_keeps_the_default_unless_another_is_clearly_faster(data):
    rounds = data.draw(st.integers(1, 9))
    names = data.draw(st.lists(st.sampled_from(["fused", "foreach", "forloop"]), min_size=1, unique=True))
    default = data.draw(st.sampled_from(names))
    seconds = {n: data.draw(st.lists(st.floats(0.01, 1.0), min_size=rounds, max_size=rounds)) for n in names}
    choice, reason = calibrate.pick(seconds, default, calibrate.IMPL_MARGIN)
    assert choice in names and reason.startswith("measured")
    ratio = {n: sorted(t / d for t, d in zip(seconds[n], seconds[default], strict=True)) for n in names}
    median = {n: (r[(rounds - 1) // 2] + r[rounds // 2]) / 2 for n, r in ratio.items()}
    if choice != default:  # replaced only by the fastest, and only below the margin
        assert median[choice] < calibrate.IMPL_MARGIN
        assert median[choice] == pytest.approx(min(median.values()))
    else:
        assert all(m >= calibrate.IMPL_MARGIN - 1e-12 for n, m in median.items() if n != default)


def test_auto_takes_the_cached_verdict_and_the_record_says_why(cache, tiny):
    cfg = tiny()
    for threads in {1, torch.get_num_threads()}:  # train() runs at cfg.threads (1), Training at this process's
        key = machine.impl_key("AdamW", n_params(cfg), threads)
        machine.save("impl", key, {"impl": "foreach", "reason": "measured: foreach 0.80 of fused"})
    (opt,) = Training(cfg).optimizers
    assert impl_of(opt) == "foreach"  # the old rule took fused whatever the machine
    record = train(cfg)
    expected = {"AdamW": {"impl": "foreach", "reason": "measured: foreach 0.80 of fused"}}
    assert record.env["optimizer_kernels"] == expected
    # an explicit impl wins over the verdict; another model size has no verdict and keeps torch's rule
    assert impl_of(Training(tiny(**{"optimizer.impl": "forloop"})).optimizers[0]) == "forloop"
    assert impl_of(Training(tiny(**{"model.n_layer": 3})).optimizers[0]) == "fused"
    assert "no calibration" in train(tiny(**{"model.n_layer": 3})).env["optimizer_kernels"]["AdamW"]["reason"]


def test_measure_impls_times_every_implementation_and_caches_the_verdict(cache, tiny):
    for name, impls in (("adamw", {"fused", "foreach", "forloop"}), ("nadam", {"foreach", "forloop"})):
        cfg = tiny(optimizer=name)
        choice = calibrate.measure_impls(cfg, rounds=3, steps=2)
        cls_name = {"adamw": "AdamW", "nadam": "NAdam"}[name]
        verdict = machine.load()["impl"][machine.impl_key(cls_name, n_params(cfg), torch.get_num_threads())]
        assert set(verdict["seconds"]) == impls and all(len(t) == 3 for t in verdict["seconds"].values())
        assert choice.value == verdict["impl"] in impls and choice.reason == verdict["reason"]
    assert len(json.loads(cache.read_text())) == 1  # one machine key holding both verdicts


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64))
def test_splits_fill_the_cores_exactly(cores):
    assert all(w * t == cores for w, t in calibrate.splits(cores))
    assert (1, cores) in calibrate.splits(cores) and (cores, 1) in calibrate.splits(cores)


def test_default_split_takes_the_cached_verdict(cache, tmp_path):
    suite = Suite.load(write_suite(tmp_path, "split", 'optimizer = ["adamw"]'))
    assert default_split(suite, cores=2) == rule_split(suite.base, 2) == (2, 1)
    machine.save("split", machine.split_key(suite.base, 2), {"split": [1, 2], "reason": "measured 1x2 0.80"})
    assert default_split(suite, cores=2) == (1, 2)
    assert default_split(suite, cores=4) == (4, 1)  # no verdict for 4 cores: the rule


def test_measure_split_probes_every_split_in_fresh_processes(cache, tiny):
    cfg = tiny()
    choice = calibrate.measure_split(cfg, (2, 1), cores=2, rounds=1, seconds=0.2)
    verdict = machine.load()["split"][machine.split_key(cfg, 2)]
    assert set(verdict["seconds_per_step"]) == {"1x2", "2x1"}
    assert all(s[0] > 0 for s in verdict["seconds_per_step"].values())
    assert choice.value in ((1, 2), (2, 1)) and tuple(verdict["split"]) == choice.value


def test_every_suite_record_names_its_split_and_why(tmp_path):
    path = write_suite(tmp_path, "why", 'optimizer = ["adamw"]', seeds="[0]")
    storage = str(tmp_path / "w.journal")
    threads = torch.get_num_threads()  # a 1-worker suite runs in this process at the plan's thread count
    run_suite(Plan(str(path), {}, storage, 1, threads, split_reason="set on the command line"), show_progress=False)
    env = nested(load_results("why", storage).iloc[0], "env")
    assert env["split"] == f"1 worker(s) x {threads} thread(s): set on the command line"
    assert env["optimizer_kernels"]["AdamW"]["impl"] == "fused"


def test_optbench_calibrate_and_train_say_what_they_chose(cache, tmp_path, capsys):
    path = write_suite(tmp_path, "cal", 'optimizer = ["adamw", "nadam"]', seeds="[0]")
    base = Suite.load(path).base
    # the split is measured above and AdamW's kernels cached here, so `calibrate` measures NAdam's alone
    machine.save("split", machine.split_key(base, os.cpu_count()), {"split": [os.cpu_count(), 1], "reason": "r"})
    machine.save("threads", machine.split_key(base, os.cpu_count()), {"threads": 1, "reason": "measured 1 of 2"})
    for threads in {1, os.cpu_count(), torch.get_num_threads()}:
        key = machine.impl_key("AdamW", n_params(base), threads)
        machine.save("impl", key, {"impl": "fused", "reason": "measured before"})
    assert cli.main(["calibrate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "optbench run:" in out and "optbench train: 1 thread(s): measured 1 of 2" in out and "on 1 thread(s)" in out
    assert "AdamW kernels" in out and "NAdam kernels" in out  # every optimizer of the suite's runs
    verdicts = machine.load()
    assert verdicts["impl"][machine.impl_key("NAdam", n_params(base), 1)]["reason"].startswith("measured time")
    assert cli.main(["train", str(path), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "AdamW kernels for" in err and "measured before" in err and "1 thread(s): measured 1 of 2" in err
    assert machine.load() == verdicts  # cached: nothing measured again


@pytest.mark.parametrize("name", ["adafactor", "rmsprop", "nadam"])
def test_every_optimizer_without_a_fused_kernel_calibrates(cache, tiny, name):
    """Found by a walkthrough suite: Adafactor (no fused kernel among its impls) crashed the measurement,
    and with it `optbench run`, before any run trained."""
    cfg = tiny().override({"optimizer": name})
    choice = calibrate.measure_impls(cfg, rounds=1, steps=1)
    assert choice.value in ("fused", "foreach", "forloop") and choice.reason
    assert calibrate.calibrate_impls([cfg], 1)  # one line, no exception, even when measuring


def test_calibration_probes_load_the_plugins_of_the_suite(cache, tiny, monkeypatch):
    """A config naming a plugin corpus calibrates in fresh processes (they load this process's plugins)."""
    from pathlib import Path

    from bench import plugins
    from bench.axes import AXES

    before = dict(AXES["data"].registry.entries)
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.delenv(plugins.ENV, raising=False)
    try:
        plugins.load_one(str(Path(__file__).parent.parent / "examples" / "my_corpus.py"), None, "plugins")
        cfg = tiny(data={"name": "counting", "upto": 500}, **{"optimizer.impl": "auto"})
        (said,) = calibrate.calibrate_impls([cfg], threads=1)
        assert "calibration failed" not in said, said
        assert calibrate.measure_split(cfg, (2, 1), cores=2, rounds=1, seconds=0.2).value in ((1, 2), (2, 1))
    finally:
        AXES["data"].registry.entries.clear()
        AXES["data"].registry.entries.update(before)


# -- the thread count of one run (`optbench train`) --------------------------------------------------


def train_json(capsys, *sets):
    argv = ["train", "--json", "--quiet"]
    for item in ("model=tiny", "steps=4", "eval_interval=4", "eval_batches=1", "data.order=1", "data.alphabet=8",
                 "schedule=constant", *sets):  # fmt: skip
        argv += ["--set", item]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_optbench_train_takes_the_calibrated_thread_count_and_the_record_says_why(cache, capsys, monkeypatch):
    from bench.runfile import load_run_config

    cfg = load_run_config(None, ["model=tiny", "data.order=1", "data.alphabet=8"])
    machine.save("threads", machine.split_key(cfg, os.cpu_count()), {"threads": 1, "reason": "measured: 1 is 0.6x"})
    monkeypatch.setattr(calibrate, "_probe", lambda *a: pytest.fail("a cached verdict is not measured again"))
    record, err = train_json(capsys)
    assert record["config"]["threads"] == 1 and record["env"]["threads"] == 1
    assert record["env"]["threads_choice"] == "measured: 1 is 0.6x" and "1 thread(s): measured: 1 is 0.6x" in err
    record, _ = train_json(capsys, "threads=2")  # the config wins
    assert record["config"]["threads"] == 2 and record["env"]["threads_choice"] == "set in the config (threads)"
    assert record["config_hash"] == train_json(capsys)[0]["config_hash"]  # the same run at either count


def test_optbench_train_with_calibration_off_keeps_torchs_count(capsys):
    record, _ = train_json(capsys)
    assert record["config"]["threads"] == torch.get_num_threads()
    assert record["env"]["threads_choice"] == "torch's default; calibration off"


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 16), st.data())
def test_measure_threads_keeps_torchs_count_unless_another_is_clearly_faster(cores, data):
    """Every count from 1 to the cores' powers of two is timed, in fresh processes (here: made-up rates);
    the cached verdict is the fastest only where it beats torch's count by the margin."""
    default = data.draw(st.integers(1, cores))
    counts = calibrate.thread_counts(cores, default)
    assert counts[0] == 1 and counts[-1] == cores and default in counts
    rate = {c: data.draw(st.floats(1.0, 100.0)) for c in counts}
    probed = []

    def probe(cfg, workers, threads, seconds):
        probed.append((workers, threads))
        return rate[threads]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(calibrate, "_probe", probe)
        mp.setattr(calibrate, "save", lambda *a: None)
        choice = calibrate.measure_threads(tiny_config(), default, cores, rounds=2)
    assert sorted(set(probed)) == [(1, c) for c in counts] and len(probed) == 2 * len(counts)
    fastest = max(counts, key=lambda c: rate[c])
    if rate[default] / rate[fastest] < calibrate.THREADS_MARGIN:
        assert choice.value == fastest and choice.reason.startswith("measured")
    else:
        assert rate[default] / rate[choice.value] >= calibrate.THREADS_MARGIN
