"""bench.conclusions against generated truth: fabricated stores and frames with known means and variances."""

import functools
import json
import math
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fabricate import fabricate_frame, fabricate_runs, fabricate_search
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.conclusions import ABLATION_WORDS, SCHEMA_VERSION, VERDICT_WORDS, conclude, fmt
from bench.report import build_report, conclusions_path
from bench.results import suite_results
from bench.suite import Suite

BASE = {"model": "tiny", "steps": 200, "eval_interval": 50, "schedule": "constant"}
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def suite_of(axes, seeds=(0, 1, 2), design="grid", tune=(), target=None, name="c"):
    meta = {"name": name, "seeds": list(seeds), "design": design, "tune": list(tune)}
    if target is not None:
        meta["target"] = target
    return Suite.parse({"suite": meta, "base": BASE, "axes": axes})


def toml_suite(tmp_path, name, axes, seeds="[0, 1, 2]", extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[suite]\nname = "{name}"\nseeds = {seeds}\n{extra}\n[base]\nmodel = "tiny"\nsteps = 200\n'
                    f'eval_interval = 50\nschedule = "constant"\n[axes]\n{axes}\n')  # fmt: skip
    return path


# -- the file -----------------------------------------------------------------------------------------


def test_the_conclusions_are_written_beside_the_report_and_where_report_json_says(tmp_path, capsys):
    path = toml_suite(tmp_path, "beside", 'optimizer = ["adamw", "lion", "sgd"]', extra="target = 2.0")
    storage = str(tmp_path / "b.journal")
    fabricate_runs(Suite.load(path), storage, status=lambda i: "complete", time_sd=0.2)
    out = tmp_path / "elsewhere" / "findings.json"
    assert main(["report", str(path), "--storage", storage, "--json", str(out), "--no-sample"]) == 0
    beside = tmp_path / "reports" / "beside.json"
    assert beside.read_bytes() == out.read_bytes()
    c = json.loads(out.read_text())
    assert c["schema_version"] == SCHEMA_VERSION and c["suite"]["name"] == "beside"
    arm = c["arms"][0]
    for key in ("arm", "rank", "mean", "ci", "n", "seeds", "ties", "edge_flags", "tuned_setting", "tuning_seeds",
                "confirming_seeds", "judged_on"):  # fmt: skip
        assert key in arm, key
    assert c["headline"]["text"] and c["comparisons"]["baseline"] and c["timing"]["text"]
    assert conclusions_path(tmp_path / "r.html") == tmp_path / "r.json"
    assert conclusions_path(tmp_path / "r.json") == tmp_path / "r.json.conclusions.json"
    # a --json path that cannot be written is refused before any work
    assert main(["report", str(path), "--storage", storage, "--json", str(tmp_path)]) == 2
    assert "--json" in capsys.readouterr().err


VOID = {"meta", "img", "br", "hr", "link", "input", "col"}


class Texts(HTMLParser):
    """The text of every element with a class (and of every <li>), by class; table cells by Styler id."""

    def __init__(self):
        super().__init__()
        self.open, self.found, self.cells = [], {}, {}

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        a = dict(attrs)
        cell = a.get("id", "") if tag == "td" and a.get("id", "").startswith("T_") else ""
        self.open.append([tag, a.get("class") or (tag if tag == "li" else ""), cell, ""])

    def handle_endtag(self, tag):
        while self.open:
            name, key, cell, text = self.open.pop()
            if key:
                self.found.setdefault(key, []).append(text)
            if cell:
                table, _, where = cell[2:].partition("_row")
                row, _, col = where.partition("_col")
                self.cells.setdefault(table, {}).setdefault(int(row), {})[int(col)] = text
            if self.open:
                self.open[-1][3] += text
            if name == tag:
                break

    def handle_data(self, data):
        if self.open:
            self.open[-1][3] += data


def columns(html, table):
    """{header: [cell text per row]} of a Styler table."""
    head = html.split(f'id="T_{table}"', 1)[1].split("</thead>", 1)[0]
    headers = [h.split(">", 1)[1].split("<", 1)[0] for h in head.split("<th ")[1:]]
    parser = Texts()
    parser.feed(html)
    rows = parser.cells.get(table, {})
    return {h: [rows[r].get(i, "").strip() for r in sorted(rows)] for i, h in enumerate(headers)}


