"""Plugins: files or modules registering entries on any axis through bench.axes.register, in every worker."""

import shutil
from pathlib import Path

import pytest

from bench import plugins
from bench.axes import AXES
from bench.cli import main
from bench.config import RunConfig
from bench.runner import Plan, run_suite
from bench.store import load_results
from bench.suite import Suite

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
    'optimizer = ["sgd_nesterov_wd"]\nschedule = ["cosine_restarts"]\ninit = ["small_normal"]\nclip = ["norm_half"]\n'
    'regularization = ["grad_noise"]'
)


@pytest.fixture(autouse=True)
def fresh_registries(monkeypatch):
    """Each test starts from the built-ins alone, as a new process would."""
    before = {name: dict(axis.registry.entries) for name, axis in AXES.items()}
    monkeypatch.delenv(plugins.ENV, raising=False)
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_installed_scanned", False)
    yield
    for name, axis in AXES.items():
        axis.registry.entries.clear()
        axis.registry.entries.update(before[name])


def write(folder, name, plugin_list='["my_techniques.py"]', axes=PLUGIN_AXES):
    shutil.copy(EXAMPLE, folder / "my_techniques.py")
    path = folder / f"{name}.toml"
    path.write_text(SUITE.replace("PLUGINS", plugin_list).replace("NAME", name).replace("AXES", axes))
    return path


def test_a_suites_plugins_reach_two_spawned_workers_and_every_entry_trains(tmp_path, capsys):
    path = write(tmp_path, "byot")
    storage = str(tmp_path / "s.journal")
    run_suite(Plan(str(path), {}, storage, 2, 1), show_progress=False)
    frame = load_results("byot", storage)
    assert main(["results", str(path), "--storage", storage]) == 0
    said = capsys.readouterr().err
    assert "plugins: my_techniques.py sha256:" in said and "regularization grad_noise" in said, said
    assert sorted(frame["arm"]) == sorted(
        [
            "base",
            "optimizer=sgd_nesterov_wd",
            "schedule=cosine_restarts",
            "init=small_normal",
            "clip=norm_half",
            "regularization=grad_noise",
        ]  # fmt: skip
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
        "register('optimizer', 'adamw', 'mine', lr=Param(float, 1e-3))(lambda m, p, d: [])\n",
        "registered twice",
    ),
    "entry without builder": (
        '["bad.py"]',
        "from bench.techniques.clipping import CLIPPING\nCLIPPING.add('mine', 'no builder')\n",
        "has no builder",
    ),
    "builder of the wrong shape": (
        '["bad.py"]',
        "register('clip', 'mine', 'x', promise=lambda p: ('unbounded', 1))(lambda p, extra: None)\n",
        "its builder must take (p)",
    ),
    "entry without its promise": (
        '["bad.py"]',
        "register('init', 'mine', 'x')(lambda model, p: None)\n",
        "declares no promise",
    ),
    "schedule without warmup": (
        '["bad.py"]',
        "register('schedule', 'mine', 'x', promise=lambda p, n: {0: 1.0})(lambda p, t, n: 1.0)\n",
        "must take parameter(s) warmup",
    ),
    "regularizer that is no Regularizer": (
        '["bad.py"]',
        "register('regularization', 'mine', 'x')(lambda p: None)\n",
        "must return a bench.techniques.regularization.Regularizer",
    ),
    "model preset missing a field": (
        '["bad.py"]',
        "register('model', 'mine', 'x', n_layer=Param(int, 1))(None)\n",
        "must take parameter(s) n_head",
    ),
    "unknown axis": ('["bad.py"]', "register('optimiser', 'mine', 'x')(None)\n", "unknown axis 'optimiser'"),
    "unknown module": ('["no_such_module_for_optbench"]', None, "No module named"),
    # what is no Exception: these used to end optbench silently (exit 3 or 0), as Ctrl-C (130) or with a traceback
    "sys.exit(3)": ('["bad.py"]', "import sys\nsys.exit(3)\n", "it raised SystemExit(3)"),
    "sys.exit(0)": ('["bad.py"]', "raise SystemExit(0)\n", "it raised SystemExit(0)"),
    "sys.exit()": ('["bad.py"]', "import sys\nsys.exit()\n", "it raised SystemExit(None)"),
    "KeyboardInterrupt": ('["bad.py"]', "raise KeyboardInterrupt\n", "it raised KeyboardInterrupt"),
    "own BaseException": (
        '["bad.py"]',
        "class Abort(BaseException):\n    pass\nraise Abort('stop here')\n",
        "it raised Abort: stop here",
    ),
    "not a list": ('"my_techniques.py"', None, "must be a list"),
}


