"""bench.reference: the declared tables of a suite file, as data a reference page is generated from."""

import json

from bench.reference import tables
from bench.space import RANGE
from bench.suite import SUITE


def test_every_declared_key_is_listed_with_its_type_default_and_a_printable_help():
    listed = json.loads(json.dumps(tables()))  # plain data, as `optbench list --json` lists the axes
    assert list(listed) == ["suite", "search"]
    for name, table in (("suite", SUITE), ("search", RANGE)):
        assert listed[name]["description"] and list(listed[name]["keys"]) == list(table.keys)
        for key, entry in listed[name]["keys"].items():
            assert entry["type"] and "default" in entry, key
            assert entry["help"][0].isupper() and entry["help"].endswith(".") and "\n" not in entry["help"], key


def test_what_the_listing_says_is_what_the_parsers_check():
    suite = tables()["suite"]["keys"]
    assert suite["design"] == {"type": "one of grid, ablation", "default": "grid", "help": SUITE.keys["design"].help}
    assert suite["seeds"]["default"] == [0] and suite["seeds"]["type"].startswith("a non-empty list of distinct seeds")
    assert suite["tune_extend"]["type"] == "an integer >= 0 and <= 10"
    assert len(suite["name"]["rules"]) == 3 and "at most 128 characters" in suite["name"]["rules"][0]
    assert suite["confirm_seeds"]["type"].startswith("a count of fresh seeds (an integer >= 0 and <= 100) or a list")
    search = tables()["search"]["keys"]
    assert search["type"]["type"] == "one of float, int" and search["log"]["default"] is False
