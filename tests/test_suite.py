import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import one_line_error, run_optbench
from suite_files import GRID_12, TINY_BASE, write_suite

from bench.cli import main
from bench.registry import ConfigError, Either
from bench.suite import NAME_BYTES, SUITE, Suite, flatten_axes

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


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


# the TOML types each declared kind takes: a value of any other type is refused
KIND_TYPES = {str: (str,), int: (int,), float: (int, float), bool: (bool,), list: (list,)}
TOML_VALUES = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.datetimes(),
)  # fmt: skip


def declared_types(param) -> tuple[type, ...]:
    forms = param.forms if isinstance(param, Either) else (param,)
    return tuple(t for form in forms for t in KIND_TYPES[form.kind])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(SUITE.keys)), TOML_VALUES)
def test_every_suite_key_refuses_a_value_of_the_wrong_type_naming_it(key, value):
    # before: metric = [] or {a = 1} crashed with TypeError (unhashable) in a membership test
    wanted = declared_types(SUITE.keys[key])
    if isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted):
        return  # the right type; its values are tested elsewhere
    with pytest.raises(ConfigError) as e:
        Suite.parse({**SMALL, "suite": {"name": "t", key: value}}, "t.toml")
    assert e.value.key == f"suite.{key}" and "\n" not in e.value.format()


@pytest.mark.parametrize("tuned", [False, True])
@pytest.mark.parametrize("key", list(SUITE.keys))
def test_every_suite_key_takes_its_default_as_if_left_out(key, tuned):
    meta = {k: v for k, v in {"name": "t", "tune": ["optimizer"] if tuned else []}.items() if k != key}
    left_out = Suite.parse({**SMALL, "suite": meta}, "t.toml")
    default = SUITE.keys[key].default
    if default is None:  # TOML has no null: such a key is only ever left out
        assert getattr(left_out, key) == ("t" if key == "name" else None)  # the name: the file's
    else:
        assert Suite.parse({**SMALL, "suite": {**meta, key: default}}, "t.toml") == left_out


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
    # each at the fewest digits (4 or more) that tell the axis's values apart; exact where it takes all 17
    # (widened to 16 digits, 0.44678255039639975 beside 1.0 and 0.9999999999999999 reads 0.4467825503963997)
    digits = next(d for d in range(4, 18) if len({f"{lr:.{d}g}" for lr in lrs}) == len(lrs))
    assert labels == [f"{lr:.{digits}g}" for lr in lrs]
    assert digits < 17 or all(float(text) == lr for text, lr in zip(labels, lrs, strict=True))


def test_an_axis_widens_its_labels_only_as_far_as_its_values_need():
    def labels(lrs):
        suite = Suite.parse({**SMALL, "suite": {"name": "t"}, "axes": {"optimizer.lr": lrs}})
        return [r.arm["optimizer.lr"] for r in suite.runs()]

    assert labels([1e-3, 3.14159e-3]) == ["0.001", "0.003142"]
    assert labels([1e-3, 1.0001e-3, 3.14159e-3]) == ["0.001", "0.0010001", "0.0031416"]


def test_confirming_seeds_follow_the_suites_own_or_are_listed_apart_from_them():
    def confirm(**meta):
        return Suite.parse({**SMALL, "suite": {"name": "t", "seeds": [0, 4], "tune": ["optimizer"], **meta}})

    assert confirm().confirm_seeds == (5, 6, 7)  # three fresh seeds after the last tuning one
    assert confirm(confirm_seeds=1).confirm_seeds == (5,) and confirm(confirm_seeds=0).confirm_seeds == ()
    assert confirm(confirm_seeds=[9, 2]).confirm_seeds == (9, 2)
    assert confirm(tune=[], confirm_seeds=2).confirm_seeds == ()  # only a suite that tunes confirms
    for listed, text in (([4, 8], "took no part in tuning"), ([8, 8], "lists a seed twice"), (101, "<= 100")):
        with pytest.raises(ConfigError) as e:
            confirm(confirm_seeds=listed)
        assert e.value.key == "suite.confirm_seeds" and text in e.value.message
    with pytest.raises(ConfigError, match="list them instead"):
        confirm(seeds=[2**63 - 2])  # three after it would pass the largest seed


@pytest.mark.parametrize(("key", "default"), [("tune_extend", 3), ("tune_refine", 1)])
def test_tuning_steps_are_counts_from_0_to_10(key, default):
    def parse(**meta):
        return Suite.parse({**SMALL, "suite": {"name": "t", "tune": ["optimizer"], **meta}})

    assert getattr(parse(), key) == default and getattr(parse(**{key: 0}), key) == 0
    for bad in (-1, 11, 2.0, True):
        with pytest.raises(ConfigError) as e:
            parse(**{key: bad})
        assert e.value.key == f"suite.{key}"


