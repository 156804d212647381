"""Every entry of every axis keeps its axis's contract (bench.contracts), built-ins and the example plugins
alike: the cases are generated from the axis table, so a new entry or a new axis is tested without a line
here."""

from pathlib import Path

import pytest

from bench import plugins
from bench.axes import AXES
from bench.contracts import _verify_corpus, verify

EXAMPLES = Path(__file__).parent.parent / "examples"


def example_entries() -> list[tuple[str, object]]:
    """(axis, entry) of each entry the example plugins register, loaded and then rolled back, so the other
    tests' registries hold the built-ins alone."""
    before = {name: dict(axis.registry.entries) for name, axis in AXES.items()}
    loaded = dict(plugins._loaded)
    try:
        for plugin in ("my_techniques.py", "my_corpus.py"):
            plugins.load_one(str(EXAMPLES / plugin), None, "plugins")
        return [
            (name, entry)
            for name, axis in AXES.items()
            for entry_name, entry in axis.registry.entries.items()
            if entry_name not in before[name]
        ]
    finally:
        for name, axis in AXES.items():
            axis.registry.entries.clear()
            axis.registry.entries.update(before[name])
        plugins._loaded.clear()
        plugins._loaded.update(loaded)


BUILT_IN = [(name, entry) for name, axis in AXES.items() for entry in axis.registry]
PLUGIN = example_entries()
CASES = [(name, entry, False) for name, entry in BUILT_IN] + [(name, entry, True) for name, entry in PLUGIN]


def test_the_examples_cover_every_axis_but_the_model():
    assert {name for name, _ in PLUGIN} == set(AXES) - {"model"}


@pytest.fixture
def registered():
    """Puts a plugin entry in its registry for one test (configs name entries through the registries)."""
    added = []

    def put(axis: str, entry) -> None:
        if entry.name not in AXES[axis].registry.entries:
            AXES[axis].registry.entries[entry.name] = entry
            added.append((axis, entry.name))

    yield put
    for axis, name in added:
        del AXES[axis].registry.entries[name]


@pytest.mark.parametrize(
    ("axis", "entry", "plugin"), CASES, ids=[f"{a}:{e.name}{' (plugin)' if p else ''}" for a, e, p in CASES]
)
def test_every_entry_keeps_its_axis_contract(axis, entry, plugin, registered):
    AXES[axis].check(entry)  # what a plugin's entries must pass to load
    registered(axis, entry)
    verify(AXES[axis], entry)


def test_a_text_corpus_round_trips_a_users_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 200, encoding="utf-8")
    entry = AXES["data"].registry["text"]
    for tokenizer in ("char", "byte", "bpe"):
        params = {n: p.default for n, p in entry.params.items()}
        _verify_corpus(entry, {**params, "tokenizer": tokenizer}, str(path))


BROKEN = {
    "schedule": ("constant", lambda p, n: {0: 1.0, n: 0.5}, "factor 1.0 at t=100, promised 0.5"),
    "init": ("gpt2", lambda name, shape, p, n_layer: 0.05, "promised 0.05"),
    "clip": ("norm", lambda p: ("global_norm", 0.1), "global norm above 0.1"),
}


@pytest.mark.parametrize("axis", BROKEN)
def test_a_false_promise_fails_its_contract(axis):
    """The checks can fail: an entry that promises what it does not do is caught."""
    import dataclasses

    name, promise, text = BROKEN[axis]
    liar = dataclasses.replace(AXES[axis].registry[name], promise=promise)
    with pytest.raises(AssertionError, match=text.replace("(", r"\(")):
        verify(AXES[axis], liar)


def test_an_optimizer_that_does_not_learn_fails_its_contract(registered):
    import dataclasses

    import torch

    still = dataclasses.replace(
        AXES["optimizer"].registry["sgd"],
        name="still",
        build=lambda model, p, device: [torch.optim.SGD(model.parameters(), lr=0.0)],
    )
    registered("optimizer", still)
    with pytest.raises(AssertionError, match="validation loss"):
        verify(AXES["optimizer"], still)


def test_a_regularizer_whose_hook_changes_nothing_fails_its_contract():
    import dataclasses

    from bench.techniques.regularization import Regularizer

    class Idle(Regularizer):
        def after_backward(self, run):
            pass

    idle = dataclasses.replace(AXES["regularization"].registry["l2"], name="idle", build=lambda p: Idle())
    with pytest.raises(AssertionError, match="gradients unchanged"):
        verify(AXES["regularization"], idle)


def test_contracts_are_checked_at_one_thread_and_the_count_comes_back():
    """The tiny model's kernels are too small to share: SGD's check took 11.6 s at 2 threads, 0.8 s at 1."""
    import dataclasses

    import torch

    seen = []
    constant = AXES["schedule"].registry["constant"]
    watched = dataclasses.replace(constant, promise=lambda p, n: seen.append(torch.get_num_threads()) or {0: 1.0})
    before = torch.get_num_threads()
    verify(AXES["schedule"], watched)
    assert seen == [1] and torch.get_num_threads() == before
