"""optbench compare: the same suite from two sides, arm by arm (bench/compare.py, bench.stats.between)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from fabricate import fabricate_frame, fabricate_runs
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape  # as jinja2 escapes
from processes import one_line_error, run_optbench

from bench.cli import main
from bench.compare import COMPARE_SCHEMA_VERSION, Side, compare
from bench.stats import ALPHA, MIN_SEEDS_FOR_CI, between
from bench.suite import Suite

BASE = {"model": "tiny", "steps": 200, "eval_interval": 50, "schedule": "constant"}
ARMS = [0.01 * (i + 1) for i in range(30)]  # 30 arms: optimizer.weight_decay


def suite_of(arms=ARMS, seeds=range(5), name="cmp"):
    return Suite.parse({"suite": {"name": name, "seeds": list(seeds)}, "base": BASE,
                        "axes": {"optimizer.weight_decay": list(arms)}})  # fmt: skip


def toml_suite(tmp_path, name="demo", seeds="[0, 1, 2, 3, 4]", axes='optimizer = ["adamw", "lion", "sgd"]'):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[suite]\nname = "{name}"\nseeds = {seeds}\n[base]\nmodel = "tiny"\nsteps = 200\n'
                    f'eval_interval = 50\nschedule = "constant"\n[axes]\n{axes}\n')  # fmt: skip
    return path


# -- the statistic, against generated truth ------------------------------------------------------------


def two_sides(suite, shift_of, rng, sd=0.05, seed_sd=0.1, shared_seeds=True):
    """Two frames of the suite: `against` at the truth, `storage` shifted by shift_of(arm). With
    `shared_seeds`, a seed moves both sides alike (the same data order at two code versions)."""
    shifts = {s: rng.normal(0, seed_sd) for s in suite.seeds}
    against = fabricate_frame(suite, lambda r: (1.5, sd), rng, shifts=shifts if shared_seeds else None, seed_sd=seed_sd)
    storage = fabricate_frame(suite, lambda r: (1.5 + shift_of(r.arm_label), sd), rng,
                              shifts=shifts if shared_seeds else None, seed_sd=seed_sd)  # fmt: skip
    return storage, against


@pytest.mark.parametrize("pair", [True, False])
def test_the_interval_covers_the_true_shift_and_a_zero_shift_rarely_gets_a_verdict(pair):
    """1800 arms (60 suites of 30): half shifted by a known amount, half not. The stated 95% interval covers
    the true shift 93-97% of the time, paired by seed or by Welch; an arm with no shift gets a verdict
    (helps or hurts) no more often than alpha allows (Holm over the arms only lowers it)."""
    suite = suite_of()
    labels = [r.arm_label for r in suite.runs()][:: len(suite.seeds)]
    true = {arm: (0.0 if i % 2 else [-0.08, -0.03, 0.03, 0.08][i // 2 % 4]) for i, arm in enumerate(labels)}
    rng = np.random.default_rng(7 + pair)
    covered, null_verdicts, tests = [], [], set()
    for _ in range(60):
        storage, against = two_sides(suite, true.get, rng, shared_seeds=pair)
        table = between(storage, against, pair=pair)
        tests |= set(table["test"])
        for _, row in table.iterrows():
            covered.append(row["diff_low"] <= true[row["arm"]] <= row["diff_high"])
            if true[row["arm"]] == 0:
                null_verdicts.append(row["verdict"] in ("better", "worse"))
    assert tests == {"paired" if pair else "welch"}
    assert 0.93 <= np.mean(covered) <= 0.97, np.mean(covered)
    # 900 null arms: alpha's 5% plus three binomial standard errors
    assert np.mean(null_verdicts) <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / len(null_verdicts))


def test_pairing_by_seed_sees_what_welch_misses():
    """A shift of one run-noise sd under seed-to-seed spread twice as large: paired by seed, the seeds'
    shared shift cancels; Welch carries it in both sides' variance."""
    suite = suite_of()
    rng = np.random.default_rng(3)
    found = {True: 0, False: 0}
    for _ in range(10):
        storage, against = two_sides(suite, lambda a: 0.05, rng, sd=0.05, seed_sd=0.1)
        for pair in found:
            found[pair] += int((between(storage, against, pair=pair)["verdict"] == "worse").sum())
    assert found[True] > 2 * found[False], found


