"""bench.labels: the short, stable text of axis values and arms, widened only as far as an axis's values need."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.labels import LABEL_DIGITS, label, label_digits
from bench.registry import ConfigError


def test_labels_of_names_tables_numbers_and_lists():
    assert label({"name": "lion", "lr": 1e-4}) == "lion(lr=0.0001)"
    assert label("adamw") == "adamw" and label(3e-3) == "0.003" and label([0.9, 0.95]) == "[0.9, 0.95]"


def test_tables_joint_values_switches_and_nothing_enabled_read_plainly():
    assert label({"batch_size": 16, "grad_accum": 1}) == "{batch_size=16, grad_accum=1}"  # a joint axis's value
    assert label({"name": "norm", "max_norm": 0.5}) == "norm(max_norm=0.5)" and label({}) == "none"
    assert label(True) == "true" and label(False) == "false" and label(3) == "3"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1e-9, 1e9), min_size=1, max_size=5, unique=True))
def test_the_digits_are_the_fewest_from_4_that_tell_the_values_apart(values):
    digits = label_digits("axes.x", values)
    assert digits >= LABEL_DIGITS and len({label(v, digits) for v in values}) == len(values)
    if digits > LABEL_DIGITS:  # one digit fewer would read two values the same
        assert len({label(v, digits - 1) for v in values}) < len(values)


def test_values_no_precision_tells_apart_are_refused_naming_the_key():
    with pytest.raises(ConfigError) as e:
        label_digits("axes.steps", [1, 1.0])  # equal as numbers, distinct as TOML values
    assert e.value.key == "axes.steps" and "two values read the same" in e.value.message
