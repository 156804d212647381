"""Reading results never runs their code: `optbench results`, `report`, `doctor`, `compare` and `export` import
no plugin (declared in the suite, symlinked, outside the suite's folder, installed, or on the command line)
and no class_path module, yet read the same runs as the command that trained them (bench.standin)."""

import importlib.util
import json
import os
import subprocess
import sys

from tests.journals import ROOT

# A plugin that says when it is imported: a marker file named after it, beside it.
PLUGIN = """
from pathlib import Path
Path(__file__).with_name(Path(__file__).stem + ".imported").write_text("ran")
from bench.axes import register
from bench.registry import Param
from bench.techniques.optimizers import param_groups

@register("optimizer", "NAME", "plain SGD from a plugin", lr=Param(float, 0.05, "rate", positive=True),
          weight_decay=Param(float, 0.0, "decay", low=0.0), decay_all=Param(bool, False, "decay all"))
def build(model, p, device="cpu"):
    import torch
    return [torch.optim.SGD(param_groups(model, p), lr=p["lr"])]
"""
# A module a class_path names: an optimizer, and a marker when imported.
EVIL = """
from pathlib import Path
Path(__file__).with_name("evil_mod.imported").write_text("ran")
import torch
class EvilSGD(torch.optim.SGD):
    pass
"""
SUITE = """
plugins = ["../../outside.py", "linked.py"]
[suite]
name = "readonly"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 1, length = 20000 }
steps = 20
batch_size = 4
eval_interval = 10
eval_batches = 2
eval_batch_size = 4
schedule = "constant"
[axes]
optimizer = ["adamw", "outside_sgd", { name = "linked_sgd", lr = 0.02 }, { class_path = "evil_mod.EvilSGD", lr = 0.1 }]
"""


def folder(tmp_path):
    """tmp/outside.py; tmp/real/linked.py, symlinked from tmp/a/b/linked.py; the suite and evil_mod in tmp/a/b."""
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    (tmp_path / "outside.py").write_text(PLUGIN.replace("NAME", "outside_sgd"))
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "linked.py").write_text(PLUGIN.replace("NAME", "linked_sgd"))
    (here / "linked.py").symlink_to(tmp_path / "real" / "linked.py")
    (here / "evil_mod.py").write_text(EVIL)
    (here / "s.toml").write_text(SUITE)
    (tmp_path / "cli_plugin.py").write_text(PLUGIN.replace("NAME", "cli_sgd"))
    return here


def markers(tmp_path):
    return sorted(p.name for p in tmp_path.rglob("*.imported"))


def optbench(here, *args):
    """`python -m bench ARGS` from the suite's folder (so ./evil_mod.py is importable, as the README warns)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=here, capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip


def test_results_report_doctor_compare_and_export_run_no_plugin_and_import_no_class_path_module(tmp_path):
    here = folder(tmp_path)
    trained = optbench(here, "run", "s.toml", "--workers", "1", "--quiet", "--no-report")
    assert trained.returncode == 0, trained.stderr
    assert markers(tmp_path) == ["evil_mod.imported", "linked.imported", "outside.imported"]  # training runs them
    for marker in tmp_path.rglob("*.imported"):
        marker.unlink()
    table = optbench(here, "results", "s.toml", "--format", "json", "--plugin", str(tmp_path / "cli_plugin.py"))
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout)
    # the same runs as the command that trained them: four finished, none "not run yet"
    assert [r["status"] for r in rows] == ["complete"] * 4, [r["arm"] for r in rows]
    assert any("EvilSGD" in r["arm"] for r in rows) and any("outside_sgd" in r["arm"] for r in rows)
    assert "study 'readonly': 4 run(s)" in table.stderr and "not run yet" not in table.stderr
    report = optbench(here, "report", "s.toml", "--no-sample")
    assert report.returncode == 0, report.stderr
    doctor = optbench(here, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    compared = optbench(here, "compare", "s.toml", "--against-set", "eval_batches=3")  # no runs there: all listed
    assert compared.returncode in (0, 2) and "Traceback" not in compared.stderr, compared.stderr
    if importlib.util.find_spec("tensorboard"):
        exported = optbench(here, "export", "s.toml", "--to", "tensorboard", str(tmp_path / "tb"))
        assert exported.returncode == 0, exported.stderr
    assert markers(tmp_path) == []  # nothing was imported by reading


def test_an_edited_plugin_reads_as_runs_not_yet_run_without_running_it(tmp_path):
    """The runs' identity covers the plugin's code: reading hashes the file as training would, unrun."""
    here = folder(tmp_path)
    assert optbench(here, "run", "s.toml", "--workers", "1", "--quiet", "--no-report").returncode == 0
    (tmp_path / "outside.py").write_text(PLUGIN.replace("NAME", "outside_sgd") + "\n# edited\n")
    for marker in tmp_path.rglob("*.imported"):
        marker.unlink()
    table = optbench(here, "results", "s.toml")
    assert table.returncode == 0 and "study 'readonly': 3 run(s) of 4 (1 not run yet)" in table.stderr, table.stderr
    assert markers(tmp_path) == []


def test_a_suite_never_run_with_its_plugins_reads_as_no_results_running_nothing(tmp_path):
    here = folder(tmp_path)
    done = optbench(here, "results", "s.toml")
    assert done.returncode == 0 and "no results for suite 'readonly' yet" in done.stderr, done.stderr
    assert markers(tmp_path) == []
