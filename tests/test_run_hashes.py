"""The run hashes of canonical built-in configs are pinned: a run's hash is its key in every store, so a
change that alters one orphans the runs users have already trained. Such a change must be deliberate: update
tests/golden/run_hashes.json and say so in docs/plugins.md ("Run identity")."""

import json
from pathlib import Path

import pytest

from bench.config import RunConfig
from bench.runfile import load_run_config

ROOT = Path(__file__).parent.parent
PINNED = json.loads((ROOT / "tests" / "golden" / "run_hashes.json").read_text())
CANONICAL = {
    "defaults": {},
    "tiny_every_regularizer": {
        "model": "tiny",
        "regularization": {
            "dropout": {},
            "ema": {"decay": 0.999},
            "l2": {},
            "label_smoothing": {},
            "z_loss": {},
            "early_stopping": {"patience": 2},
        },
    },  # fmt: skip
    "lion_wsd_orthogonal_adaptive": {
        "optimizer": {"name": "lion", "lr": 3e-4},
        "schedule": "wsd",
        "init": "orthogonal",
        "clip": "adaptive",
        "steps": 500,
    },  # fmt: skip
    "muon_tokens": {"optimizer": "muon", "tokens": 1_000_000, "batch_size": 16, "grad_accum": 2},
    "tinyshakespeare_bpe": {"data": {"name": "tinyshakespeare", "tokenizer": "bpe", "vocab_size": 256}, "seed": 3},
}
SUITES = ("quick", "nanogpt_cpu", "factorial")


def test_every_pinned_config_is_checked():
    assert set(PINNED) == set(CANONICAL) | {f"suites/{s}.toml [base]" for s in SUITES}


@pytest.mark.parametrize("name", CANONICAL)
def test_a_canonical_configs_hash_is_unchanged(name):
    assert RunConfig.build(CANONICAL[name]).hash == PINNED[name]


@pytest.mark.parametrize("suite", SUITES)
def test_a_shipped_suites_base_hash_is_unchanged(suite, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert load_run_config(f"suites/{suite}.toml", None).hash == PINNED[f"suites/{suite}.toml [base]"]


def test_threads_and_deterministic_kernels_leave_the_hash_alone():
    base = RunConfig.build({})
    assert base.override({"threads": 1, "deterministic": True}).hash == PINNED["defaults"]
