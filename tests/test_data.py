import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from processes import one_line_error, run_optbench

from bench.data import BatchStream, BPETokenizer, CharTokenizer, MarkovSource, fixed_batches
from bench.registry import Choice, ConfigError
from bench.techniques.corpora import load_corpus


def test_entropy_rate_matches_empirical_cross_entropy_of_long_sample():
    source = MarkovSource(order=2, alphabet=16, concentration=0.3, seed=7)
    tokens = source.sample(400_000, seed=8, chains=64)
    assert abs(source.cross_entropy(tokens) - source.entropy_rate()) < 0.01
    assert 0 < source.entropy_rate() < math.log(16)


def test_stationary_distribution_is_stationary():
    source = MarkovSource(order=1, alphabet=5, concentration=1.0, seed=0)
    pi = source.stationary()
    assert np.allclose(pi @ source.probs, pi) and np.isclose(pi.sum(), 1.0)


def test_synthetic_corpus_is_deterministic_and_split_90_10():
    choice = Choice.of("synthetic", {"order": 1, "alphabet": 8, "concentration": 0.2, "length": 20_000, "seed": 3})
    a = load_corpus(choice)
    load_corpus.cache_clear()
    b = load_corpus(choice)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert len(a.train) == 18_000 and len(a.val) == 2_000
    assert a.vocab_size == 8 and a.entropy_rate is not None
    assert a.decode(a.encode("abc")) == "abc"


@pytest.mark.skipif(
    not (Path(os.environ.get("OPTBENCH_DATA_DIR", "/nonexistent")) / "tinyshakespeare.txt").is_file(),
    reason="tinyshakespeare not in $OPTBENCH_DATA_DIR",
)
def test_tinyshakespeare_matches_nanogpt_shakespeare_char():
    corpus = load_corpus(Choice.of("tinyshakespeare", {"tokenizer": "char", "vocab_size": 512}))
    assert corpus.vocab_size == 65
    assert len(corpus.train) == 1_003_854 and len(corpus.val) == 111_540
    assert corpus.decode(corpus.train[:5].tolist()) == "First"


def test_missing_text_file_is_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_corpus(Choice.of("text", {"path": str(tmp_path / "nope.txt"), "tokenizer": "char", "vocab_size": 512}))


def test_tokenizers_round_trip(tmp_path):
    text = "hello world, hello optbench. " * 50
    char = CharTokenizer(text)
    assert char.decode(char.encode(text)) == text
    assert char.encode_array(text).tolist() == char.encode(text)
    bpe = BPETokenizer(text, 300)
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text and len(ids) < len(text)
    assert list((tmp_path / "cache" / "tokenizers").glob("bpe-*-300.json"))  # cached for the next run
    assert BPETokenizer(text, 300).encode(text) == ids


def test_batch_stream_same_seed_same_batches_other_seed_differs():
    tokens = torch.arange(1000)
    a, b, c = (BatchStream(tokens, 4, 8, seed=s) for s in (1, 1, 2))
    for _ in range(3):
        xa, ya = a.next()
        xb, _ = b.next()
        xc, _ = c.next()
        assert torch.equal(xa, xb) and not torch.equal(xa, xc)
        assert torch.equal(ya, xa + 1)  # targets are the inputs shifted by one


def test_validation_batches_are_fixed():
    tokens = torch.arange(500)
    first = fixed_batches(tokens, 3, 2, 8)
    again = fixed_batches(tokens, 3, 2, 8)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first, again, strict=True))


def test_a_text_corpus_that_is_not_utf8_exits_2_in_one_line_naming_data_path(tmp_path):
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 50)
    text_data = f'data={{name="text", path="{blob}"}}'
    args = ("train", "--set", "model=tiny", "--set", text_data, "--set", "schedule=constant")
    line = one_line_error(run_optbench(*args))
    assert "not UTF-8 text" in line and "data.path" in line
