import re

import pytest

from bench.cli import main
from bench.perf import fabricate_results
from bench.report import SECTIONS, build_report
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
    fabricate_results(str(path), storage)
    return Suite.load(path), storage


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
    assert board.count("optimizer.lr=") == 3  # each arm's best learning rate, once
    assert "sets no target" in section(html, "target")


def test_report_command_and_sample(tmp_path, capsys):
    suite, storage = make(tmp_path, seeds="[0]")
    assert main(["report", str(tmp_path / "rep.toml"), "--storage", storage]) == 0
    html = (tmp_path / "reports" / "rep.html").read_text()
    sample = section(html, "sample")
    assert '<pre class="sample">' in sample and "temperature 0.8" in sample  # best run trained again, then sampled


def test_runs_the_edited_suite_file_no_longer_implies_are_left_out(tmp_path, capsys):
    suite, storage = make(tmp_path, seeds="[0, 1]")  # 3 optimizers x 2 rates x 2 seeds
    path = tmp_path / "rep.toml"
    path.write_text(path.read_text().replace('optimizer = ["adamw", "lion", "sgd"]', 'optimizer = ["lion", "adamw"]'))
    edited = Suite.load(path)
    frame = edited.results(storage)
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
    assert main(["report", str(path), "--storage", str(tmp_path / "none.journal")]) == 2
    assert "no results for suite 'empty'" in capsys.readouterr().err


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
    assert header(frame)["commit"] == f"{'a' * 12}: 2 runs, {'b' * 12}+dirty: 1 runs"
    assert header(frame.iloc[:2])["commit"] == "a" * 12
