import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import one_line_error, run_optbench
from suite_files import write_suite

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


USAGE_ERRORS = [
    (["run"], "suite", "see optbench run --help"),
    (["run", "s.toml", "--workers", "abc"], "--workers", "invalid int value: 'abc'"),
    (["list", "--frobnicate"], "--frobnicate", "see optbench list --help"),
    ([], "COMMAND", "one of list, train,"),
    (["frob"], "'frob'", "'list', 'train'"),
    (["results", "s.toml", "--format", "xml"], "--format", "'table', 'csv', 'json'"),
    (["sample", "--method", "topp"], "--method", "'greedy', 'sample', 'beam'"),
]


@pytest.mark.parametrize(("argv", "names", "allowed"), USAGE_ERRORS, ids=[" ".join(u[0]) for u in USAGE_ERRORS])
def test_a_usage_error_is_one_line_naming_the_flag_and_what_is_allowed(tmp_path, capsys, argv, names, allowed):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and err.startswith("optbench: error: "), err
    assert names in err and allowed in err, err
    assert files_under(tmp_path) == []


BAD_SAMPLE_FLAGS = [
    (["--top-k", "0"], "--top-k", ">= 1"),
    (["--top-k", "-5"], "--top-k", ">= 1"),
    (["--method", "beam", "--beams", "0"], "--beams", ">= 1"),
    (["--tokens", "0"], "--tokens", ">= 1"),
    (["--temperature", "nan"], "--temperature", "finite number > 0"),
    (["--temperature", "inf"], "--temperature", "finite number > 0"),
    (["--temperature", "-1"], "--temperature", "finite number > 0"),
    (["--seed", str(2**64)], "--seed", "[-2**63, 2**64)"),
]