def kinds(tmp_path):
    """One report of each kind: a grid with a target, a tuned grid with confirming seeds, an ablation, a
    search. Yields (html, conclusions)."""
    grid = toml_suite(tmp_path, "kgrid", 'optimizer = ["adamw", "lion", "sgd", "nadam"]\nbatch_size = [4, 8]',
                      extra="target = 2.0")  # fmt: skip
    tuned = toml_suite(tmp_path, "ktuned", 'optimizer = ["adamw", "lion", "sgd"]\n"optimizer.lr" = [1e-3, 3e-3, 1e-2]',
                       seeds="[0, 1, 2, 3, 4, 5]", extra='tune = ["optimizer.lr"]')  # fmt: skip
    ablation = toml_suite(tmp_path, "kabl", 'clip = ["none", "value", "adaptive"]\ninit = ["orthogonal"]',
                          seeds="[0, 1, 2, 3]", extra='design = "ablation"\ntarget = 2.2')  # fmt: skip
    search = toml_suite(tmp_path, "ksearch", "", extra="target = 1.8").read_text().split("[axes]")[0]
    (tmp_path / "ksearch.toml").write_text(search + '[search]\noptimizer = ["adamw", "lion"]\n'
                                           '"optimizer.lr" = { low = 1e-4, high = 1e-1, log = true }\n')  # fmt: skip
    storage = str(tmp_path / "k.journal")
    fabricate_runs(Suite.load(grid), storage, lambda i: "complete", seed=1, seed_sd=0.02, time_sd=0.2)
    fabricate_runs(Suite.load(tuned), storage, lambda i: "complete", seed=2, seed_sd=0.02,
                   truth=lambda r: (1.4 + {"adamw": 0, "lion": 0.02, "sgd": 0.2}[r.arm["optimizer"]]
                                    + 0.1 * (math.log10(float(r.arm["optimizer.lr"])) + 2.5) ** 2, 0.01))  # fmt: skip
    fabricate_runs(
        Suite.load(ablation),
        storage,
        lambda i: "complete",
        seed=3,
        seed_sd=0.02,
        time_sd=0.2,
        truth=lambda r: (1.8 + {"clip=adaptive": -0.03, "init=orthogonal": 0.05}.get(r.arm_label, 0), 0.005),
    )
    fabricate_search(Suite.load(tmp_path / "ksearch.toml"), storage, trials=12, pruned=lambda i: i % 4 == 1)
    for path, confirm in ((grid, None), (tuned, [3, 4, 5]), (ablation, None), (tmp_path / "ksearch.toml", None)):
        report = build_report(Suite.load(path), storage, tmp_path / f"{path.stem}.html", sample=False,
                              confirm_seeds=confirm)  # fmt: skip
        yield report.read_text(), json.loads(conclusions_path(report).read_text())


def test_the_report_states_nothing_the_conclusions_do_not_hold(tmp_path):
    for html, c in kinds(tmp_path):
        parser = Texts()
        parser.feed(html)
        found = parser.found
        h = c["headline"]
        assert found["headline"] == [h["text"]], c["suite"]["name"]
        assert found.get("li", []) == h["lines"]
        assert found.get("caution", []) == h["cautions"]
        assert found.get("tie", []) == (h["ties"] if h["ties_beside"] else [])
        assert found.get("verdict", []) == ([c["timing"]["text"]] if c["timing"] else [])
        assert found.get("note importance", []) == [s["importance_note"] for s in c["search"]]
        board = columns(html, "leaderboard")
        assert board["Arm"] == [a["arm"] for a in c["arms"]]
        assert board["Rank"] == [str(a["rank"]) for a in c["arms"]]
        assert board["Mean"] == [fmt(a["mean"]) for a in c["arms"]]
        assert board["95% CI"] == [f"[{fmt(a['ci'][0])}, {fmt(a['ci'][1])}]" if a["ci"] else a["no_interval"]
                                   for a in c["arms"]]  # fmt: skip
        if "Flags" in board:
            assert board["Flags"] == ["; ".join(f["text"] for f in a["edge_flags"]) for a in c["arms"]]
        if "Best setting" in board:
            assert board["Best setting"] == [a["tuned_setting"] for a in c["arms"]]
        if c["comparisons"]["withheld"]:
            assert 'id="T_comparisons"' not in html and c["comparisons"]["withheld"] in found["note"]
        else:
            table = columns(html, "comparisons")
            rows = c["comparisons"]["rows"]
            assert table["Arm"] == [r["arm"] for r in rows]
            if "Verdict" in table:
                assert table["Verdict"] == [r["verdict"] for r in rows]
                assert table["p (Holm)"] == [f"{r['p_holm']:.3g}" if r["p_holm"] is not None else "–" for r in rows]
        if c["timing"] and c["timing"]["arms"]:
            timing = columns(html, "target")
            assert timing["Arm"] == [a["arm"] for a in c["timing"]["arms"]]
            assert timing["Time against the fastest"] == [a["time_verdict"] for a in c["timing"]["arms"]]