frames = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 5), st.sampled_from(["complete", "diverged"]),
              st.floats(1.0, 2.0)), max_size=30,
)  # fmt: skip


def frame_of(rows):
    seen = {}
    for arm, seed, status, value in rows:  # one run per arm and seed
        seen[(arm, seed)] = (status, value if status == "complete" else math.inf)
    return pd.DataFrame([{"arm": a, "seed": s, "status": st_, "value": v} for (a, s), (st_, v) in seen.items()],
                        columns=["arm", "seed", "status", "value"])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(frames, frames, st.booleans())
def test_every_arm_of_either_side_is_listed_and_verdicts_agree_with_intervals(a_rows, b_rows, pair):
    a, b = frame_of(a_rows), frame_of(b_rows)
    table = between(a, b, pair=pair)
    assert list(table["arm"]) == list(dict.fromkeys([*a["arm"], *b["arm"]]))
    for _, row in table.iterrows():
        on_a, on_b = row["arm"] in set(a["arm"]), row["arm"] in set(b["arm"])
        assert row["present"] == ("both" if on_a and on_b else "a" if on_a else "b")
        if row["present"] != "both":
            assert pd.isna(row["test"]) and row["verdict"] == "not tested"
            continue
        if row["test"] == "paired":
            assert row["pairs"] >= MIN_SEEDS_FOR_CI
        if row["verdict"] == "better":  # a Holm p below alpha: the raw p is too, so the interval excludes 0
            assert row["diff_high"] < 0
        if row["verdict"] == "worse":
            assert row["diff_low"] > 0
    swapped = between(b, a, pair=pair).set_index("arm").loc[table["arm"]]
    flip = {"better": "worse", "worse": "better"}
    for (_, row), (_, other) in zip(table.iterrows(), swapped.iterrows(), strict=True):
        assert other["verdict"] == flip.get(row["verdict"], row["verdict"])
        if not math.isnan(row["mean_diff"]):
            assert other["mean_diff"] == pytest.approx(-row["mean_diff"])


# -- stores, tuned arms, the command -------------------------------------------------------------------


def test_two_stores_with_a_known_shift(tmp_path):
    """Two fabricated stores: one arm shifted by 10 run-noise sds, the others not; an arm in one store only."""
    path = toml_suite(tmp_path)
    suite = Suite.load(path)
    a, b = str(tmp_path / "a.journal"), str(tmp_path / "b.journal")
    shifted = "optimizer=lion"
    fabricate_runs(suite, a, lambda i: "complete", seed=1, truth=lambda r: (1.5 + 0.2 * (r.arm_label == shifted), 0.02))
    fabricate_runs(suite, b, lambda i: "complete", seed=2, truth=lambda r: (1.5, 0.02),
                   runs=[r for r in suite.runs() if r.arm_label != "optimizer=sgd"])  # fmt: skip
    c = compare(suite, Side(a), suite, Side(b, flag="--against"))
    by = {x["arm"]: x for x in c["arms"]}
    assert c["schema_version"] == COMPARE_SCHEMA_VERSION
    assert by[shifted]["verdict"] == "worse" and by[shifted]["words"] == "hurts"
    assert by[shifted]["ci"][0] <= 0.2 <= by[shifted]["ci"][1] and by[shifted]["test"] == "paired"
    assert by["optimizer=sgd"]["present"] == "storage only" and by["optimizer=sgd"]["test"] is None
    assert c["counts"]["storage only"] == 1 and c["counts"]["hurts"] == 1
    assert c["sides"]["storage"]["environment"]["commit"] == ["fabricated"]
    assert "1 storage only" in c["headline"]


