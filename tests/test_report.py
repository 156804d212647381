import re

import pytest
from fabricate import fabricate_runs
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.report import SECTIONS, build_report, tuning_added
from bench.results import suite_results
from bench.store import load_results
from bench.suite import Suite

SUITE = """[suite]
name = "NAME"
description = "DESCRIPTION"
seeds = SEEDS
EXTRA
[base]
model = "tiny"
steps = 200
eval_interval = 50
schedule = { name = "constant" }
[axes]
optimizer = ["adamw", "lion", "sgd"]
"optimizer.lr" = [1e-3, 3e-3]
"""


def make(tmp_path, name="rep", description="Which optimizer?", seeds="[0, 1, 2]", extra="target = 1.6"):
    path = tmp_path / f"{name}.toml"
    path.write_text(SUITE.replace("NAME", name).replace("DESCRIPTION", description).replace("SEEDS", seeds)
                    .replace("EXTRA", extra))  # fmt: skip
    storage = str(tmp_path / "r.journal")
    suite = Suite.load(path)
    fabricate_runs(suite, storage, status=lambda i: "diverged" if i % 33 == 5 else "complete")
    return suite, storage


def section(html, name):
    return html.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


def test_every_section_is_present_and_self_contained(tmp_path):
    suite, storage = make(tmp_path)
    html = build_report(suite, storage, tmp_path / "r.html", sample=False).read_text()
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
    assert html.count("data:image/png;base64,") >= 5
    assert not re.search(r'(src|href)="https?://', html)  # nothing from the network
    assert "Performance profile" in section(html, "target")


def test_leaderboard_numbers_equal_those_of_the_dataframe(tmp_path):
    suite, storage = make(tmp_path)
    html = section(build_report(suite, storage, tmp_path / "r.html", sample=False).read_text(), "leaderboard")
    frame = load_results(suite.name, storage)
    done = frame[frame.status == "complete"]
    means = done.groupby("arm")["value"].mean()
    full = frame.groupby("arm")["status"].apply(lambda s: (s == "complete").all())
    for arm, mean in means.items():
        if full[arm]:
            assert f"{mean:.4f}" in html, arm
    best = means[full[full].index].idxmin()
    assert html.index(best) < min(html.index(a) for a in means.index if a != best)
    assert f"Best: {best}" in html


def test_user_strings_are_escaped(tmp_path):
    suite, storage = make(tmp_path, description="<script>alert(1)</script>")
    html = build_report(suite, storage, tmp_path / "r.html", sample=False).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_same_results_same_bytes(tmp_path):
    suite, storage = make(tmp_path)
    a = build_report(suite, storage, tmp_path / "a.html", sample=False).read_bytes()
    b = build_report(suite, storage, tmp_path / "b.html", sample=False).read_bytes()
    assert a == b


def test_tuned_arms_and_missing_target_and_too_few_seeds(tmp_path):
    suite, storage = make(tmp_path, seeds="[0, 1]", extra='tune = ["optimizer.lr"]')
    html = build_report(suite, storage, tmp_path / "r.html", sample=False).read_text()
    board = section(html, "leaderboard")
    assert "tuned per arm" in board and "too few seeds" in board
    assert ">optimizer=lion</td>" in board and "Best setting" in board  # arms are the optimizers alone
    table = board.split("<table", 1)[1]  # the headline names the best arm's setting too
    assert table.count("optimizer.lr=") == 3  # each arm's best learning rate, once
    assert "sets no target" in section(html, "target")
    comparisons = section(html, "comparisons")  # two seeds: mean differences only, and why
    tests = comparisons.split("<table", 1)[1]  # (the note above the table explains every column)
    assert "p (Holm)" not in tests and "Effect size" not in tests and "font-weight: 700" not in tests
    assert "Paired tests need 3 or more seeds that finish" in comparisons and "Mean difference" in comparisons


def test_an_arm_whose_seeds_all_diverged_says_so_not_that_it_lacks_seeds(tmp_path):
    from fabricate import fabricate_runs

    path = tmp_path / "wild.toml"
    path.write_text(SUITE.replace("NAME", "wild").replace("DESCRIPTION", "x").replace("SEEDS", "[0, 1, 2, 3]")
                    .replace("EXTRA", ""))  # fmt: skip
    suite = Suite.load(path)
    storage = str(tmp_path / "w.journal")
    arms = [run.arm_label for run in suite.runs()]
    wild = arms[0]
    fabricate_runs(suite, storage, status=lambda i: "diverged" if arms[i] == wild else "complete")
    board = section(build_report(suite, storage, tmp_path / "r.html", sample=False).read_text(), "leaderboard")
    assert "none: 4 of 4 seeds diverged" in board and "too few seeds" not in board


