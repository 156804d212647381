"""bench.runfile: run files' [base] tables and --set items, read into a RunConfig."""

import pytest
from processes import one_line_error, run_optbench

from bench.registry import ConfigError
from bench.runfile import load_run_config, parse_set


def test_parse_set_reads_toml_values_and_bare_words():
    assert parse_set(["optimizer.lr=3e-4", "optimizer.name=lion", "optimizer.betas=[0.9, 0.95]", "x=true"]) == {
        "optimizer.lr": 3e-4,
        "optimizer.name": "lion",
        "optimizer.betas": [0.9, 0.95],
        "x": True,
    }


def test_run_file_reads_base_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[base]\nmodel = "tiny"\noptimizer = { name = "lion", lr = 3e-4 }\n')
    cfg = load_run_config(str(path), ["optimizer.lr=1e-4"])
    assert cfg.model.name == "tiny" and cfg.optimizer.name == "lion" and cfg.optimizer["lr"] == 1e-4


def test_run_file_errors(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[base\nmodel = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_run_config(str(path), None)
    path.write_text("[bsae]\nmodel = 'tiny'")
    with pytest.raises(ConfigError, match="unknown table"):
        load_run_config(str(path), None)


def test_set_data_to_an_existing_file_is_a_text_corpus(tmp_path):
    corpus = tmp_path / "my.txt"
    corpus.write_text("hello world\n" * 100)
    cfg = load_run_config(None, [f"data={corpus}"])
    assert cfg.data.name == "text" and cfg.data["path"] == str(corpus)
    with pytest.raises(ConfigError) as e:  # a name that is neither a corpus nor a file stays an error
        load_run_config(None, [f"data={tmp_path / 'missing.txt'}"])
    assert "unknown" in e.value.message and "text" in e.value.message


def test_toml_files_that_are_not_utf8_or_not_regular_exit_2_in_one_line(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[suite]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8" in one_line_error(run_optbench("run", str(latin)))
    assert "not a regular file" in one_line_error(run_optbench("run", "/dev/zero"))