# -- tuned arms: edges and confirmation -----------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(optima=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 4)), min_size=1, max_size=4),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_edge_flags_are_right_in_every_generated_case(optima, seed):
    """Arms with grids of their own (1 to 5 learning rates) whose true best rate sits at a known place,
    well apart from the next (so the seeds find it): flagged exactly where that place is an end of a grid of
    two or more values, never when it lies inside."""
    arms = [(round(0.01 * (i + 1), 3), LRS[:k], min(at, k - 1)) for i, (k, at) in enumerate(optima)]
    values = [{"name": "adamw", "weight_decay": wd, "lr": lr} for wd, grid, _ in arms for lr in grid]
    suite = suite_of({"optimizer": values}, tune=["optimizer.lr"])
    by_wd = {wd: (grid, at) for wd, grid, at in arms}

    def truth(run):
        grid, at = by_wd[run.values["optimizer"]["weight_decay"]]
        return 1.5 + 0.2 * abs(grid.index(run.values["optimizer"]["lr"]) - at), 0.005

    c = conclude(suite, fabricate_frame(suite, truth, np.random.default_rng(seed)))
    assert len(c["arms"]) == len(arms)
    for arm in c["arms"]:
        grid, at = by_wd[float(arm["arm"].split("weight_decay=")[1].rstrip(")"))]
        flags = arm["edge_flags"]
        assert arm["tuned_values"]["optimizer.lr"] == grid[at]
        if len(grid) >= 2 and at in (0, len(grid) - 1):
            (flag,) = flags
            side = "smallest" if at == 0 else "largest"
            assert flag["position"] == side and flag["grid_size"] == len(grid)
            assert flag["text"] == (f"optimizer.lr: tuned optimum at the edge of its grid ({side} of {len(grid)} "
                                    "values): the arm may be under-tuned")  # fmt: skip
        else:
            assert flags == []
    assert c["tuning"]["edge_flagged"] == [a["arm"] for a in c["arms"] if a["edge_flags"]]
    best = c["arms"][0]
    assert bool(best["edge_flags"]) == any(line.startswith(f"{best['arm']}: ") for line in c["headline"]["cautions"])


def test_an_edge_flag_shows_in_the_leaderboard_and_the_headline(tmp_path):
    path = toml_suite(tmp_path, "edge", 'optimizer = ["adamw", "lion"]\n"optimizer.lr" = [1e-3, 3e-3, 1e-2]',
                      extra='tune = ["optimizer.lr"]')  # fmt: skip
    storage = str(tmp_path / "e.journal")
    slope = {"adamw": -0.1, "lion": 0.1}  # adamw best at the largest rate, lion at the smallest
    fabricate_runs(
        Suite.load(path),
        storage,
        lambda i: "complete",
        truth=lambda r: (1.5 + slope[r.arm["optimizer"]] * math.log10(float(r.arm["optimizer.lr"])), 0.002),
    )
    html = build_report(Suite.load(path), storage, tmp_path / "edge.html", sample=False).read_text()
    board = columns(html, "leaderboard")
    assert sorted(board["Flags"]) == [
        "optimizer.lr: tuned optimum at the edge of its grid (largest of 3 values): the arm may be under-tuned",
        "optimizer.lr: tuned optimum at the edge of its grid (smallest of 3 values): the arm may be under-tuned",
    ]
    cautions = Texts()
    cautions.feed(html)
    assert any("the arm may be under-tuned" in c for c in cautions.found["caution"])
    assert any("2 of 2 tuned arms" in c for c in cautions.found["caution"])