def test_tuned_arms_are_compared_at_each_sides_choice_on_its_confirming_seeds(monkeypatch):
    suite = Suite.parse({"suite": {"name": "t", "seeds": [0, 1, 2], "tune": ["optimizer.lr"],
                                   "confirm_seeds": [3, 4, 5], "tune_extend": 0, "tune_refine": 0},
                         "base": BASE, "axes": {"optimizer.weight_decay": [0.01, 0.02],
                                                "optimizer.lr": [1e-3, 1e-2]}})  # fmt: skip
    from bench.protocol import stages

    def rows(best_lr):
        out, stored = [], {}
        for _ in range(3):  # declared grid, then the confirmations the protocol asks for
            for run in stages(suite, stored).runs:
                if run.hash in stored:
                    continue
                lr = run.values["optimizer.lr"]
                value = (1.0 if lr == best_lr else 1.4) + 0.01 * run.seed + (0.3 if run.stage == "confirm" else 0)
                out.append({"run_hash": run.hash, "seed": run.seed, "arm": run.arm_label, "status": "complete",
                            "value": value, "stage": run.stage})  # fmt: skip
                stored[run.hash] = ("complete", value)
        return pd.DataFrame(out)

    frames = {"a": rows(1e-3), "b": rows(1e-2)}  # each side's best rate differs
    monkeypatch.setattr("bench.compare.suite_results", lambda suite, storage, with_curves: frames[storage])
    c = compare(suite, Side("a"), suite, Side("b", flag="--against"))
    for arm in c["arms"]:
        tuned = arm["tuned"]
        assert tuned["storage"]["tuned_setting"] == "optimizer.lr=0.001"
        assert tuned["against"]["tuned_setting"] == "optimizer.lr=0.01"
        assert tuned["storage"]["judged_on"] == tuned["against"]["judged_on"] == "confirming"
        assert arm["pairs"] == 3 and arm["difference"] == pytest.approx(0)  # both confirmed at 1.3 + 0.01 seed


def test_the_command_prints_the_table_and_writes_its_json(tmp_path, capsys):
    path = toml_suite(tmp_path)
    suite = Suite.load(path)
    a, b = str(tmp_path / "a.journal"), str(tmp_path / "b.journal")
    fabricate_runs(suite, a, lambda i: "complete", seed=1)
    fabricate_runs(suite, b, lambda i: "complete", seed=2)
    out, page = tmp_path / "c.json", tmp_path / "c.html"
    assert main(["compare", str(path), "--storage", a, "--against", b, "--json", str(out), "--out", str(page)]) == 0
    printed = capsys.readouterr().out
    c = json.loads(out.read_text())
    assert c["headline"].split()[0] in printed and all(x["arm"] in printed for x in c["arms"])
    assert {x["present"] for x in c["arms"]} == {"both"}
    text = page.read_text()
    assert escape(c["headline"]) in text and all(escape(x["arm"]) in text for x in c["arms"])


def test_one_store_at_two_settings(tmp_path):
    """Runs of the suite with and without a --set in one store: each side is what the suite implies with its
    own settings."""
    path = toml_suite(tmp_path)
    store = str(tmp_path / "s.journal")
    fabricate_runs(Suite.load(path), store, lambda i: "complete", seed=1)
    fabricate_runs(Suite.load(path, {"batch_size": 8}), store, lambda i: "complete", seed=2)
    out = tmp_path / "c.json"
    args = ["compare", str(path), "--storage", store, "--set", "batch_size=8", "--json", str(out)]
    assert main(args) == 0
    c = json.loads(out.read_text())
    assert c["sides"]["storage"]["overrides"] == {"batch_size": 8} and c["sides"]["against"]["runs"] == 15
    # a setting outside every run's identity (the thread count) leaves the same runs
    same = one_line_error(run_optbench("compare", str(path), "--storage", store, "--set", "threads=1"))
    assert "same runs" in same
    # a setting only some arms take (an axis value naming another optimizer starts from its defaults): the
    # others are the same runs on both sides, said so, not tested
    fabricate_runs(Suite.load(path, {"optimizer.weight_decay": 0}), store, lambda i: "complete", seed=3,
                   runs=Suite.load(path, {"optimizer.weight_decay": 0}).runs()[:5])  # fmt: skip
    assert main(["compare", str(path), "--storage", store, "--set", "optimizer.weight_decay=0",
                 "--json", str(out)]) == 0  # fmt: skip
    arms = {a["arm"]: a for a in json.loads(out.read_text())["arms"]}
    assert {k: a["same_runs"] for k, a in arms.items()} == {"optimizer=adamw": False, "optimizer=lion": True,
                                                            "optimizer=sgd": True}  # fmt: skip
    assert "same runs on both sides" in arms["optimizer=lion"]["text"] and arms["optimizer=adamw"]["test"] == "paired"
    # a store holding only the side with the setting, compared without naming it: the message says why
    only = str(tmp_path / "only.journal")
    fabricate_runs(Suite.load(path, {"batch_size": 8}), only, lambda i: "complete")
    hint = one_line_error(run_optbench("compare", str(path), "--storage", only, "--against", store))
    assert "--storage" in hint and "15 stored runs of it differ" in hint and "--set" in hint


