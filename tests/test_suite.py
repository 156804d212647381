import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from suite_files import GRID_12, write_suite

from bench.cli import main
from bench.labels import label
from bench.registry import ConfigError
from bench.suite import NAME_BYTES, SUITE_KEYS, Suite, flatten_axes


def test_grid_is_every_combination_times_seeds(tmp_path):
    suite = Suite.load(write_suite(tmp_path, "g", GRID_12))
    runs = suite.runs()
    assert len(runs) == 12 and len({r.hash for r in runs}) == 12
    lion = [r for r in runs if r.arm["optimizer"] == "lion" and r.arm["optimizer.lr"] == "0.003"]
    assert len(lion) == 2 and {r.seed for r in lion} == {0, 1}
    # the whole-table axis applies first, the field refines it
    assert all(r.config.optimizer.name == "lion" and r.config.optimizer["lr"] == 3e-3 for r in lion)


def test_ablation_varies_one_axis_at_a_time(tmp_path):
    path = write_suite(
        tmp_path,
        "a",
        'optimizer = ["adamw", "lion"]\ninit = ["gpt2", "orthogonal"]',
        seeds="[0]",
        extra='design = "ablation"',
    )
    runs = Suite.load(path).runs()
    # base, lion, orthogonal (adamw and gpt2 are the base itself)
    assert len(runs) == 3
    assert sorted(r.arm_label for r in runs) == ["base", "init=orthogonal", "optimizer=lion"]


def test_max_runs_takes_a_seeded_subset_of_whole_configurations(tmp_path):
    path = write_suite(tmp_path, "m", GRID_12, extra="max_runs = 6")
    a, b = Suite.load(path).runs(), Suite.load(path).runs()
    assert len(a) == 6 and [r.hash for r in a] == [r.hash for r in b]
    arms = {r.arm_label for r in a}
    assert len(arms) == 3 and all(sum(r.arm_label == arm for r in a) == 2 for arm in arms)


def test_bare_dotted_toml_keys_are_axes():
    assert flatten_axes({"optimizer": {"lr": [1, 2]}, "init": ["a"]}) == {
        "optimizer.lr": [1, 2],
        "init": ["a"],
    }
    with pytest.raises(ConfigError, match="given twice"):
        flatten_axes({"optimizer": {"lr": [1]}, "optimizer.lr": [2]})


def test_labels():
    assert label({"name": "lion", "lr": 1e-4}) == "lion(lr=0.0001)"
    assert label("adamw") == "adamw" and label(3e-3) == "0.003" and label([0.9, 0.95]) == "[0.9, 0.95]"


def test_overrides_apply_to_every_run(tmp_path):
    from bench.devices import resolve_auto

    suite = Suite.load(write_suite(tmp_path, "o", GRID_12), {"device": "auto", "eval_batches": 3})
    # `auto` arrives resolved to this machine's device (before hashing)
    assert all(r.config.device == resolve_auto("auto") and r.config.eval_batches == 3 for r in suite.runs())


def test_suite_target_reaches_the_runs(tmp_path):
    suite = Suite.load(write_suite(tmp_path, "t", GRID_12, extra="target = 1.5"))
    assert all(r.config.target == 1.5 for r in suite.runs())


def test_shipped_suites_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "suites"
    files = sorted(root.glob("*.toml"))
    assert files
    for path in files:
        suite = Suite.load(path)
        assert suite.description and suite.runs()