@functools.lru_cache(maxsize=4)
def confirmation_suite(groups=4, confirm=3, settings_per_arm=3):
    return suite_of({"optimizer.weight_decay": [round(0.01 * (i + 1), 3) for i in range(groups)],
                     "optimizer.lr": LRS[:settings_per_arm]},
                    seeds=range(3 + confirm), tune=["optimizer.lr"])  # fmt: skip


def test_confirming_seeds_judge_a_tuned_arm_and_take_no_part_in_choosing_it():
    suite = confirmation_suite(groups=2)
    rows = []
    for run in suite.runs():
        lr = run.values["optimizer.lr"]
        # on seeds 0-2 the smallest rate is best; on the confirming seeds 3-5 the largest would be
        value = {1e-3: 1.0, 3e-3: 1.2, 1e-2: 1.4}[lr] if run.seed < 3 else {1e-3: 1.6, 3e-3: 1.5, 1e-2: 0.5}[lr]
        rows.append({"run_hash": run.hash, "seed": run.seed, "arm": run.arm_label, "status": "complete",
                     "value": value + 0.01 * run.seed})  # fmt: skip
    frame = pd.DataFrame(rows)
    c = conclude(suite, frame, confirm_seeds=[3, 4, 5])
    for arm in c["arms"]:
        assert arm["tuned_values"]["optimizer.lr"] == 1e-3  # chosen on the tuning seeds alone
        assert arm["tuning_seeds"] == [0, 1, 2] and arm["confirming_seeds"] == [3, 4, 5]
        assert arm["judged_on"] == "confirming" and arm["seeds"] == [3, 4, 5]
        assert arm["mean"] == pytest.approx(1.6 + 0.04)  # the chosen rate's runs on seeds 3-5
    assert "confirming seeds 3, 4, 5, chosen on 0, 1, 2" in c["headline"]["text"]
    # the same runs flagged row by row instead
    flagged = conclude(suite, frame.assign(confirming=frame["seed"] >= 3))
    assert flagged["arms"] == c["arms"] and flagged["headline"] == c["headline"]
    # without confirming runs the arm is judged on the seeds that chose it, and the headline says so
    alone = conclude(suite, frame[frame["seed"] < 3])
    assert all(a["judged_on"] == "tuning" and a["confirming_seeds"] == [] for a in alone["arms"])
    assert any("winner's curse" in line for line in alone["headline"]["cautions"])


@pytest.mark.parametrize("n", [3, 5, 10])
def test_confirmed_intervals_cover_the_chosen_settings_true_mean(n):
    """1200 tuned arms, each choosing among 3 rates of equal true mean on 3 seeds: the interval the
    conclusions state, from n confirming seeds, covers that mean 93-97% of the time; the mean of the seeds
    that chose is biased low (the winner's curse), the confirmed mean is not."""
    suite = confirmation_suite(groups=200, confirm=10)
    rng = np.random.default_rng(n)
    covered, old_bias, new_bias = [], [], []
    for _ in range(6):
        frame = fabricate_frame(suite, lambda r: (1.5, 0.05), rng)
        frame = frame[frame["seed"] < 3 + n]
        confirmed = conclude(suite, frame, confirm_seeds=range(3, 3 + n))
        covered += [a["ci"][0] <= 1.5 <= a["ci"][1] for a in confirmed["arms"]]
        new_bias += [a["mean"] - 1.5 for a in confirmed["arms"]]
        old_bias += [a["mean"] - 1.5 for a in conclude(suite, frame[frame["seed"] < 3])["arms"]]
    assert 0.93 <= np.mean(covered) <= 0.97, np.mean(covered)
    se = 0.05 / math.sqrt(3)  # of a mean over the 3 tuning seeds
    assert np.mean(old_bias) < -0.6 * se  # the minimum of 3 such means lies 0.85 se low
    assert abs(np.mean(new_bias)) < 3 * 0.05 / math.sqrt(n) / math.sqrt(len(new_bias))