@pytest.mark.device
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_a_suite_on_absent_cuda_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_suite(tmp_path, "gpu", 'optimizer = ["adamw", "lion"]')
    storage = tmp_path / "store.journal"
    assert main(["run", str(path), "--device", "cuda", "--storage", str(storage), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "device" in err
    assert not storage.exists()


@FAST
@given(name=st.text(min_size=1, max_size=40))
def test_suite_names_are_safe_file_names_or_refused(tmp_path_factory, name):
    reports = tmp_path_factory.mktemp("r") / "reports"
    try:
        suite = Suite.parse({"suite": {"name": name}, "base": {"model": "tiny"}})
    except ConfigError as e:
        assert e.key == "suite.name"
        return
    target = (reports / f"{suite.name}.html").resolve()
    assert target.parent == reports.resolve()


def test_cli_refuses_a_suite_name_that_is_a_path(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[suite]\nname = "../../tmp/x"\n' + TINY_BASE.replace("STEPS", "10"))
    line = one_line_error(run_optbench("run", str(path), "--storage", str(tmp_path / "j.journal")))
    assert "suite.name" in line and not (tmp_path / "j.journal").exists()


@FAST
@given(
    lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    design=st.sampled_from(["grid", "ablation"]),
    tuned=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_a_combination_by_index_is_the_expanded_one(lengths, design, tuned):
    keys = ["optimizer.lr", "optimizer.weight_decay", "optimizer.eps"][: len(lengths)]
    axes = {k: [0.1 * (i + 1) for i in range(n)] for k, n in zip(keys, lengths, strict=True)}
    tune = [k for k, t in zip(keys, tuned, strict=False) if t]
    suite = Suite.parse({"suite": {"name": "c", "design": design, "tune": tune}, "base": {"model": "tiny"},
                         "axes": axes})  # fmt: skip
    combos = suite.combinations()
    assert suite.configuration_count() == len(combos)
    assert [suite.combination(i) for i in range(len(combos))] == combos
    if design == "ablation":  # every arm (the base too) at every tuned value, each other axis one at a time
        for key in keys:
            values = [c.get(key) for c in combos]
            if key in tune:
                assert all(values.count(v) == len(combos) // len(axes[key]) for v in axes[key])
            else:  # once per combination of the tuned values
                crossed = math.prod(len(axes[k]) for k in tune)
                assert sorted(v for v in values if v is not None) == sorted(axes[key] * crossed)


def huge_grid(max_runs: str = "") -> dict:
    values = [1e-4 * (i + 1) for i in range(100)]
    return {
        "suite": {"name": "huge", **({"max_runs": int(max_runs)} if max_runs else {})},
        "base": {"model": "tiny", "data": {"name": "synthetic", "alphabet": 8}, "steps": 10, "schedule": "constant"},
        "axes": {"optimizer.lr": values, "optimizer.weight_decay": values, "optimizer.eps": values},
    }


def test_a_grid_over_the_limit_is_refused_unless_sampled_and_sampling_never_expands_it(monkeypatch):
    with pytest.raises(ConfigError, match="1,000,000 configurations, over the limit of 100,000"):
        Suite.parse(huge_grid())
    monkeypatch.setattr(Suite, "combinations", lambda self: pytest.fail("the grid was expanded"))
    runs = Suite.parse(huge_grid("10")).runs()
    assert len(runs) == 10 and len({r.hash for r in runs}) == 10
    assert [r.hash for r in runs] == [r.hash for r in Suite.parse(huge_grid("10")).runs()]


def test_a_suite_file_is_parsed_once_per_content(tmp_path, monkeypatch):
    """A command loads its suite in several places: a large grid is validated once, not six times."""
    path = write_suite(tmp_path, "once", GRID_12)
    parse, calls = Suite.parse, []
    monkeypatch.setattr(Suite, "parse", lambda *a, **k: (calls.append(1), parse(*a, **k))[1])
    first = Suite.load(path, {"device": "cpu"})
    assert Suite.load(path, {"device": "cpu"}) is first and len(calls) == 1
    path.write_text(path.read_text().replace("[0, 1]", "[0]"))
    assert len(Suite.load(path, {"device": "cpu"}).runs()) == 6 and len(calls) == 2


def test_an_empty_suite_file_exits_2_in_one_line(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert "nothing to run" in one_line_error(run_optbench("run", str(empty)))