GOOD_AXES = 'optimizer = ["adamw", "lion"]'
BAD_SUITES = [
    ("toml_syntax", "[suite\nname = 1", "not valid TOML"),
    (
        "unknown_section",
        f'[suite]\nname = "x"\n[bsae]\nmodel = "tiny"\n[axes]\n{GOOD_AXES}',
        "unknown section",
    ),
    ("unknown_suite_key", f'[suite]\nname = "x"\nseedz = [0]\n[axes]\n{GOOD_AXES}', "suite.seedz"),
    ("unknown_axis", '[suite]\nname = "x"\n[axes]\noptimiser = ["adamw"]', "did you mean 'optimizer'"),
    (
        "unknown_technique",
        '[suite]\nname = "x"\n[axes]\noptimizer = ["adamw", "adan"]',
        "unknown optimizer 'adan'",
    ),
    (
        "unknown_param",
        '[suite]\nname = "x"\n[axes]\n"optimizer.momentun" = [0.9]',
        "unknown parameter 'momentun'",
    ),
    ("wrong_type", '[suite]\nname = "x"\n[axes]\n"optimizer.lr" = ["fast"]', "must be a number"),
    ("empty_axis", '[suite]\nname = "x"\n[axes]\noptimizer = []', "non-empty list"),
    ("axis_not_list", '[suite]\nname = "x"\n[axes]\noptimizer = "adamw"', "non-empty list"),
    (
        "duplicate_axis",
        '[suite]\nname = "x"\n[axes]\noptimizer.lr = [1e-3]\n"optimizer.lr" = [2e-3]',
        "given twice",
    ),
    ("duplicate_value", '[suite]\nname = "x"\n[axes]\n"optimizer.lr" = [1e-3, 1e-3]', "lists a value twice"),
    ("negative_lr", '[suite]\nname = "x"\n[axes]\n"optimizer.lr" = [-1e-3]', "must be > 0"),
    ("zero_steps", '[suite]\nname = "x"\n[base]\nsteps = 0\n[axes]\n' + GOOD_AXES, "steps"),
    ("seeds_not_integers", f'[suite]\nname = "x"\nseeds = [0, 1.5]\n[axes]\n{GOOD_AXES}', "suite.seeds"),
    ("seeds_repeated", f'[suite]\nname = "x"\nseeds = [1, 1]\n[axes]\n{GOOD_AXES}', "seed twice"),
    ("bad_design", f'[suite]\nname = "x"\ndesign = "random"\n[axes]\n{GOOD_AXES}', "suite.design"),
    ("bad_metric", f'[suite]\nname = "x"\nmetric = "accuracy"\n[axes]\n{GOOD_AXES}', "suite.metric"),
    (
        "tune_not_an_axis",
        f'[suite]\nname = "x"\ntune = ["schedule.warmup"]\n[axes]\n{GOOD_AXES}',
        "is not an axis",
    ),
    ("base_not_table", f'[suite]\nname = "x"\nbase = 3\n[axes]\n{GOOD_AXES}', "suite.base"),
    # found by a fuzzer: each crashed after validation, or wrote files first
    ("name_too_long_in_bytes", f'[suite]\nname = "{"日" * 128}"\n[axes]\n{GOOD_AXES}', "bytes in UTF-8"),
    ("seed_over_int64", f'[suite]\nname = "x"\nseeds = [18446744073709551621]\n[axes]\n{GOOD_AXES}', "suite.seeds"),
    ("base_seed_over_int64", f'[suite]\nname = "x"\n[base]\nseed = {2**63}\n[axes]\n{GOOD_AXES}', "'seed'"),
    ("data_seed_over_int64", f'[suite]\nname = "x"\n[base]\ndata_seed = {2**64}\n[axes]\n{GOOD_AXES}', "data_seed"),
    (
        "synthetic_seed_negative",
        f'[suite]\nname = "x"\n[base]\ndata = {{name = "synthetic", seed = -1}}\n[axes]\n{GOOD_AXES}',
        "'data.seed': must be >= 0",
    ),
    (
        "synthetic_table_too_large",
        f'[suite]\nname = "x"\n[base]\ndata = {{name = "synthetic", alphabet = 256, order = 2}}\n[axes]\n{GOOD_AXES}',
        "'data.order': alphabet**order must be at most 4,096",
    ),
    ("metric_list", f'[suite]\nname = "x"\nmetric = []\n[axes]\n{GOOD_AXES}', "suite.metric"),
    ("metric_table", f'[suite]\nname = "x"\nmetric = {{a = 1}}\n[axes]\n{GOOD_AXES}', "suite.metric"),
    ("target_nan", f'[suite]\nname = "x"\ntarget = nan\n[axes]\n{GOOD_AXES}', "'suite.target'"),
    ("name_of_a_search_study", f'[suite]\nname = "fz.search"\n[axes]\n{GOOD_AXES}', "search studies"),
    ("empty_base_key", f'[suite]\nname = "x"\n[base]\n"" = 1\n[axes]\n{GOOD_AXES}', "unknown key ''"),
    (
        "bad_combination",
        '[suite]\nname = "x"\n[base]\nschedule = { name = "cosine", warmup = 50 }\n[axes]\nsteps = [100, 40]',
        "shorter than the run",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_SUITES, ids=[c[0] for c in BAD_SUITES])
def test_bad_suite_files_exit_2_naming_file_and_key_and_write_nothing(tmp_path, capsys, case, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    before = sorted(tmp_path.rglob("*"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and expected in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no results folder, no journal


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://nobody@127.0.0.1:1/none", "cannot connect"),
        ("redis://localhost/0", "unknown storage scheme"),
        ("/no/such/folder/x.journal", "does not exist"),
    ],
)
def test_bad_storage_exits_2_and_writes_nothing(tmp_path, capsys, url, expected):
    path = write_suite(tmp_path, "s", GOOD_AXES)
    before = sorted(tmp_path.rglob("*"))
    assert main(["run", str(path), "--storage", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "--storage" in err and expected in err and "\n" not in err
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_workers_exit_2(tmp_path, capsys):
    path = write_suite(tmp_path, "w", GOOD_AXES)
    assert main(["run", str(path), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_joint_axes_vary_several_fields_together_and_report_as_one_axis(tmp_path):
    from fabricate import fabricate_runs

    from bench.report import build_report

    doc = {"suite": {"name": "joint", "seeds": [0, 1, 2]},
           "base": {"model": "tiny", "steps": 100, "eval_interval": 50, "schedule": "constant"},
           "axes": {"batch": [{"batch_size": 16, "grad_accum": 1}, {"batch_size": 8, "grad_accum": 2}],
                    "optimizer": ["adamw", "lion"],
                    "warm": [{"optimizer.lr": 1e-3, "schedule.warmup": 0},
                             {"optimizer.lr": 3e-3, "schedule.warmup": 20}]}}  # fmt: skip
    suite = Suite.parse(doc)
    runs = suite.runs()
    assert len(runs) == 2 * 2 * 2 * 3
    assert {(r.config.batch_size, r.config.grad_accum) for r in runs} == {(16, 1), (8, 2)}
    # a joint value refines whichever optimizer the other axis chose
    assert {(r.config.optimizer.name, r.config.optimizer["lr"], r.config.schedule["warmup"]) for r in runs} == {
        ("adamw", 1e-3, 0), ("adamw", 3e-3, 20), ("lion", 1e-3, 0), ("lion", 3e-3, 20)}  # fmt: skip
    assert runs[0].arm["batch"] == "{batch_size=16, grad_accum=1}"
    for bad, key in (([{"batch_sise": 16}], "axes.batch.batch_sise"), ([{}], "axes.batch"),
                     ([{"batch_size": 0}], "axes.batch.batch_size")):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            Suite.parse({**doc, "axes": {"batch": bad}})
        assert e.value.key == key
    path = tmp_path / "joint.toml"
    path.write_text('[suite]\nname = "joint"\nseeds = [0, 1, 2]\n[base]\nmodel = "tiny"\nsteps = 100\n'
                    'eval_interval = 50\nschedule = "constant"\n[axes]\n'
                    'batch = [{ batch_size = 16, grad_accum = 1 }, { batch_size = 8, grad_accum = 2 }]\n'
                    'optimizer = ["adamw", "lion"]\n')  # fmt: skip
    fabricate_runs(Suite.load(path), str(tmp_path / "j.journal"), status=lambda i: "complete")
    html = build_report(Suite.load(path), str(tmp_path / "j.journal"), tmp_path / "j.html").read_text()
    assert 'alt="main effect of batch"' in html and "interaction of batch and optimizer" in html


BASELINE_DOC = {"suite": {"name": "bl", "seeds": [0]}, "base": {"model": "tiny", "steps": 20, "schedule": "constant"},
                "axes": {"optimizer": ["adamw", "lion", "sgd"], "batch_size": [4, 8]}}  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5), st.sampled_from(["grid", "ablation"]))
def test_a_suites_baseline_is_the_reports_baseline(index, design):
    # before: `baseline` was accepted and never read; the report always compared with the first arm
    import pandas as pd

    from bench.report import baseline_arm

    doc = {**BASELINE_DOC, "suite": {**BASELINE_DOC["suite"], "design": design}}
    arms = Suite.parse(doc).arm_labels()
    chosen = arms[index % len(arms)]
    suite = Suite.parse({**doc, "suite": {**doc["suite"], "baseline": chosen}})
    assert baseline_arm(suite, pd.DataFrame({"arm": list(reversed(arms))})) == chosen


@pytest.mark.parametrize("baseline", ["optimizer=adam", "adamw", 3, "optimizer=lion, batch_size=16"])
def test_a_baseline_that_is_no_arm_is_refused_naming_the_arms(baseline):
    with pytest.raises(ConfigError) as e:
        Suite.parse({**BASELINE_DOC, "suite": {**BASELINE_DOC["suite"], "baseline": baseline}}, "bl.toml")
    assert e.value.key == "suite.baseline" and "arms: 'optimizer=adamw, batch_size=4'" in e.value.message
    assert "\n" not in e.value.format()


SMALL = {"suite": {"name": "t"}, "base": {"model": "tiny", "steps": 20, "schedule": "constant"},
         "axes": {"optimizer": ["adamw", "lion"]}}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from("a日é-"), min_size=1, max_size=128).filter(lambda n: n[0] not in "-"))
def test_a_suite_name_fits_a_file_name_in_bytes(tmp_path_factory, name):
    # before: 128 CJK characters (384 bytes) passed, and writing the report failed after training
    doc = {**SMALL, "suite": {"name": name}}
    if len(name.encode()) > NAME_BYTES:
        with pytest.raises(ConfigError) as e:
            Suite.parse(doc)
        assert e.value.key == "suite.name" and "bytes" in e.value.message
    else:  # its longest file, the report's temporary one with a 7-digit pid, can be made
        Suite.parse(doc)
        (tmp_path_factory.mktemp("n") / f".{name}.html.4194304.part").write_text("")


@pytest.mark.parametrize("name", ["fz.search", "a.search.b", "x.search.search"])
def test_a_suite_name_that_a_search_study_has_is_refused(name):
    with pytest.raises(ConfigError) as e:
        Suite.parse({**SMALL, "suite": {"name": name}})
    assert e.value.key == "suite.name" and "<suite>.search" in e.value.message


@pytest.mark.parametrize("name", ["fz.searching", "search", "research", "fz.search_2"])
def test_names_near_a_search_study_name_are_allowed(name):
    assert Suite.parse({**SMALL, "suite": {"name": name}}).name == name


@pytest.mark.parametrize(
    ("where", "field", "key"),
    [("suite", "seeds", "suite.seeds"), ("base", "seed", "seed"), ("base", "data_seed", "data_seed")],
)
@pytest.mark.parametrize("over", [2**63, 2**64 + 5])
def test_seeds_are_at_most_int64(where, field, key, over):
    # before: they passed, then torch.manual_seed raised RuntimeError in every run
    def parse(seed):
        return Suite.parse({**SMALL, where: {**SMALL.get(where, {}), field: [seed] if field == "seeds" else seed}})

    with pytest.raises(ConfigError) as e:
        parse(over)
    assert e.value.key == key and "\n" not in e.value.format()
    assert parse(2**63 - 1).runs()  # the largest allowed


# the type each [suite] key takes (what a value of any other type is refused as)
SUITE_KEY_TYPES = {"name": str, "description": str, "design": str, "seeds": list, "metric": str,
                   "target": (int, float), "tune": list, "max_runs": int, "baseline": str,
                   "confirm_seeds": (int, list), "tune_extend": int, "tune_refine": int}  # fmt: skip
TOML_VALUES = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.datetimes(),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SUITE_KEYS), TOML_VALUES)
def test_every_suite_key_refuses_a_value_of_the_wrong_type_naming_it(key, value):
    # before: metric = [] or {a = 1} crashed with TypeError (unhashable) in a membership test
    wanted = SUITE_KEY_TYPES[key]
    if isinstance(value, wanted) and not (isinstance(value, bool) and wanted is not str):
        return  # the right type; its values are tested elsewhere
    with pytest.raises(ConfigError) as e:
        Suite.parse({**SMALL, "suite": {"name": "t", key: value}}, "t.toml")
    assert e.value.key == f"suite.{key}" and "\n" not in e.value.format()


