"""bench.space: a suite's [search] table -> the space a search samples: choices, registry axes searched with
each entry's own parameters, and ranges declared as typed keys (space.RANGE)."""

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import RunConfig
from bench.registry import ConfigError
from bench.space import RANGE, parse_space
from bench.suite import Suite

BASE = {"model": "tiny", "data": {"name": "synthetic", "alphabet": 8, "order": 2, "length": 20000}, "steps": 60,
        "eval_interval": 20, "eval_batches": 2, "batch_size": 4, "schedule": {"name": "constant"}}  # fmt: skip
SEARCH = {"optimizer": ["adamw", "momentum", "lion"], "schedule.warmup": {"low": 0, "high": 10, "type": "int"}}


def suite_of(search, **base):
    return Suite.parse({"suite": {"name": "s", "seeds": [0]}, "base": {**BASE, **base}, "search": search})


def test_conditional_space_samples_each_optimizers_own_parameters():
    suite = suite_of(SEARCH)
    space = parse_space(suite.search, suite.base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        values = space.sample(trial)
        name = values["optimizer.name"]
        assert all(k.split(".")[1] == name for k in values if k.count(".") == 2)  # only the chosen one's
        assert ("optimizer.momentum.momentum" in values) == (name == "momentum")
        cfg = space.config(suite.base, values, seed=0)
        assert cfg.optimizer.name == name and cfg.schedule["warmup"] == values["schedule.warmup"]
        if name == "lion":
            assert cfg.optimizer["lr"] == values["optimizer.lion.lr"]
        study.tell(trial, 1.0)


@pytest.mark.parametrize("steps", [12, 40, 500, 4000])
def test_run_length_ranges_scale_with_the_run(steps):
    # the registry's warmup range was 0-500 steps: any search of a run of 500 steps or fewer failed
    suite = suite_of({"schedule": "auto"}, steps=steps)
    space = parse_space(suite.search, suite.base)
    warmups = [d for d in space.dimensions if d.name.endswith(".warmup")]
    assert warmups and all(d.low == 0 and 0 < d.high < steps and d.high == max(1, round(steps / 4)) for d in warmups)


ANY_VALUE = st.one_of(
    st.text(max_size=4), st.integers(), st.floats(), st.booleans(), st.lists(st.booleans(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["log", "type", "low"]), ANY_VALUE)
def test_a_range_refuses_values_of_the_wrong_type_or_out_of_range(field, value):
    # before: log = "no" searched on a log scale, and type = [] or low = inf crashed
    right = {"log": bool, "type": str, "low": int | float}[field]
    spec = {"low": 1e-4, "high": 1e-2, field: value}
    base = RunConfig.build({"model": "tiny", "steps": 20, "schedule": "constant"})
    ok = isinstance(value, right) and (field == "log" or not isinstance(value, bool)) and value == value
    ok = ok and (field != "type" or value == "float") and (field != "low" or 0 < value < 1e-2)
    if ok:
        assert parse_space({"optimizer.lr": spec}, base).dimensions
    else:
        with pytest.raises(ConfigError) as e:
            parse_space({"optimizer.lr": spec}, base)
        assert e.value.key.startswith("search.optimizer.lr")


# the TOML types each declared kind takes: a value of any other type is refused
KIND_TYPES = {str: (str,), float: (int, float), bool: (bool,)}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(list(RANGE.keys)), ANY_VALUE)
def test_every_range_key_refuses_a_value_of_the_wrong_type_naming_it(key, value):
    wanted = KIND_TYPES[RANGE.keys[key].kind]
    if isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted):
        return  # the right type; its values are tested above
    base = RunConfig.build({"model": "tiny", "steps": 20, "schedule": "constant"})
    with pytest.raises(ConfigError) as e:
        parse_space({"optimizer.lr": {"low": 1e-4, "high": 1e-2, key: value}}, base)
    assert e.value.key == f"search.optimizer.lr.{key}" and "\n" not in e.value.format()


@pytest.mark.parametrize("key", [k for k, p in RANGE.keys.items() if p.default is not None])
def test_every_range_key_takes_its_default_as_if_left_out(key):
    base = RunConfig.build({"model": "tiny", "steps": 20, "schedule": "constant"})
    spec = {"low": 1e-4, "high": 1e-2}
    given_default = parse_space({"optimizer.lr": {**spec, key: RANGE.keys[key].default}}, base)
    assert given_default.dimensions == parse_space({"optimizer.lr": spec}, base).dimensions


@pytest.mark.parametrize(
    ("spec", "key", "text"),
    [({"low": 1, "hihg": 2}, "search.batch_size.hihg", "did you mean 'high'"),
     ({"high": 8, "type": "int"}, "search.batch_size.low", "got nothing (a range needs finite numbers low < high)"),
     ({"low": 8, "high": 8, "type": "int"}, "search.batch_size", "needs finite numbers low < high, got low=8 high=8")],
)  # fmt: skip
def test_a_range_names_the_key_that_is_wrong(spec, key, text):
    base = RunConfig.build({"model": "tiny", "steps": 20, "schedule": "constant"})
    with pytest.raises(ConfigError) as e:
        parse_space({"batch_size": spec}, base)
    assert e.value.key == key and text in e.value.message
