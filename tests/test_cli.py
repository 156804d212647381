import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main

TINY = [
    "--set",
    "model=tiny",
    "--set",
    "steps=10",
    "--set",
    "eval_interval=5",
    "--set",
    "eval_batches=2",
    "--set",
    "batch_size=4",
    "--set",
    "schedule=constant",
    "--set",
    'data={name="synthetic", alphabet=8, order=1, length=20000}',
]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_list_json_maps_axes_to_entries(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"model", "data", "optimizer", "schedule", "init", "clip", "regularization"} <= set(listing)
    assert listing["optimizer"]["adamw"]["params"]["lr"]["default"] == 1e-3
    for name in (
        "sgd",
        "momentum",
        "nesterov",
        "adam",
        "adamw",
        "nadam",
        "radam",
        "rmsprop",
        "adagrad",
        "adafactor",
        "lion",
        "muon",
        "schedule_free_adamw",
    ):
        assert name in listing["optimizer"]
    for name in (
        "constant",
        "step",
        "exponential",
        "linear",
        "cosine",
        "warmup_cosine",
        "wsd",
        "onecycle",
        "inverse_sqrt",
    ):
        assert name in listing["schedule"]


def test_list_text(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "optimizer:" in out and "  lion" in out and "lr = 0.0001" in out


def test_train_json_prints_the_record_alone_on_stdout(capsys):
    assert main(["train", "--json", *TINY]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["status"] == "complete" and record["steps"] == 10
    assert record["config"]["model"]["name"] == "tiny"
    assert "status complete" in captured.err


def test_train_reads_a_run_file(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(
        '[base]\nmodel = "tiny"\nsteps = 6\neval_interval = 3\nschedule = "constant"\n'
        'data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }\n'
    )
    assert main(["train", str(path), "--json", "--set", "optimizer.lr=3e-3"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["steps"] == 6 and record["config"]["optimizer"]["lr"] == 3e-3


BAD = [
    (["--set", "optimizer=adamww"], "optimizer.name", "did you mean 'adamw'"),
    (["--set", "optimizer.lr=-1"], "optimizer.lr", "> 0"),
    (["--set", "optimizer.betaz=[0.9,0.9]"], "optimizer.betaz", "did you mean 'betas'"),
    (["--set", "schedule=cosinee"], "schedule.name", "did you mean 'cosine'"),
    (["--set", "schedule.warmupp=10"], "schedule.warmupp", "did you mean 'warmup'"),
    (["--set", "init=gtp2"], "init.name", "did you mean 'gpt2'"),
    (["--set", "clip=nrom"], "clip.name", "did you mean 'norm'"),
    (["--set", "clip.max_norm=abc"], "clip.max_norm", "must be a number"),
    (["--set", 'regularization=["dropuot"]'], "regularization.dropuot", "did you mean 'dropout'"),
    (["--set", "steps=0"], "steps", ">= 1"),
    (["--set", "batch_size=2.5"], "batch_size", "an integer"),
    (["--set", "stepz=10"], "stepz", "did you mean 'steps'"),
    (["--set", "model.n_layers=3"], "model.n_layers", "did you mean 'n_layer'"),
    (["--set", "noequals"], "noequals", "KEY=VALUE"),
    (["--set", "data.path=/no/such/file.txt", "--set", "data.name=text"], "data.path", "is required: the path"),
]


@pytest.mark.parametrize(("args", "key", "text"), BAD, ids=[b[1] for b in BAD])
@pytest.mark.parametrize("command", ["train", "sample"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, command, args, key, text):
    before = files_under(tmp_path)
    assert main([command, *TINY, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"key '{key}'" in err and text in err, err
    assert files_under(tmp_path) == before


def test_missing_text_file_exits_2(tmp_path, capsys):
    args = ["--set", f'data={{name="text", path="{tmp_path / "nope.txt"}"}}']
    assert main(["train", *TINY, *args]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_run_files(tmp_path, capsys):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[base\n")
    assert main(["train", str(bad_toml)]) == 2
    assert "bad.toml" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_sample_trains_caches_and_decodes(tmp_path, capsys):
    args = ["sample", *TINY, "--tokens", "20", "--method", "greedy", "--prompt", "ab"]
    assert main(args) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith("ab") and len(first) == 22
    assert len(list((tmp_path / "results" / "checkpoints").glob("*.pt"))) == 1
    assert main(args) == 0  # from the cached checkpoint this time
    captured = capsys.readouterr()
    assert captured.out.strip() == first and "loaded the trained weights" in captured.err
    for method in ("sample", "beam"):
        assert main(["sample", *TINY, "--tokens", "10", "--method", method]) == 0
        assert len(capsys.readouterr().out.strip("\n")) >= 10


def test_console_script_and_module_entry_point():
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-m", "bench", "train", "--set", "optimizer=nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and "unknown optimizer 'nope'" in out.stderr and out.stdout == ""


def test_search_uses_the_worker_split_of_run(tmp_path, capsys, monkeypatch):
    from suite_files import write_suite

    from bench import search
    from bench.runner import default_split
    from bench.suite import Suite

    path = write_suite(tmp_path, "split", 'optimizer = ["adamw"]', extra="")
    path.write_text(path.read_text() + '\n[search]\noptimizer = ["adamw", "lion"]\n')
    plans = []
    monkeypatch.setattr(search, "run_search", lambda plan: plans.append(plan) or [])
    assert main(["search", str(path), "--trials", "2", "--no-report"]) == 0
    workers, threads = default_split(Suite.load(path))
    assert (plans[0].workers, plans[0].threads) == (workers, threads)
    assert f"{workers} worker(s) x {threads} thread(s)" in capsys.readouterr().err


def test_progress_reaches_a_stderr_that_is_not_a_terminal(tmp_path):
    import os
    import subprocess
    import sys

    from suite_files import write_suite

    path = write_suite(tmp_path, "plain", 'optimizer = ["adamw", "lion"]', seeds="[0]", steps=10)
    env = {**os.environ, "OPTBENCH_PROGRESS_INTERVAL": "0"}
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:  # a file: what a scheduler or `2> log` gives
        subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--workers", "1", "--no-report"],
                       stderr=stderr, stdout=subprocess.DEVNULL, env=env, check=True, timeout=300)  # fmt: skip
    lines = log.read_text().splitlines()
    assert any(line.startswith("plain: 1/2, ") for line in lines), lines
    assert any(line.startswith("plain: 2/2, ") and "eta" in line for line in lines), lines
    assert not any("\x1b[" in line for line in lines)  # plain lines, no terminal codes


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(1, 60))
def test_the_eta_is_paced_by_runs_done_now_not_by_runs_settled_before(start, more, left):
    """A resumed suite: 42 of 54 runs settled before printed 'eta 1 s' for 12 runs of 2 s each."""
    import re
    import time

    from bench.progress import PlainProgress

    total = start + more + left
    progress = PlainProgress("s", (), interval=1e9)
    task = progress.add_task("s", total=total, completed=start)
    progress.started = time.monotonic() - 100.0
    progress.update(task, completed=start + more)
    eta = re.search(r"eta (\S+)", progress.line(task)).group(1)
    if more == 0:
        assert eta == "-"
    else:
        assert abs(float(eta) - 100.0 / more * left) <= 1.0


def test_results_say_how_many_implied_runs_have_not_run_yet(tmp_path, capsys):
    from suite_files import write_suite

    path = write_suite(tmp_path, "grown", 'optimizer = ["adamw", "lion"]', seeds="[0]", steps=10)
    assert main(["run", str(path), "--workers", "1", "--quiet", "--no-report"]) == 0
    path.write_text(path.read_text().replace('optimizer = ["adamw", "lion"]', 'optimizer = ["adamw", "lion", "sgd"]'))
    capsys.readouterr()
    assert main(["results", str(path), "--format", "csv"]) == 0
    assert "study 'grown': 2 run(s) of 3 (1 not run yet)" in capsys.readouterr().err