# -- headlines and paired tables -----------------------------------------------------------------------


EFFECTS = st.sampled_from([0.0, 0.0, -0.003, 0.003, -0.03, 0.03, 0.1])


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(design=st.sampled_from(["grid", "grid", "ablation"]), effects=st.lists(EFFECTS, min_size=2, max_size=6),
       seeds=st.sampled_from([3, 4, 5, 2]), seed_sd=st.sampled_from([0.0, 0.02]), seed=st.integers(0, 2**16),
       baseline_at=st.integers(0, 6))  # fmt: skip
def test_the_headline_never_contradicts_its_paired_table(design, effects, seeds, seed_sd, seed, baseline_at):
    """Generated stores (arms with known effects, shared seed noise or none): what the headline says of an
    arm against the baseline is the paired table's verdict, and an ablation lists every change, ordered by
    its paired difference."""
    values = [{"name": "none"}, {"name": "value"}, {"name": "adaptive"}, {"name": "norm", "max_norm": 0.5},
              {"name": "norm", "max_norm": 2.5}, {"name": "norm", "max_norm": 4.0}][: len(effects)]  # fmt: skip
    axes = {"clip": values}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.toml"
        path.write_text(json_to_toml(design, seeds, axes))
        suite = Suite.load(path)
        arms = list(dict.fromkeys(r.arm_label for r in suite.runs()))
        effect = {arm: (effects[i % len(effects)] if arm != "base" else 0.0) for i, arm in enumerate(arms)}
        storage = str(Path(tmp) / "h.journal")
        fabricate_runs(suite, storage, lambda i: "complete", seed=seed, seed_sd=seed_sd,
                       truth=lambda r: (1.6 + effect[r.arm_label], 0.005))  # fmt: skip
        if design == "grid" and baseline_at % (len(arms) + 1) < len(arms):
            path.write_text(path.read_text().replace("[base]", f'baseline = "{arms[baseline_at % len(arms)]}"\n[base]'))
            suite = Suite.load(path)
        c = conclude(suite, suite_results(suite, storage, with_curves=False))
    rows = {r["arm"]: r for r in c["comparisons"]["rows"]}
    h = c["headline"]
    if design == "ablation":
        changes = c["ablation"]["changes"]
        event(f"ablation: {sorted({ch['verdict'] for ch in changes})}")
        assert [ch["arm"] for ch in changes] == sorted(rows, key=lambda a: (rows[a]["mean_diff"] is None,
                                                                             rows[a]["mean_diff"] or 0))  # fmt: skip
        assert len(h["lines"]) == len(rows)
        for ch, line in zip(changes, h["lines"], strict=True):
            r = rows[ch["arm"]]
            assert ch["verdict"] == ABLATION_WORDS[r["verdict"]] and line.startswith(f"{ch['arm']}: ")
            assert fmt(r["mean_diff"], sign=True) in line and ABLATION_WORDS[r["verdict"]] in line
            if r["diff_ci"] and r["verdict"] != "not tested":
                assert f"[{fmt(r['diff_ci'][0], sign=True)}, {fmt(r['diff_ci'][1], sign=True)}]" in line
        for word in ("helps", "hurts"):
            assert sum(ch["verdict"] == word for ch in changes) == sum(
                ABLATION_WORDS[r["verdict"]] == word for r in rows.values())  # fmt: skip
        return
    best, baseline = h["best"], c["baseline"]
    if best is None:
        return
    said = sorted({r["verdict"] for r in rows.values()}) if best == baseline else rows[best]["verdict"]
    event(f"best {'is' if best == baseline else 'is not'} the baseline; {said}")
    if best == baseline:
        assert sorted(h["ties"]) == sorted(a for a, r in rows.items() if r["verdict"] == "not distinguishable")
        worse = sum(r["verdict"] == "worse" for r in rows.values())
        assert (f"{worse} worse" in h["text"]) == bool(worse)
    else:
        r = rows[best]
        said = h["text"].split(f"Against the baseline {baseline}, paired: ", 1)[1]
        assert f": {VERDICT_WORDS[r['verdict']]}" in said
        if r["verdict"] in ("better", "worse"):
            assert baseline not in h["ties"]
        for word in ("better", "worse"):
            if r["verdict"] != word:
                assert f": {word}" not in said


