"""bench.registry: typed parameters, the tables declared with them, and did-you-mean messages."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.registry import ConfigError, Either, Param, Rule, Table

SEEDS = Param(list, (0,), "Seeds.", item=Param(int, None, "seed", low=0, high=9), required=True, unique=True)
COUNT_OR_SEEDS = Either(
    (Param(int, None, "a count", low=0, high=3), Param(list, None, item=Param(int, None, "seed"))), 1
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 12), max_size=5))
def test_a_list_checks_each_item_and_names_the_list_and_the_item(values):
    if values and all(0 <= v <= 9 for v in values) and len(set(values)) == len(values):
        assert SEEDS.check(values, "seeds") == values
        return
    with pytest.raises(ConfigError) as e:
        SEEDS.check(values, "seeds")
    assert e.value.key == "seeds"
    if not values:
        assert "must be a non-empty list of distinct seeds, each an integer >= 0 and <= 9" in e.value.message
    elif any(not 0 <= v <= 9 for v in values):
        i = next(i for i, v in enumerate(values) if not 0 <= v <= 9)
        assert f"(seed {i + 1} of {values!r})" in e.value.message
    else:
        assert e.value.message == f"lists a seed twice: {values!r}; list each once"


@pytest.mark.parametrize(
    ("value", "result", "text"),
    [(2, 2, None), ([5, 7], [5, 7], None), (4, None, "must be <= 3, got 4 (a count)"), (True, None, "or a list"),
     ("x", None, "must be a count (an integer >= 0 and <= 3) or a list of seeds, each an integer, got 'x'"),
     (None, None, "got nothing")],
)  # fmt: skip
def test_either_takes_the_form_its_type_names(value, result, text):
    if text is None:
        assert COUNT_OR_SEEDS.check(value, "k") == result
    else:
        with pytest.raises(ConfigError, match=re.escape(text)) as e:
            COUNT_OR_SEEDS.check(value, "k")
        assert e.value.key == "k"


def test_a_rule_speaks_after_the_type_and_bounds():
    short = Param(str, "a", "A name.", rules=(Rule("at most 3 characters", lambda v: "too long" * (len(v) > 3)),))
    assert short.check("abc", "n") == "abc"
    with pytest.raises(ConfigError, match="too long"):
        short.check("abcd", "n")
    with pytest.raises(ConfigError, match="must be a string, got 4"):
        short.check(4, "n")
    assert short.to_json()["rules"] == ["at most 3 characters"]


def test_a_table_fills_in_defaults_and_refuses_unknown_keys_with_a_suggestion():
    table = Table("t", "A table.", {"seeds": SEEDS, "count": COUNT_OR_SEEDS})
    assert table.check({}, "t") == {"seeds": [0], "count": 1}
    assert table.check({"count": [3]}, "t") == {"seeds": [0], "count": [3]}
    with pytest.raises(ConfigError) as e:
        table.check({"seed": [1]}, "t")
    assert (
        e.value.key == "t.seed"
        and "did you mean 'seeds'" in e.value.message
        and "allowed: seeds, count" in e.value.message
    )
    assert table.to_json()["keys"]["count"]["default"] == 1
