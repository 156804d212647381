"""Plugins: files or modules registering entries through the registries' public API, in every worker."""

import shutil
from pathlib import Path

import pytest

from bench import plugins
from bench.cli import main
from bench.config import RunConfig
from bench.runner import Plan, run_suite
from bench.store import load_results
from bench.suite import Suite
from bench.techniques import AXES

EXAMPLE = Path(__file__).parent.parent / "examples" / "my_techniques.py"
SUITE = """plugins = PLUGINS
[suite]
name = "NAME"
design = "ablation"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = 10
batch_size = 4
eval_interval = 5
eval_batches = 2
eval_batch_size = 4
schedule = "constant"
[axes]
AXES
"""
PLUGIN_AXES = (
    'optimizer = ["sgd_nesterov_wd"]\nschedule = ["cosine_restarts"]\ninit = ["small_normal"]\nclip = ["norm_half"]'
)


@pytest.fixture(autouse=True)
def fresh_registries(monkeypatch):
    """Each test starts from the built-ins alone, as a new process would."""
    before = {axis: dict(r.entries) for axis, r in AXES.items()}
    monkeypatch.delenv(plugins.ENV, raising=False)
    monkeypatch.setattr(plugins, "_loaded", {})
    yield
    for axis, registry in AXES.items():
        registry.entries.clear()
        registry.entries.update(before[axis])


def write(folder, name, plugin_list='["my_techniques.py"]', axes=PLUGIN_AXES):
    shutil.copy(EXAMPLE, folder / "my_techniques.py")
    path = folder / f"{name}.toml"
    path.write_text(SUITE.replace("PLUGINS", plugin_list).replace("NAME", name).replace("AXES", axes))
    return path


def test_a_suites_plugins_reach_two_spawned_workers_and_every_entry_trains(tmp_path):
    path = write(tmp_path, "byot")
    storage = str(tmp_path / "s.journal")
    run_suite(Plan(str(path), {}, storage, 2, 1), show_progress=False)
    frame = load_results("byot", storage)
    assert sorted(frame["arm"]) == sorted(
        ["base", "optimizer=sgd_nesterov_wd", "schedule=cosine_restarts", "init=small_normal", "clip=norm_half"]
    )
    assert (frame["status"] == "complete").all() and frame["value"].notna().all()


def test_the_command_line_plugin_lists_and_trains_and_reaches_workers_through_the_environment(tmp_path, capsys):
    shutil.copy(EXAMPLE, tmp_path / "p.py")
    assert main(["list", "--plugin", str(tmp_path / "p.py")]) == 0
    assert "sgd_nesterov_wd" in capsys.readouterr().out
    assert str((tmp_path / "p.py").resolve()) in plugins.os.environ[plugins.ENV]
    sets = ["model=tiny", "steps=6", "schedule=cosine_restarts", "optimizer=sgd_nesterov_wd", "eval_interval=3"]
    args = ["train", "--plugin", str(tmp_path / "p.py"), "--json", *[a for s in sets for a in ("--set", s)]]
    assert main(args) == 0
    assert '"status": "complete"' in capsys.readouterr().out


BAD_PLUGINS = {
    "missing file": ('["nowhere.py"]', None, "does not exist"),
    "syntax error": ('["bad.py"]', "def broken(:\n", "syntax error at line 4"),
    "failing import": ('["bad.py"]', "import no_such_module_for_optbench\n", "ModuleNotFoundError"),
    "raises": ('["bad.py"]', "raise RuntimeError('plugin exploded')\n", "RuntimeError: plugin exploded"),
    "clash with a built-in": (
        '["bad.py"]',
        "from bench.techniques import OPTIMIZERS\nOPTIMIZERS.add('adamw', 'mine')\n",
        "registered twice",
    ),  # fmt: skip
    "entry without builder": (
        '["bad.py"]',
        "from bench.techniques import CLIPPING\nCLIPPING.add('mine', 'no builder')\n",
        "has no builder",
    ),  # fmt: skip
    "regularizer": (
        '["bad.py"]',
        "from bench.techniques import REGULARIZERS\nREGULARIZERS.register('mine', 'x')(lambda p: None)\n",
        "optimizer, schedule, init, clip only",
    ),  # fmt: skip
    "schedule without warmup": (
        '["bad.py"]',
        "from bench.techniques import SCHEDULES\nSCHEDULES.register('mine', 'x')(lambda p, t, n: 1.0)\n",
        "must take `warmup`",
    ),  # fmt: skip
    "unknown module": ('["no_such_module_for_optbench"]', None, "No module named"),
    "not a list": ('"my_techniques.py"', None, "must be a list"),
}


@pytest.mark.parametrize("case", BAD_PLUGINS)
def test_a_bad_plugin_exits_2_in_one_line_naming_the_file_and_leaves_nothing(tmp_path, capsys, monkeypatch, case):
    plugin_list, source, text = BAD_PLUGINS[case]
    path = write(tmp_path, "bad", plugin_list, axes='optimizer = ["adamw"]')
    if source is not None:
        registers_first = (
            "from bench.registry import Param\nfrom bench.techniques import SCHEDULES\n"
            "SCHEDULES.register('half_done', 'x', warmup=Param(int, 0))(lambda p, t, n: 1.0)\n"
        )
        (tmp_path / "bad.py").write_text(registers_first + source)
    before = {axis: set(r.entries) for axis, r in AXES.items()}
    monkeypatch.chdir(tmp_path)
    files = sorted(tmp_path.rglob("*"))
    assert main(["run", str(path), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "plugins" in err and text in err, err
    assert {axis: set(r.entries) for axis, r in AXES.items()} == before  # its other entries were rolled back
    assert sorted(p for p in tmp_path.rglob("*") if "__pycache__" not in p.parts) == files


def test_a_plugin_loads_once_however_often_its_suite_is_read(tmp_path):
    path = write(tmp_path, "twice")
    Suite.load(path)
    Suite.load(path)  # registering twice would raise
    assert "cosine_restarts" in AXES["schedule"]


def test_editing_a_plugin_changes_the_identity_of_its_runs_and_only_theirs(tmp_path):
    path = write(tmp_path, "edited")
    before = {axis: dict(r.entries) for axis, r in AXES.items()}
    first = {r.arm_label: r.hash for r in Suite.load(path).runs()}
    assert Suite.load(path).base.optimizer.to_dict().get("plugin") is None  # a built-in carries none
    for axis, registry in AXES.items():  # a new process, with the edited file
        registry.entries.clear()
        registry.entries.update(before[axis])
    plugins._loaded.clear()
    plugin = tmp_path / "my_techniques.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    second = {r.arm_label: r.hash for r in Suite.load(path).runs()}
    assert first["base"] == second["base"]
    assert all(first[arm] != second[arm] for arm in first if arm != "base")
    stored = Suite.load(path).runs()[2].config.to_dict()  # a config read back from a store
    stored["schedule"]["plugin"] = "sha256:stale"
    assert RunConfig.from_dict(stored).hash == Suite.load(path).runs()[2].hash


def test_a_run_files_plugins_load_before_its_base_is_read(tmp_path):
    from bench.config import load_run_config

    shutil.copy(EXAMPLE, tmp_path / "p.py")
    path = tmp_path / "run.toml"
    path.write_text('plugins = ["p.py"]\n[base]\nmodel = "tiny"\ninit = { name = "small_normal", std = 0.02 }\n')
    cfg = load_run_config(str(path), ["clip=norm_half"])
    assert cfg.init.name == "small_normal" and cfg.init["std"] == 0.02 and cfg.clip.name == "norm_half"
    assert cfg.init["plugin"].startswith("sha256:")