def json_to_toml(design, seeds, axes):
    clip = ", ".join("{ " + ", ".join(f'{k} = {json.dumps(v)}' for k, v in value.items()) + " }"
                     for value in axes["clip"])  # fmt: skip
    return (f'[suite]\nname = "h"\ndesign = "{design}"\nseeds = {list(range(seeds))}\n[base]\nmodel = "tiny"\n'
            f'steps = 200\neval_interval = 50\nschedule = "constant"\nclip = {{ name = "norm", max_norm = 1.0 }}\n'
            f"[axes]\nclip = [{clip}]\n")  # fmt: skip


def test_ties_are_listed_in_full_beside_a_headline_that_counts_them(tmp_path):
    lrs = ", ".join(str(1e-3 * (1 + i / 10)) for i in range(12))
    path = toml_suite(tmp_path, "ties", f'"optimizer.lr" = [{lrs}]', extra='baseline = "optimizer.lr=0.0021"')
    storage = str(tmp_path / "t.journal")
    fabricate_runs(Suite.load(path), storage, lambda i: "complete", truth=lambda r: (1.5, 0.05))
    report = build_report(Suite.load(path), storage, tmp_path / "ties.html", sample=False)
    c = json.loads(conclusions_path(report).read_text())
    h = c["headline"]
    assert h["ties_beside"] and len(h["ties"]) > 8 and "(listed beside)" in h["text"]
    assert "..." not in h["text"] and "…" not in h["text"]
    html = report.read_text()
    for arm in h["ties"]:
        assert f'<span class="tie">{arm}</span>' in html
    rank_one = {a["arm"] for a in c["arms"] if a["rank"] == 1}
    assert set(h["ties"]) <= rank_one - {h["best"]}


@pytest.mark.parametrize(("axes", "unequal"), [("batch_size = [4, 16]", True), ("grad_accum = [1, 2]", True),
                                               ('"optimizer.lr" = [1e-3, 3e-3]', False)])  # fmt: skip
def test_arms_trained_on_unequal_token_budgets_are_said_so(tmp_path, axes, unequal):
    path = toml_suite(tmp_path, "budget", axes)
    storage = str(tmp_path / "b.journal")
    fabricate_runs(Suite.load(path), storage, lambda i: "complete", truth=lambda r: (1.5, 0.05))
    c = conclude(Suite.load(path), suite_results(Suite.load(path), storage))
    tokens = {a["tokens"] for a in c["arms"]}
    assert len(tokens) == (2 if unequal else 1) and None not in tokens
    said = [line for line in c["headline"]["cautions"] if "different token budgets" in line]
    assert len(said) == unequal
    if unequal:
        assert f"{min(tokens):,} to {max(tokens):,} tokens" in said[0]


# -- timing -------------------------------------------------------------------------------------------


def test_time_differences_within_the_spread_of_identical_runs_are_noise_and_tokens_lead(tmp_path):
    """Arms that cost the same per step on a loaded machine (run-to-run factor exp(N(0, 0.3))): their time
    ranking is called noise and the table follows tokens to target."""
    path = toml_suite(tmp_path, "noisy", 'optimizer = ["adamw", "lion", "sgd"]', seeds="[0, 1, 2, 3]",
                      extra="target = 2.2")  # fmt: skip
    storage = str(tmp_path / "n.journal")
    fabricate_runs(Suite.load(path), storage, lambda i: "complete", time_sd=0.3,
                   truth=lambda r: ({"adamw": 1.5, "lion": 1.52, "sgd": 1.9}[r.arm["optimizer"]], 0.01))  # fmt: skip
    c = conclude(Suite.load(path), suite_results(Suite.load(path), storage))
    t = c["timing"]
    assert t["time_ranking"] == "noise" and t["lead"] == "tokens" and "the time ranking is noise" in t["text"]
    tokens = [a["tokens"]["median"] for a in t["arms"]]
    assert tokens == sorted(tokens)
    assert all(a["time"]["min"] <= a["time"]["median"] <= a["time"]["max"] for a in t["arms"])
    assert t["cpu_per_wall"]["max"] > t["cpu_per_wall"]["min"]  # the load varied, and the text says so
    assert "the machine's load varied" in t["text"]