def test_report_never_trains_and_says_why_a_sample_is_missing(tmp_path, capsys):
    suite, storage = make(tmp_path, seeds="[0]")
    assert main(["report", str(tmp_path / "rep.toml"), "--storage", storage]) == 0
    note = section((tmp_path / "reports" / "rep.html").read_text(), "sample")
    assert '<pre class="sample">' not in note and "No sample: no weights were saved for run" in note
    best = load_results(suite.name, storage).sort_values("value").iloc[0]["run_hash"]
    from bench.checkpoint import checkpoint_path

    checkpoint_path(best).parent.mkdir(parents=True)
    checkpoint_path(best).write_bytes(b"not a checkpoint")
    assert main(["report", str(tmp_path / "rep.toml"), "--storage", storage]) == 0
    note = section((tmp_path / "reports" / "rep.html").read_text(), "sample")
    assert "No sample: the weights in" in note and "cannot be read" in note and "Traceback" not in note


def test_run_saves_the_best_weights_and_the_report_samples_them(tmp_path, monkeypatch):
    from suite_files import write_suite

    path = write_suite(tmp_path, "sampled", 'optimizer = ["adamw", "lion"]', seeds="[0]", steps=10)
    assert main(["run", str(path), "--workers", "1", "--quiet", "--no-report"]) == 0
    import bench.train

    monkeypatch.setattr(bench.train, "run_training", lambda *a, **k: pytest.fail("the report trained"))
    assert main(["report", str(path)]) == 0
    sample = section((tmp_path / "reports" / "sampled.html").read_text(), "sample")
    assert '<pre class="sample">' in sample and "temperature 0.8" in sample


def test_the_sample_comes_from_the_best_run_whose_weights_were_kept(tmp_path):
    """The runner keeps the best single run's weights; the best arm by mean may be another arm (a new
    user's report said 'no weights were saved' right after `optbench run`)."""
    from suite_files import write_suite

    from bench.checkpoint import checkpoint_path

    path = write_suite(tmp_path, "kept", 'optimizer = ["adamw", "lion"]', seeds="[0, 1]", steps=10)
    assert main(["run", str(path), "--workers", "1", "--quiet", "--no-report"]) == 0
    frame = load_results("kept", str(tmp_path / "results" / "optbench.journal")).sort_values("value")
    best_arm = frame.groupby("arm")["value"].mean().idxmin()
    saved = [checkpoint_path(h) for h in frame["run_hash"] if checkpoint_path(h).is_file()]
    assert saved
    weights = saved[0].read_bytes()
    for p in saved:
        p.unlink()
    other = frame[frame["arm"] != best_arm].iloc[-1]  # the other arm's worst run keeps the only weights
    checkpoint_path(other["run_hash"]).write_bytes(weights)
    assert main(["report", str(path)]) == 0
    sample = section((tmp_path / "reports" / "kept.html").read_text(), "sample")
    assert '<pre class="sample">' in sample
    assert f"{other['arm']}, seed {other['seed']}" in sample and "the best single run whose weights were kept" in sample


