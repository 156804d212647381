"""A generated matrix of suites, as users write them, through results, load_results and the report.

Hypothesis draws suites across every design (grid, ablation, tuned arms, search with pruned trials,
multi-objective search), every technique axis (values equal to and different from the base), 1 to 3
seeds, 1 to 40+ arms, every run status mixed in, and a description with unicode and HTML. Training is
not the point: the store is fabricated as the runner and the search leave it (tests/fabricate.py).

CI draws OPTBENCH_MATRIX_EXAMPLES suites (default 12, derandomized: the same suites on every run); a
nightly-size run sets it higher (`OPTBENCH_MATRIX_EXAMPLES=200 pytest tests/test_suite_matrix.py`).
"""

from __future__ import annotations

import json
import os
import warnings
from html.parser import HTMLParser

from fabricate import fabricate_runs, fabricate_search
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.store import load_results
from bench.suite import Suite

EXAMPLES = int(os.environ.get("OPTBENCH_MATRIX_EXAMPLES", "12"))
# no shrinking: each example builds a report (seconds), and the drawn suite is printed whole anyway
PHASES = (Phase.explicit, Phase.generate)

BASE = """[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = 40
eval_interval = 10
batch_size = 4
optimizer = { name = "adamw", lr = 1e-3 }
schedule = { name = "constant", warmup = 5 }
init = "gpt2"
clip = { name = "norm", max_norm = 1.0 }
"""
# Every technique axis; the first value of each list is (or equals) the base's own.
AXES = {
    "optimizer": ['"adamw"', '"lion"', '"sgd"', '{ name = "nesterov", lr = 0.1 }', '"muon"', '"adam"'],
    "schedule": ['{ name = "constant", warmup = 5 }', '"cosine"', '"wsd"', '"linear"', '"inverse_sqrt"'],
    "init": ['"gpt2"', '"default"', '"zero_residual"', '"orthogonal"'],
    "clip": ['{ name = "norm", max_norm = 1.0 }', '"none"', '"value"', '"adaptive"'],
    "regularization": ["{}", "{ dropout = { p = 0.1 } }", '["z_loss"]', "{ ema = { decay = 0.9 } }"],
    "batch_size": ["4", "8", "16", "2"],
    '"optimizer.lr"': ["1e-3", "3e-4", "3e-3", "1e-2"],
    '"schedule.warmup"': ["5", "0", "10"],
    "batch": ["{ batch_size = 4, grad_accum = 1 }", "{ batch_size = 2, grad_accum = 2 }"],  # a joint axis
}
SEARCH = """[search]
optimizer = ["adamw", "lion", "sgd"]
clip = ["none", "norm"]
schedule = ["constant", "cosine"]
"optimizer.lr" = { low = 1e-4, high = 1e-1, log = true }
"""
STATUSES = ("complete", "diverged", "stopped_early", "failed", "interrupted")
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)


@st.composite
def suites(draw: st.DrawFn) -> dict:
    design = draw(st.sampled_from(["grid", "ablation", "tuned", "search", "multi_search"]))
    seeds = draw(st.sampled_from([[0], [0, 1], [0, 1, 2]]))
    arms = draw(st.sampled_from(["one", "few", "forty"]))
    names = list(AXES)
    if arms == "forty":  # 6 x 4 x 2 = 48 arms in a grid; an ablation lists values one axis at a time
        chosen = {
            "optimizer": AXES["optimizer"],
            '"optimizer.lr"': AXES['"optimizer.lr"'],
            "batch_size": AXES["batch_size"][:2],
        }
        if design == "ablation":
            chosen = {k: AXES[k] for k in names}  # 33 values + the base
    else:
        keys = draw(st.lists(st.sampled_from(names), min_size=1, max_size=1 if arms == "one" else 3, unique=True))
        chosen = {}
        for key in keys:
            n = 1 if arms == "one" else draw(st.integers(2, len(AXES[key])))
            chosen[key] = draw(st.permutations(AXES[key]))[:n]  # values equal to the base or not, in any order
    if design == "ablation" and arms != "forty":  # the base's own value often off the axis, as users write it
        chosen = {k: [v for v in vs if v != AXES[k][0]] or vs for k, vs in chosen.items()}
    statuses = draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=7))
    description = "<b>Which</b> & " + draw(TEXT) + " <script>alert(1)</script> ü"
    return {"design": design, "seeds": seeds, "axes": chosen, "statuses": statuses, "description": description,
            "target": draw(st.sampled_from([None, 1.6, 0.5])), "pruned_every": draw(st.integers(2, 4))}  # fmt: skip