def test_an_arm_slower_beyond_the_noise_is_named():
    from bench.stats import compare_times

    rng = np.random.default_rng(0)
    times = {"fast": np.exp(rng.normal(0, 0.05, 4)), "same": np.exp(rng.normal(0, 0.05, 4)),
             "slow": 3 * np.exp(rng.normal(0, 0.05, 4)), "once": [2.0]}  # fmt: skip
    table, p = compare_times(times)
    verdicts = dict(zip(table["arm"], table["verdict"], strict=True))
    assert p < 0.05 and verdicts["slow"] == "slower" and verdicts["once"] == "not tested"
    assert {verdicts["fast"], verdicts["same"]} == {"fastest", "within noise"}
    # and with no difference at all, few draws of 4 seeds each call anything slower (Holm over 2 tests)
    false = 0
    for _ in range(200):
        table, _ = compare_times({a: np.exp(rng.normal(0, 0.3, 4)) for a in "abc"})
        false += (table["verdict"] == "slower").any()
    assert false / 200 <= 0.08, false


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.data())
def test_an_arm_that_missed_the_target_on_half_its_seeds_leads_no_tokens_ranking(seeds, data):
    """An arm that reached the target in fewer tokens on one seed of two, and missed on the other, was named
    the fewest-tokens leader ahead of one that reached on both: a miss is never, so half or more missed is
    no median."""
    import pandas as pd

    from bench.conclusions import timing_findings

    missed = data.draw(st.integers(0, seeds))
    rows = []
    for s in range(seeds):
        rows.append({"arm": "steady", "seed": s, "status": "complete", "target_time": 2.0 + s / 10,
                     "target_tokens": 80_000, "target_step": 100})  # fmt: skip
        miss = s < missed
        rows.append({"arm": "lucky", "seed": s, "status": "complete", "target_time": None if miss else 1.0 + s / 10,
                     "target_tokens": None if miss else 40_000, "target_step": None if miss else 50})  # fmt: skip
    suite = suite_of({"optimizer": ["adamw", "lion"]}, seeds=tuple(range(seeds)), target=2.0)
    found = timing_findings(pd.DataFrame(rows), suite)
    lucky = next(a for a in found["arms"] if a["arm"] == "lucky")
    if 2 * missed >= seeds:
        assert lucky["tokens"]["median"] is None and lucky["time"]["median"] is None
        assert lucky["time_verdict"] == f"missed on {missed} of {seeds}" and "lucky" not in found["text"]
    else:
        assert lucky["tokens"]["median"] == 40_000 and lucky["time_verdict"] in ("fastest", "within noise")
        assert "by lucky" in found["text"] or "lucky is fastest" in found["text"]


# -- search -------------------------------------------------------------------------------------------


SEARCH = """[suite]
name = "srch"
seeds = [0]
target = 1.8
[base]
model = "tiny"
steps = 200
eval_interval = 50
schedule = "constant"
[search]
optimizer = ["adamw", "lion", "sgd"]
"optimizer.lr" = { low = 1e-4, high = 1e-1, log = true }
"""


@pytest.mark.parametrize("trials", [20, 75])
def test_a_search_is_judged_as_a_search(tmp_path, trials):
    path = tmp_path / "srch.toml"
    path.write_text(SEARCH)
    storage = str(tmp_path / "s.journal")
    fabricate_search(Suite.load(path), storage, trials=trials, pruned=lambda i: i % 4 == 1)
    report = build_report(Suite.load(path), storage, tmp_path / "s.html", sample=False)
    c = json.loads(conclusions_path(report).read_text())
    assert c["comparisons"]["rows"] == [] and "not arms of a design" in c["comparisons"]["withheld"]
    assert "Paired comparisons against the baseline" not in report.read_text()
    (found,) = c["search"]
    complete = trials - len(range(1, trials, 4))
    assert found["complete_trials"] == complete and found["trials"]["pruned"] == trials - complete
    figures = report.read_text().split('<section id="search">')[1].split("</section>")[0]
    if complete < found["min_trials_for_importance"]:
        assert found["importances"] is None and f"rest on {complete} complete trials" in found["importance_note"]
        assert 'alt="Parameter importances"' not in figures
    else:
        assert found["importances"] and f"over {complete} complete trials" in found["importance_note"]
        assert 'alt="Parameter importances"' in figures
    # pruned trials are no workload of the profile: none of them is a miss
    stopped = [t for t in c["timing"]["arms"] if t["of"] == 0]
    assert len(stopped) == trials - complete and all(t["reached"] == 0 for t in stopped)
    assert sum(t["of"] for t in c["timing"]["arms"]) == complete