@pytest.mark.parametrize("target", [float("nan"), float("inf"), -float("inf"), 10**400])
def test_a_target_that_is_no_finite_number_is_refused_as_suite_target(target):
    with pytest.raises(ConfigError) as e:
        Suite.parse({**SMALL, "suite": {"name": "t", "target": target}})
    assert e.value.key == "suite.target"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1.0), min_size=2, max_size=4))
def test_distinct_axis_values_are_distinct_arms_and_equal_ones_are_refused(lrs):
    # before: 0.001 and 0.0010001 were refused as the same value (their 4-digit labels were compared)
    doc = {**SMALL, "suite": {"name": "t"}, "axes": {"optimizer.lr": lrs}}
    if len(set(lrs)) < len(lrs):
        with pytest.raises(ConfigError, match="lists a value twice"):
            Suite.parse(doc)
        return
    suite = Suite.parse(doc)
    labels = [r.arm["optimizer.lr"] for r in suite.runs()]
    assert len(set(labels)) == len(lrs)
    assert all(float(text) == lr for text, lr in zip(labels, lrs, strict=True) if text != f"{lr:.4g}")


def test_an_axis_widens_its_labels_only_as_far_as_its_values_need():
    def labels(lrs):
        suite = Suite.parse({**SMALL, "suite": {"name": "t"}, "axes": {"optimizer.lr": lrs}})
        return [r.arm["optimizer.lr"] for r in suite.runs()]

    assert labels([1e-3, 3.14159e-3]) == ["0.001", "0.003142"]
    assert labels([1e-3, 1.0001e-3, 3.14159e-3]) == ["0.001", "0.0010001", "0.0031416"]