def test_bad_input_is_one_line_naming_the_store(tmp_path):
    path = toml_suite(tmp_path)
    other = toml_suite(tmp_path, name="other")
    a, b = str(tmp_path / "a.journal"), str(tmp_path / "b.journal")
    fabricate_runs(Suite.load(path), a, lambda i: "complete")
    fabricate_runs(Suite.load(other), b, lambda i: "complete")
    lacks = one_line_error(run_optbench("compare", str(path), "--storage", a, "--against", b))
    assert "--against" in lacks and b in lacks and "suite 'demo'" in lacks
    missing = one_line_error(run_optbench("compare", str(path), "--storage", a, "--against", str(tmp_path / "no")))
    assert "no" in missing
    same = one_line_error(run_optbench("compare", str(path), "--storage", a))
    assert "--against" in same and "same runs" in same
    # an output that cannot be written is refused before anything is read or written
    bad = tmp_path / "a.journal" / "c.json"  # under a file
    unwritable = one_line_error(run_optbench("compare", str(path), "--storage", a, "--against", a, "--set",
                                             "batch_size=8", "--json", str(bad)))  # fmt: skip
    assert "--json" in unwritable and not bad.exists()


def test_report_baseline_on_the_command_line(tmp_path):
    path = toml_suite(tmp_path)
    store = str(tmp_path / "s.journal")
    fabricate_runs(Suite.load(path), store, lambda i: "complete")
    out = tmp_path / "r.html"
    assert main(["report", str(path), "--storage", store, "--out", str(out), "--no-sample",
                 "--baseline", "optimizer=sgd"]) == 0  # fmt: skip
    assert json.loads(out.with_suffix(".json").read_text())["baseline"] == "optimizer=sgd"
    wrong = one_line_error(run_optbench("report", str(path), "--storage", store, "--out", str(tmp_path / "w.html"),
                                        "--baseline", "optimizer=lino"))  # fmt: skip
    assert "--baseline" in wrong and "did you mean" in wrong.lower() and "optimizer=lion" in wrong
    assert not (tmp_path / "w.html").exists()
    # the suite file's key gives the same message under its own name
    path.write_text(path.read_text().replace("[base]", 'baseline = "optimizer=lino"\n[base]'))
    keyed = one_line_error(run_optbench("report", str(path), "--storage", store))
    assert keyed.split("suite.baseline", 1)[1].split(";")[0] == wrong.split("--baseline", 1)[1].split(";")[0]


def test_two_stores_of_a_tuned_suite_as_the_tuning_protocol_leaves_them(tmp_path):
    """Each store tuned to its own optimum (the protocol's extensions and confirmations included): each arm is
    compared at each side's choice, on the confirming seeds, and the known shift between the sides lies in
    the interval."""
    from fabricate import fabricate_protocol

    path = toml_suite(tmp_path, "proto", axes='optimizer = ["adamw", "lion"]\n"optimizer.lr" = [1e-4, 1e-3, 1e-2]')
    path.write_text(path.read_text().replace("[base]", 'tune = ["optimizer.lr"]\ntune_extend = 1\n[base]'))
    suite = Suite.load(path)
    stores = {"a": str(tmp_path / "a.journal"), "b": str(tmp_path / "b.journal")}
    optimum = {"a": -3.0, "b": -2.0}  # log10 of the best rate: each side chooses its own
    level = {"a": 1.45, "b": 1.5}  # side a is lower by 0.05 at its optimum

    for side, storage in stores.items():

        def truth(run, side=side):
            return level[side] + 0.05 * (math.log10(run.values["optimizer.lr"]) - optimum[side]) ** 2, 0.01

        fabricate_protocol(suite, storage, truth, seed={"a": 1, "b": 2}[side])
    c = compare(suite, Side(stores["a"]), suite, Side(stores["b"], flag="--against"))
    for arm in c["arms"]:
        tuned = arm["tuned"]
        assert tuned["storage"]["tuned_setting"] == "optimizer.lr=0.001"
        assert tuned["against"]["tuned_setting"] == "optimizer.lr=0.01"
        assert tuned["storage"]["judged_on"] == tuned["against"]["judged_on"] == "confirming"
        assert arm["test"] == "paired" and arm["pairs"] == len(suite.confirm_seeds)
        assert arm["ci"][0] <= -0.05 <= arm["ci"][1], arm