@pytest.mark.parametrize("case", BAD_PLUGINS)
def test_a_bad_plugin_exits_2_in_one_line_naming_the_file_and_leaves_nothing(tmp_path, capsys, monkeypatch, case):
    plugin_list, source, text = BAD_PLUGINS[case]
    path = write(tmp_path, "bad", plugin_list, axes='optimizer = ["adamw"]')
    if source is not None:
        registers_first = (  # an entry registered before the failure: rolled back with the rest
            "from bench.axes import register\nfrom bench.registry import Param\n"
            "register('schedule', 'half_done', 'x', warmup=Param(int, 0), promise=lambda p, n: {0: 1.0})"
            "(lambda p, t, n: 1.0)\n"
        )
        (tmp_path / "bad.py").write_text(registers_first + source)
    before = {name: set(axis.registry.entries) for name, axis in AXES.items()}
    monkeypatch.chdir(tmp_path)
    files = sorted(tmp_path.rglob("*"))
    assert main(["run", str(path), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "plugins" in err and text in err, err
    assert {name: set(axis.registry.entries) for name, axis in AXES.items()} == before  # all rolled back
    assert sorted(p for p in tmp_path.rglob("*") if "__pycache__" not in p.parts) == files


def test_a_plugin_loads_once_however_often_its_suite_is_read(tmp_path):
    path = write(tmp_path, "twice")
    Suite.load(path)
    Suite.load(path)  # registering twice would raise
    assert "cosine_restarts" in AXES["schedule"].registry


def test_editing_a_plugin_changes_the_identity_of_its_runs_and_only_theirs(tmp_path):
    path = write(tmp_path, "edited")
    before = {name: dict(axis.registry.entries) for name, axis in AXES.items()}
    first = {r.arm_label: r.hash for r in Suite.load(path).runs()}
    assert Suite.load(path).base.optimizer.to_dict().get("plugin") is None  # a built-in carries none
    for name, axis in AXES.items():  # a new process, with the edited file
        axis.registry.entries.clear()
        axis.registry.entries.update(before[name])
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
    from bench.runfile import load_run_config

    shutil.copy(EXAMPLE, tmp_path / "p.py")
    path = tmp_path / "run.toml"
    path.write_text('plugins = ["p.py"]\n[base]\nmodel = "tiny"\ninit = { name = "small_normal", std = 0.02 }\n')
    cfg = load_run_config(str(path), ["clip=norm_half"])
    assert cfg.init.name == "small_normal" and cfg.init["std"] == 0.02 and cfg.clip.name == "norm_half"
    assert cfg.init["plugin"].startswith("p.py sha256:")


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path, monkeypatch):
    """A distribution listing a module under `optbench.plugins` is loaded by every optbench process, and its
    entries carry the distribution's name and version."""
    (tmp_path / "optbench_extra.py").write_text(
        "from bench.axes import register\nfrom bench.registry import Param\n"
        "register('clip', 'quarter', 'clip the global norm to 0.25', promise=lambda p: ('global_norm', 0.25))(\n"
        "    lambda p: lambda params: __import__('torch').nn.utils.clip_grad_norm_(params, 0.25))\n"
    )
    info = tmp_path / "optbench_extra-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: optbench-extra\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[optbench.plugins]\nextra = optbench_extra\n")
    (info / "top_level.txt").write_text("optbench_extra\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_installed()
    entry = AXES["clip"].registry["quarter"]
    assert entry.params["plugin"].default == "optbench-extra 1.2.3"
    plugins.load_installed()  # once per process
    assert RunConfig.build({"clip": "quarter"}).clip["plugin"] == "optbench-extra 1.2.3"