def suite_text(s: dict) -> str:
    meta = {"name": "matrix", "description": s["description"], "seeds": s["seeds"]}
    if s["design"] in ("grid", "ablation"):
        meta["design"] = s["design"]
    if s["target"] is not None:
        meta["target"] = s["target"]
    lines = ["[suite]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items()]
    if s["design"] == "tuned":
        lines.append('tune = ["optimizer.lr"]')
    text = "\n".join(lines) + "\n" + BASE
    if s["design"] in ("search", "multi_search"):
        return text + SEARCH
    axes = dict(s["axes"])
    if s["design"] == "tuned":
        axes.setdefault('"optimizer.lr"', AXES['"optimizer.lr"'][:2])
    return text + "[axes]\n" + "".join(f"{k} = [{', '.join(v)}]\n" for k, v in axes.items())


class Checker(HTMLParser):
    """Well-formed enough for a browser: every section opened is closed; collects the text."""

    def __init__(self) -> None:
        super().__init__()
        self.open_sections, self.text = 0, []

    def handle_starttag(self, tag, attrs):
        self.open_sections += tag == "section"

    def handle_endtag(self, tag):
        self.open_sections -= tag == "section"

    def handle_data(self, data):
        self.text.append(data)


def build(tmp_path, s: dict) -> tuple:
    path = tmp_path / "matrix.toml"
    path.write_text(suite_text(s), encoding="utf-8")
    storage = str(tmp_path / "m.journal")
    for leftover in tmp_path.glob("m.journal*"):
        leftover.unlink()
    suite = Suite.load(path)
    if s["design"] in ("search", "multi_search"):
        objectives = 2 if s["design"] == "multi_search" else 1
        fabricate_search(suite, storage, trials=14, pruned=lambda i: i % s["pruned_every"] == 1, objectives=objectives)
    else:
        statuses = s["statuses"]
        fabricate_runs(suite, storage, status=lambda i: statuses[i % len(statuses)])
    return path, storage, suite


def check_suite(tmp_path, capsys, s: dict) -> str:
    path, storage, suite = build(tmp_path, s)
    searched = s["design"] in ("search", "multi_search")
    study = f"{suite.name}.search" if searched else suite.name
    frame = load_results(study, storage)
    assert len(frame) and set(frame["status"]) <= {*STATUSES, "pruned"}
    capsys.readouterr()
    for fmt in ("table", "csv", "json"):
        assert main(["results", str(path), "--storage", storage, "--format", fmt]) == 0
        out, err = capsys.readouterr()
        assert f"study '{study}': {len(frame)} run(s)" in err
        if fmt == "csv":
            header = out.splitlines()[0].split(",")
            assert len(header) == len(set(header)) and len(out.strip().splitlines()) >= 1 + len(frame)
        if fmt == "json":
            assert len(json.loads(out)) == len(frame)
    report = tmp_path / "matrix.html"
    with warnings.catch_warnings(record=True) as caught:  # numpy's "mean of empty slice" and the like
        warnings.simplefilter("always", RuntimeWarning)
        assert main(["report", str(path), "--storage", storage, "--out", str(report)]) == 0, capsys.readouterr().err
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    html = report.read_text(encoding="utf-8")
    checker = Checker()
    checker.feed(html)
    assert checker.open_sections == 0
    text = "".join(checker.text)
    assert s["description"] in text and "<script>alert(1)</script>" not in html  # shown as text, escaped
    assert "Traceback" not in html and "nan" not in text.replace("nanoGPT", "").lower().split()
    stability = html.split('<section id="stability">', 1)[1].split("</section>", 1)[0]
    for status in set(frame["status"]) - {"complete"}:
        n = int((frame["status"] == status).sum())
        assert f"{n} {status.replace('_', ' ')}" in stability, status
    if "pruned" in set(frame["status"]):
        assert "design Optuna search" in html
    return html


# The corners every CI run covers (the ablation, a search with pruned trials, 48 arms and every status)
CORNERS = [
    {"design": "ablation", "seeds": [0], "axes": {"clip": ['"none"', '"value"']}, "statuses": ["complete"],
     "description": "<b>Which</b> & clip ü <script>alert(1)</script>", "target": None, "pruned_every": 2},
    {"design": "search", "seeds": [0, 1], "axes": {}, "statuses": ["complete"],
     "description": "<b>Which</b> & search <script>alert(1)</script>", "target": 0.5, "pruned_every": 3},
    {"design": "grid", "seeds": [0, 1, 2], "axes": {"optimizer": AXES["optimizer"],
     '"optimizer.lr"': AXES['"optimizer.lr"'], "batch_size": AXES["batch_size"][:2]},
     "statuses": list(STATUSES), "description": "<b>Which</b> & 48 arms <script>alert(1)</script>",
     "target": 1.6, "pruned_every": 2},
]  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(s=suites())
@example(s=CORNERS[0])
@example(s=CORNERS[1])
@example(s=CORNERS[2])
def test_every_generated_suite_gives_results_and_a_report(tmp_path, capsys, s):
    check_suite(tmp_path, capsys, s)
