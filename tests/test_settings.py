"""Every OPTBENCH_* variable optbench reads is in bench.settings' table, and every bad value of each is
refused by every command in one line naming it, exit 2, before anything is written."""

import re
from pathlib import Path

import pytest

from bench import settings
from bench.cli import main
from bench.registry import ConfigError

ROOT = Path(__file__).resolve().parent.parent

# Values no variable allows, and each variable's own bad ones; None stands for a regular file (no folder).
EVERYWHERE_BAD = ["abc", "nan", "-1", "1e400", "", " "]
BAD = {
    "OPTBENCH_RESULTS_DIR": [None],
    "OPTBENCH_DATA_DIR": [None, "/no/such/folder"],
    "OPTBENCH_CACHE_DIR": [None],
    "OPTBENCH_CALIBRATION": ["/"],
    "OPTBENCH_PLUGINS": ["a b", "x;y"],
    "OPTBENCH_GRID_LIMIT": ["0", "1.5", "inf"],
    "OPTBENCH_MEMORY_LIMIT": ["0", "12Q", "inf", "-3G"],
    "OPTBENCH_PROGRESS_INTERVAL": ["inf", "-0.5"],
    "OPTBENCH_GRACE_PERIOD": ["1.5", "inf", "-1"],
    "OPTBENCH_HEARTBEAT_INTERVAL": ["0", "0.5", "inf"],
    "OPTBENCH_LOCK_GRACE": ["0", "0.5", "inf"],
    "OPTBENCH_DB_RETRY": ["inf", "-1"],
    "OPTBENCH_FAULT": ["kill", "kill:0", "nope:1", "stop:nowhere:1", "stop:append:locked"],
    "OPTBENCH_FAULT_COUNT": ["/no/such/folder/log"],
}
GOOD = {
    "OPTBENCH_GRID_LIMIT": ("7", 7), "OPTBENCH_MEMORY_LIMIT": ("2G", 2 * 2**30),
    "OPTBENCH_PROGRESS_INTERVAL": ("0", 0.0), "OPTBENCH_GRACE_PERIOD": ("0", 0),
    "OPTBENCH_HEARTBEAT_INTERVAL": ("1", 1), "OPTBENCH_LOCK_GRACE": ("1", 1.0), "OPTBENCH_DB_RETRY": ("0", 0.0),
    "OPTBENCH_FAULT": ("stop:append:locked:3", "stop:append:locked:3"), "OPTBENCH_CALIBRATION": ("off", "off"),
    "OPTBENCH_PLUGINS": (f"a.py{':'}pkg.mod", ["a.py", "pkg.mod"]),
}  # fmt: skip


def test_every_variable_the_code_reads_is_in_the_table():
    read = set()
    for path in (ROOT / "bench").rglob("*.py"):
        if path.name != "settings.py":
            read |= set(re.findall(r"OPTBENCH_[A-Z_]+[A-Z]", path.read_text()))
    assert read == set(settings.SETTINGS), "a variable read outside bench.settings, or one the table lists unread"
    assert set(BAD) == set(settings.SETTINGS)  # this test names bad values for each


def bad_values(tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("")
    for name, values in BAD.items():
        for value in [*values, *(EVERYWHERE_BAD if name not in ("OPTBENCH_CALIBRATION", "OPTBENCH_FAULT_COUNT")
                                 and "DIR" not in name and name != "OPTBENCH_PLUGINS" else [])]:  # fmt: skip
            yield name, str(regular) if value is None else value


def test_every_bad_value_is_refused_naming_the_variable(tmp_path, monkeypatch):
    tried = 0
    for name, value in bad_values(tmp_path):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as e:
            settings.get(name)
        assert e.value.key == name and repr(value) in e.value.message, (name, value)
        monkeypatch.delenv(name)
        tried += 1
    assert tried > 50


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_values_are_read(monkeypatch, name):
    monkeypatch.setenv(name, GOOD[name][0])
    assert settings.get(name) == GOOD[name][1]
    monkeypatch.delenv(name)
    assert settings.get(name) == settings.SETTINGS[name].default


@pytest.mark.parametrize("command", [["list"], ["doctor"], ["run", "no-such.toml"], ["results", "x.toml"]])
def test_every_command_refuses_a_bad_variable_in_one_line_exit_2(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    for name in ("OPTBENCH_GRACE_PERIOD", "OPTBENCH_HEARTBEAT_INTERVAL", "OPTBENCH_GRID_LIMIT",
                 "OPTBENCH_PROGRESS_INTERVAL", "OPTBENCH_MEMORY_LIMIT", "OPTBENCH_FAULT"):  # fmt: skip
        monkeypatch.setenv(name, "abc")
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and "'abc'" in err and "Traceback" not in err
        monkeypatch.delenv(name)
    assert list(tmp_path.iterdir()) == []  # nothing written