def test_runs_the_edited_suite_file_no_longer_implies_are_left_out(tmp_path, capsys):
    suite, storage = make(tmp_path, seeds="[0, 1]")  # 3 optimizers x 2 rates x 2 seeds
    path = tmp_path / "rep.toml"
    path.write_text(path.read_text().replace('optimizer = ["adamw", "lion", "sgd"]', 'optimizer = ["lion", "adamw"]'))
    edited = Suite.load(path)
    frame = suite_results(edited, storage)
    assert len(frame) == 8 and frame.attrs["left_out"] == 4
    assert list(frame["run_hash"]) == [r.hash for r in edited.runs()]  # the file's order, not the store's
    assert list(dict.fromkeys(frame["arm.optimizer"])) == ["lion", "adamw"]
    html = build_report(edited, storage, tmp_path / "edited.html", sample=False).read_text()
    assert "sgd" not in section(html, "leaderboard")
    assert "4 stored run(s) under this suite's name are no longer implied" in html
    assert main(["results", str(path), "--storage", storage, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1 + 8 and "4 stored run(s) no longer implied" in err


def test_report_without_results_is_exit_2(tmp_path, capsys):
    path = tmp_path / "empty.toml"
    text = SUITE.replace("NAME", "empty").replace("DESCRIPTION", "x").replace("SEEDS", "[0]").replace("EXTRA", "")
    path.write_text(text)
    from bench.store import Store

    Store.open(str(tmp_path / "empty.journal"))  # a store holding nothing of this suite
    assert main(["report", str(path), "--storage", str(tmp_path / "empty.journal")]) == 2
    assert "no results for suite 'empty'" in capsys.readouterr().err
    # a store that is not there is a typo, never created by reading it
    assert main(["report", str(path), "--storage", str(tmp_path / "none.journal")]) == 2
    assert "no such store" in capsys.readouterr().err and not (tmp_path / "none.journal").exists()


@pytest.mark.parametrize("flag", [[], ["--no-report"]])
def test_run_writes_the_report_at_the_end_unless_asked_not_to(tmp_path, flag):
    from suite_files import write_suite

    path = write_suite(tmp_path, "endreport", 'optimizer = ["adamw", "lion"]', seeds="[0]", steps=10)
    assert main(["run", str(path), "--workers", "1", "--quiet", "--no-sample", *flag]) == 0
    assert (tmp_path / "reports" / "endreport.html").is_file() == (not flag)


def test_header_names_every_commit_that_trained_the_runs():
    import pandas as pd

    from bench.report import header

    one = {"optbench": "0.1.0", "commit": "a" * 40, "torch": "2.13.0", "device": "cpu", "threads": 1}
    frame = pd.DataFrame({"env": [one, one, {**one, "commit": "b" * 40 + "+dirty"}], "seed": [0, 1, 0]})
    assert header(frame)["commit"] == f"{'a' * 12}: 2 runs, {'b' * 12}+dirty: 1 run"
    assert header(frame.iloc[:2])["commit"] == "a" * 12


def test_header_says_what_precision_the_runs_computed_in():
    import pandas as pd

    from bench.report import header

    fp32 = {"precision": {"autocast": "none"}}
    bf16 = {"precision": {"autocast": "bf16"}}
    assert header(pd.DataFrame({"env": [fp32, fp32], "seed": [0, 1]}))["precision"] == "float32"
    assert header(pd.DataFrame({"env": [bf16], "seed": [0]}))["precision"] == "bf16 autocast"
    mixed = header(pd.DataFrame({"env": [fp32, bf16, bf16], "seed": [0, 1, 2]}))["precision"]
    assert mixed == "bf16 autocast: 2 runs, float32: 1 run"
    assert header(pd.DataFrame({"env": [{}], "seed": [0]}))["precision"] == "float32"  # older records


ENVS = st.fixed_dictionaries(
    {
        "commit": st.sampled_from(["a" * 40, "b" * 40 + "+dirty", None]),
        "device": st.sampled_from(["cpu", "cuda:0"]),
        "threads": st.integers(1, 2),
        "precision": st.sampled_from([{"autocast": "none"}, {"autocast": "bf16"}]),
    },
    optional={"gpu_workers": st.integers(1, 3), "device_name": st.sampled_from(["NVIDIA H200", "AMD EPYC"])},
)


@settings(max_examples=80, deadline=None)
@given(envs=st.lists(ENVS, min_size=1, max_size=8))
def test_header_counts_what_the_runs_do_not_share(envs):
    """Runs from several machines, settings or commits in one store: the header names each value with its
    run count, never just the first run's; workers sharing a GPU are said wherever any run had them."""
    import pandas as pd

    from bench.report import header

    h = header(pd.DataFrame({"env": envs, "seed": range(len(envs))}))
    for field, values in (
        ("device", [e.get("device_name") or e["device"] for e in envs]),
        ("threads", [f"{e['threads']} thread(s) per run" for e in envs]),
        ("precision", ["float32" if e["precision"]["autocast"] == "none" else "bf16 autocast" for e in envs]),
    ):
        if len(set(values)) == 1:
            assert h[field] == values[0]
        else:
            parts = dict(part.rsplit(": ", 1) for part in h[field].split(", "))
            assert parts == {v: f"{values.count(v)} run{'s' * (values.count(v) != 1)}" for v in set(values)}
    shared = [e["gpu_workers"] for e in envs if e.get("gpu_workers", 1) > 1]
    assert bool(h["shared_gpu"]) == bool(shared)
    for n in set(shared):
        assert f"{n} workers per GPU, timings shared" in h["shared_gpu"]


ABLATION = """[suite]
name = "abl"
design = "ablation"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = 60
batch_size = 4
eval_batches = 2
schedule = { name = "constant", warmup = 5 }
[axes]
clip = ["none", "value"]
"""


def test_ablation_whose_base_value_is_not_on_its_axis_runs_and_reports(tmp_path, capsys):
    # the base clips by norm; the axis lists none and value: the base arm has no `arm.clip` label
    path = tmp_path / "abl.toml"
    path.write_text(ABLATION)
    assert main(["run", str(path), "--workers", "1", "--quiet"]) == 0, capsys.readouterr().err
    html = (tmp_path / "reports" / "abl.html").read_text()
    effects = section(html, "effects")
    assert effects.count("<img") == 1 and "main effect of clip" in effects
    assert "no run varies two axes" in section(html, "interactions")
    frame = load_results("abl")
    assert set(frame["arm"]) == {"base", "clip=none", "clip=value"}


def test_search_report_shows_pruned_trials_as_pruned_and_the_searched_effects(tmp_path, capsys):
    from fabricate import fabricate_search

    path = tmp_path / "srch.toml"
    path.write_text(ABLATION.replace('name = "abl"\ndesign = "ablation"', 'name = "srch"').split("[axes]")[0]
                    + '[search]\noptimizer = ["adamw", "lion", "sgd"]\nclip = ["none", "norm"]\n'
                    + '"optimizer.lr" = { low = 1e-4, high = 1e-1, log = true }\n')  # fmt: skip
    storage = str(tmp_path / "s.journal")
    fabricate_search(Suite.load(path), storage, trials=12, pruned=lambda i: i % 3 == 1)
    frame = load_results("srch.search", storage)
    pruned = frame[frame["status"] == "pruned"]
    assert len(pruned) and pruned["status_step"].notna().all()
    html = build_report(Suite.load(path), storage, tmp_path / "s.html").read_text()
    assert "--no-sample" not in html and "design Optuna search (random sampler, hyperband pruner)" in html
    assert f"{len(pruned)} pruned (at step" in section(html, "stability")
    assert "diverged" not in section(html, "leaderboard").replace("0 diverged", "")
    assert section(html, "leaderboard").count(" pruned") >= len(pruned)
    assert "main effect of optimizer.name" in section(html, "effects")
    assert "main effect of clip.name" in section(html, "effects")
    # optbench results lists the search's trials, saying which study they come from
    assert main(["results", str(path), "--storage", storage, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    header = out.splitlines()[0].split(",")
    assert len(header) == len(set(header)) and "study" in header
    assert len(out.strip().splitlines()) == 1 + len(frame) and "study 'srch.search'" in err
    assert main(["results", str(path), "--storage", storage, "--study", "runs"]) == 0
    assert "no results for suite 'srch' yet" in capsys.readouterr().err


FORTY = """[suite]
name = "forty"
description = "Forty arms: which optimizer, learning rate and batch size?"
seeds = [0, 1, 2]
target = 1.6
[base]
model = "tiny"
steps = 200
eval_interval = 50
schedule = { name = "constant" }
[axes]
optimizer = ["adamw", "lion", "sgd", "adam", "nadam"]
"optimizer.lr" = [1e-4, 3e-4, 1e-3, 3e-3]
batch_size = [8, 16]
"""


def forty_arm_report(tmp_path, out=None):
    from fabricate import fabricate_runs

    path = tmp_path / "forty.toml"
    path.write_text(FORTY)
    storage = str(tmp_path / "forty.journal")
    statuses = ["complete"] * 9 + ["diverged", "stopped_early", "failed"]
    fabricate_runs(Suite.load(path), storage, status=lambda i: statuses[i % len(statuses)])
    return build_report(Suite.load(path), storage, out or tmp_path / "forty.html")


def test_at_forty_arms_no_legend_covers_data_and_heatmaps_share_one_scale(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    from bench.report import figures

    drawn = []
    real_png = figures.png

    def keep(fig):
        drawn.append(fig)
        return real_png(fig)

    monkeypatch.setattr(figures, "png", keep)
    html = forty_arm_report(tmp_path).read_text()
    assert len(drawn) >= 9 and html.count("<img") == len(drawn)
    legends = 0
    for fig in drawn:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()  # the layout as saved (constrained layout included)
        renderer = canvas.get_renderer()
        areas = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_label() != "<colorbar>"]
        for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
            legends += 1
            box = legend.get_window_extent(renderer)
            for area in areas:
                overlap = Bbox.intersection(box, area)
                assert overlap is None or overlap.width * overlap.height < 1, (legend.get_texts()[0].get_text(), area)
    assert legends >= 5  # main effects' floor, curves, stability, profile
    profile = next(f for f in drawn if any("other arms" in t.get_text() for lg in f.legends for t in lg.get_texts()))
    assert len(profile.legends[0].get_texts()) <= 7  # the top arms named, the rest grey
    # its legend sits below the axes: beside them, long labels squeezed the axes to about 100 px
    assert profile.axes[0].get_window_extent().width >= 0.7 * profile.bbox.width
    heatmaps = [f for f in drawn if any(ax.collections and hasattr(ax.collections[0], "get_clim") and
                                        ax.collections[0].get_array() is not None and ax.get_label() != "<colorbar>"
                                        and len(ax.texts) > 1 for ax in f.axes)]  # fmt: skip
    scales = {tuple(round(v, 9) for v in ax.collections[0].get_clim()) for f in heatmaps for ax in f.axes[:1]}
    assert len(heatmaps) == 3 and len(scales) == 1  # one colour is one loss in every heatmap
    curves = next(f for f in drawn if any(ax.get_xlabel() == "tokens" for ax in f.axes))
    assert [ax.get_xlabel() for ax in curves.axes] == ["step", "tokens", "step"]


def test_ablation_of_a_joint_axis_labels_the_base_with_its_fields_and_unreached_targets_draw_nothing(tmp_path):
    from fabricate import fabricate_runs

    from bench.report import axis_views

    path = tmp_path / "jabl.toml"
    path.write_text(ABLATION.replace('name = "abl"', 'name = "jabl"').replace("seeds = [0]", "seeds = [0, 1]")
                    .replace('clip = ["none", "value"]', "batch = [{ batch_size = 8, grad_accum = 2 }]")
                    .replace('design = "ablation"', 'design = "ablation"\ntarget = 0.1'))  # fmt: skip
    storage = str(tmp_path / "j.journal")
    fabricate_runs(Suite.load(path), storage, status=lambda i: "complete")
    suite = Suite.load(path)
    views = axis_views(suite, suite_results(suite, storage), "ablation")
    assert list(dict.fromkeys(views["batch"]["arm.batch"])) == [
        "{batch_size=4, grad_accum=1} (base)", "{batch_size=8, grad_accum=2}"]  # fmt: skip
    html = build_report(suite, storage, tmp_path / "j.html").read_text()
    target = section(html, "target")
    assert "No run reached the target" in target and "<img" not in target


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(-5, 500), st.sampled_from([1e-4, 3e-3, 0.5])), min_size=1, max_size=6, unique=True
    ),  # fmt: skip
    base_at=st.integers(0, 5),
    text=st.booleans(),
)
def test_axis_values_are_plotted_by_number_with_the_base_in_its_place(values, base_at, text):
    """An ablation listed the base's value first ('20 (base), 0, 60, 100')."""
    import pandas as pd

    from bench.report.figures import level_order

    labels = [str(v) for v in values]
    labels[base_at % len(labels)] += " (base)"
    if text:
        labels.append("cosine")
    order = level_order(pd.Series(labels))
    assert sorted(order) == sorted(labels)
    if text:
        assert order == labels  # not all numbers: the file's order
    else:
        numbers = [float(o.removesuffix(" (base)")) for o in order]
        assert numbers == sorted(numbers)


def test_a_tuned_ablation_ranks_every_arm_at_its_best_tuned_value(tmp_path):
    """A new user's tuned ablation: only the base was run at each learning rate, it was labelled 'all',
    and another arm became the baseline."""
    from fabricate import fabricate_runs

    path = tmp_path / "tab.toml"
    path.write_text("""[suite]
name = "tab"
design = "ablation"
seeds = [0, 1, 2]
tune = ["optimizer.lr"]
[base]
model = "tiny"
steps = 20
schedule = "constant"
[axes]
"optimizer.lr" = [1e-3, 3e-3]
init = ["orthogonal"]
clip = ["none"]
""")
    suite = Suite.load(path)
    arms = {}
    for run in suite.runs():
        arms.setdefault(suite.untuned_label(run), set()).add(run.arm.get("optimizer.lr"))
    assert arms == {"base": {"0.001", "0.003"}, "init=orthogonal": {"0.001", "0.003"}, "clip=none": {"0.001", "0.003"}}
    storage = str(tmp_path / "t.journal")
    fabricate_runs(suite, storage, status=lambda i: "complete")
    html = build_report(suite, storage, tmp_path / "r.html", sample=False).read_text()
    assert "Baseline: <b>base</b>" in section(html, "comparisons")
    board = section(html, "leaderboard")
    table = board.split("<table", 1)[1]  # (the headline names the base's setting too)
    assert ">all<" not in table and table.count("optimizer.lr=") == 3  # each arm's best rate
    assert "init=orthogonal, optimizer.lr" not in board  # the best setting column says the tuned part alone


def test_a_joint_axis_labels_the_base_by_the_fields_its_values_set():
    """An ablation's joint axis labelled its base with the base's whole optimizer table (120 characters)."""
    from bench.labels import label
    from bench.report import base_value

    suite = Suite.parse({
        "suite": {"name": "joint", "design": "ablation"},
        "base": {"model": "tiny", "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.1}, "clip": "norm"},
        "axes": {"wild": [{"optimizer": {"name": "sgd", "lr": 40.0}, "clip": "none"}]},
    })  # fmt: skip
    base = base_value(suite, "wild")
    assert base == {"optimizer": {"name": "adamw", "lr": 3e-3}, "clip": "norm"}
    assert len(label(base)) < 60


def test_heatmaps_list_numeric_values_by_number():
    """A sampled grid's heatmap listed weight decay 0.1 before 0.0, in the order its runs came."""
    import pandas as pd

    from bench.report.figures import interaction_table

    frame = pd.DataFrame({"arm.clip": ["none", "norm", "none", "norm"], "arm.wd": ["0.1", "0.1", "0", "0"],
                          "value": [2.0, 2.1, 2.2, 2.3], "status": ["complete"] * 4})  # fmt: skip
    table = interaction_table(frame, "clip", "wd")
    assert list(table.columns) == ["0", "0.1"] and list(table.index) == ["none", "norm"]
    assert table.loc["none", "0"] == 2.2


@settings(max_examples=60, deadline=None, derandomize=True)
@given(widths=st.lists(st.integers(8, 64), min_size=1, max_size=3, unique=True),
       budgets=st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True),
       optimizers=st.lists(st.sampled_from(["adamw", "muon", "lion"]), min_size=1, max_size=3,
                           unique=True))  # fmt: skip
def test_figure_labels_keep_only_what_tells_arms_apart(widths, budgets, optimizers):
    """Arms of a joint scale axis whose warmup follows its budget, every optimizer with the same weight decay:
    the figures' labels stay distinct and name the optimizer (where it varies), the width and the budget
    (where they vary), never the shared weight decay or the warmup the budget already sets."""
    from bench.report.figures import short_labels

    arms = [f"optimizer={o}(weight_decay=0.1), scale={{model.n_embd={w}, tokens={b}000, schedule.warmup={b}}}"
            for o in optimizers for w in widths for b in budgets]  # fmt: skip
    if len(arms) == 1:  # nothing tells one arm apart: it keeps its label
        assert short_labels(arms) == {arms[0]: arms[0]}
        return
    short = short_labels(arms)
    assert len(set(short.values())) == len(arms)
    for arm, text in short.items():
        o, w, b = re.search(r"optimizer=(\w+).*n_embd=(\d+), tokens=(\d+)", arm).groups()
        assert "weight_decay" not in text and "warmup" not in text
        assert (f"optimizer={o}" in text) == (len(optimizers) > 1)
        assert (f"n_embd={w}" in text) == (len(widths) > 1)
        assert (f"tokens={b}" in text) == (len(budgets) > 1)


@given(st.lists(st.lists(st.sampled_from(["lr=0.009: extended", "lr=0.001: refined", "lr=0.3: extended"]),
                         unique=True, max_size=3), max_size=6))  # fmt: skip
def test_what_the_protocol_added_is_one_line_per_set_of_arms_with_the_same_additions(additions):
    arms = [{"arm": f"arm{i}", "tuning_added": [{"text": t} for t in texts]} for i, texts in enumerate(additions)]
    lines = tuning_added(arms)
    assert len(lines) == len({tuple(t) for t in additions if t})
    for i, texts in enumerate(additions):  # every arm's additions are said once, on the line that names it
        naming = [line for line in lines if f"arm{i}" in line.split(": ")[0].split(", ")]
        assert len(naming) == (1 if texts else 0)
        if texts:
            assert naming[0].split(": ", 1)[1] == "; ".join(texts)