@pytest.mark.parametrize(("flags", "key", "text"), BAD_SAMPLE_FLAGS, ids=[" ".join(b[0]) for b in BAD_SAMPLE_FLAGS])
def test_bad_sample_flags_are_refused_before_training(tmp_path, capsys, flags, key, text):
    assert main(["sample", *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"key '{key}'" in err and text in err, err
    assert files_under(tmp_path) == []  # no checkpoint: nothing was trained


def search_suite(tmp_path: Path) -> Path:
    from suite_files import write_suite

    path = write_suite(tmp_path, "srch", 'optimizer = ["adamw"]', seeds="[0]", steps=4)
    path.write_text(path.read_text() + '\n[search]\n"optimizer.lr" = [1e-3, 3e-3]\n')
    return path


# an output path that cannot be written (below tmp_path, which holds a folder "folder" and a file "file")
# -> what the error says
BAD_OUTPUT_PATHS = {
    "a folder": ("folder", "is a folder"),
    "below a regular file": ("file/r.html", "is not a folder"),
    "deep below a regular file": ("file/a/r.html", "is not a folder"),
    "a name too long": ("x" * 300 + ".html", "too long"),
    "a name too long once temporary": ("x" * 250, "too long"),
    "a folder name too long": ("x" * 300 + "/r.html", "too long"),
}


@pytest.mark.parametrize("case", BAD_OUTPUT_PATHS)
@pytest.mark.parametrize("command", ["report --out", "search --export", "kernels --json"])
def test_an_unwritable_output_path_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command, case):
    from bench import search

    monkeypatch.setattr(search, "run_search", lambda plan: pytest.fail("the search ran"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("the kernel suites ran"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    out, text = BAD_OUTPUT_PATHS[case]
    out = tmp_path / out
    path = search_suite(tmp_path)
    before = files_under(tmp_path)
    name, flag = command.split()
    argv = {"report": [str(path)], "search": [str(path), "--trials", "1"], "kernels": []}[name]
    assert main([name, *argv, flag, str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"key '{flag}'" in err and text in err, err
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("command", ["run", "search", "report"])
def test_a_default_report_path_that_cannot_be_written_is_refused_first(tmp_path, capsys, command):
    (tmp_path / "reports").write_text("a file where the reports folder goes")
    path = search_suite(tmp_path)
    before = files_under(tmp_path)
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'reports'" in err and "is not a folder" in err, err
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("timeout", ["-5", "0", "nan", "inf", "-inf"])
def test_a_search_timeout_must_be_finite_and_positive(tmp_path, capsys, monkeypatch, timeout):
    from bench import search

    monkeypatch.setattr(search, "run_search", lambda plan: pytest.fail("the search ran"))
    path = search_suite(tmp_path)
    before = files_under(tmp_path)
    assert main(["search", str(path), f"--timeout={timeout}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key '--timeout'" in err and "> 0" in err, err
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("error", "text"),
    [(errno.ENAMETOOLONG, "File name too long"), (errno.EISDIR, "Is a directory"), (errno.ENOTDIR, "Not a directory"),
     (errno.EEXIST, "File exists")],
)  # fmt: skip
def test_path_errors_met_while_writing_are_one_line_exit_2(capsys, monkeypatch, error, text):
    import bench.cli

    def fail(args):
        raise OSError(error, os.strerror(error), "reports/x.html")

    monkeypatch.setattr(bench.cli, "cmd_list", fail)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reports/x.html" in err and text in err, err


BAD_CORPORA = {  # data (and more [base] lines) -> the key named and what is said
    "empty": ('{ name = "text", path = "EMPTY", tokenizer = "char" }', "data.path", "is empty"),
    "not UTF-8": ('{ name = "text", path = "LATIN1", tokenizer = "char" }', "data.path", "not UTF-8"),
    "missing, relative": ('{ name = "text", path = "missing.txt", tokenizer = "char" }', "data.path", "missing.txt"),
    "shorter than a context": (
        '{ name = "synthetic", length = 10000 }\n"model.block_size" = 2000',
        "model.block_size",
        "validation split has 1000 tokens",
    ),
}


@pytest.mark.parametrize("case", BAD_CORPORA)
@pytest.mark.parametrize("command", ["run", "search", "train", "sample"])
def test_a_bad_corpus_is_refused_before_the_store_opens_or_anything_prints(tmp_path, capsys, command, case):
    data, key, text = BAD_CORPORA[case]
    inputs = tmp_path.parent / f"{tmp_path.name}-inputs"  # outside the working folder, which must stay empty
    inputs.mkdir()
    (inputs / "empty.txt").write_text("")
    (inputs / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    data = data.replace("EMPTY", str(inputs / "empty.txt")).replace("LATIN1", str(inputs / "latin1.txt"))
    suite = inputs / "bad.toml"
    suite.write_text(
        f'[suite]\nname = "bad"\nseeds = [0]\n[base]\nmodel = "tiny"\nsteps = 4\nbatch_size = 4\n'
        f'eval_interval = 2\neval_batches = 1\nschedule = "constant"\ndata = {data}\n'
        '[search]\n"optimizer.lr" = [1e-3, 3e-3]\n'
    )
    assert main([command, str(suite)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(suite) in err and f"key '{key}'" in err and text in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_the_report_is_one_line(tmp_path):
    suite = write_suite(tmp_path, "fullreport", 'optimizer = ["adamw"]', seeds="[0]")
    storage = str(tmp_path / "j.journal")
    args = ("run", str(suite), "--storage", storage, "--workers", "1", "--quiet", "--no-sample")
    assert run_optbench(*args, "--no-report").returncode == 0
    # two study creations (runner and worker), then the report file (the suite's description is stored once)
    done = run_optbench(*args, env={"OPTBENCH_FAULT": "enospc:3"}, cwd=tmp_path)
    line = one_line_error(done, after_start=2)
    assert "cannot write reports/fullreport." in line and "No space left on device" in line
    assert not list(tmp_path.rglob("*.part"))