def test_optunas_plots_leave_the_reports_style_as_they_found_it(tmp_path):
    import matplotlib

    from bench.report import figures
    from bench.store import Store

    path = tmp_path / "srch.toml"
    path.write_text(SEARCH)
    storage = str(tmp_path / "s.journal")
    name = fabricate_search(Suite.load(path), storage, trials=12, pruned=lambda i: False)
    before = {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}
    drawn = []
    real = figures.png
    try:
        figures.png = lambda fig: drawn.append(fig) or real(fig)
        figures.search_figures(Store.open(storage).existing_study(name), {"optimizer.lr": 0.7, "optimizer.name": 0.3})
    finally:
        figures.png = real
    after = {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}
    assert {k for k in before if before[k] != after[k]} == set()
    assert len(drawn) == 3
    for fig in drawn:  # the report's white axes, not ggplot's grey
        assert matplotlib.colors.to_hex(fig.axes[0].get_facecolor()) == "#ffffff"


def test_the_protocols_extensions_and_confirmations_are_the_reports(tmp_path):
    """A tuned suite as the executor leaves it (bench.protocol's stages, fabricated): the grid extended past
    the edge where AdamW's best lay is the grid its flags read, what was added is said with why, and the
    confirming runs (stage 'confirm') judge each arm, at the setting the protocol chose."""
    from fabricate import fabricate_protocol

    path = toml_suite(tmp_path, "proto", 'optimizer = ["adamw", "lion"]\n"optimizer.lr" = [1e-4, 1e-3, 1e-2]',
                      extra='tune = ["optimizer.lr"]\ntune_extend = 1')  # fmt: skip
    optimum = {"adamw": -0.5, "lion": -3.0}  # log10: adamw's lies past the grid's top, beyond one step

    def truth(run):
        o = run.values["optimizer"]
        return 1.5 + 0.05 * (math.log10(run.values["optimizer.lr"]) - optimum[o]) ** 2, 0.002

    suite = Suite.load(path)
    storage = str(tmp_path / "p.journal")
    fabricate_protocol(suite, storage, truth)
    frame = suite_results(suite, storage)
    assert set(frame["stage"]) >= {"grid", "tune", "confirm"}
    c = conclude(suite, frame)
    arms = {a["arm"]: a for a in c["arms"]}
    adamw, lion = arms["optimizer=adamw"], arms["optimizer=lion"]
    assert adamw["tuned_values"]["optimizer.lr"] == pytest.approx(0.1)  # one step past 1e-2, then no further
    (flag,) = adamw["edge_flags"]
    assert flag["position"] == "largest" and flag["grid_size"] == 4 and "tune_extend = 1" in flag["why"]
    assert [x["text"] for x in adamw["tuning_added"]][0].startswith("optimizer.lr=0.1: extended past the largest")
    assert lion["edge_flags"] == [] and lion["tuned_values"]["optimizer.lr"] == pytest.approx(1e-3)
    for arm in (adamw, lion):
        assert arm["judged_on"] == "confirming" and arm["confirming_seeds"] == list(suite.confirm_seeds)
        assert arm["tuning_seeds"] == list(suite.seeds)
    html = build_report(suite, storage, tmp_path / "proto.html", sample=False).read_text()
    parser = Texts()
    parser.feed(html)
    assert len(c["tuning"]["added"]) >= 2
    for arm in c["arms"]:  # the report says each arm's additions, on the line that names it
        if arm["tuning_added"]:
            (line,) = [x for x in parser.found["added"] if arm["arm"] in x.split(": ")[0].split(", ")]
            assert line.split(": ", 1)[1] == "; ".join(x["text"] for x in arm["tuning_added"])
