"""Corpora: each entry builds its own tokenized, split Corpus (bench.data) from its parameters.

A plugin corpus registers the same way: a builder `build(params) -> Corpus`, most simply
`text_corpus(name, text, tokenizer, vocab_size)` over whatever text it reads.
"""

from __future__ import annotations

import functools
from typing import Any

from bench.registry import Choice, ConfigError, Param, Registry

CORPORA = Registry("corpus", "the text the model learns")
TOKENIZER = Param(str, "char", "tokenizer", choices=("char", "byte", "bpe"))
BPE_VOCAB = Param(int, 512, "vocabulary size of the BPE tokenizer", low=64)


# MarkovSource solves for its stationary distribution with a dense (contexts x contexts) float64 matrix,
# contexts = alphabet**order: 4,096 contexts make 2**24 entries (128 MiB, and a copy), solved in seconds.
MAX_CONTEXTS = 2**12


def check_synthetic(p: dict[str, Any], key: str) -> None:
    contexts = p["alphabet"] ** p["order"]
    if contexts > MAX_CONTEXTS:
        raise ConfigError(
            f"{key}.order",
            f"alphabet**order must be at most {MAX_CONTEXTS:,} contexts (its transition matrix is contexts x "
            f"contexts), got {p['alphabet']}**{p['order']} = {contexts:,}; lower the order or the alphabet",
        )


@CORPORA.register(
    "synthetic",
    "a seeded Markov source whose entropy rate (the loss floor) is computed exactly",
    order=Param(int, 2, "Markov order (tokens of context)", low=1, high=4),
    alphabet=Param(int, 16, "distinct tokens", low=2, high=256),
    concentration=Param(
        float, 0.2, "Dirichlet concentration of each transition row (lower: more predictable)", positive=True
    ),
    length=Param(int, 1_000_000, "tokens generated", low=10_000),
    seed=Param(int, 1234, "seed of the source itself", low=0),  # numpy refuses negative seeds
    check=check_synthetic,
)
def build_synthetic(p: dict[str, Any]) -> Any:
    import torch

    from bench.data import Corpus, MarkovSource, split, synthetic_alphabet

    source = MarkovSource(p["order"], p["alphabet"], p["concentration"], p["seed"])
    tokens = torch.from_numpy(source.sample(p["length"], seed=p["seed"] + 1))
    letters = synthetic_alphabet(p["alphabet"])
    lookup = {c: i for i, c in enumerate(letters)}
    return Corpus(
        "synthetic",
        *split(tokens),
        vocab_size=p["alphabet"],
        decode=lambda ids: "".join(letters[i] for i in ids),
        encode=lambda text: [lookup[c] for c in text if c in lookup],
        entropy_rate=source.entropy_rate(),
    )


@CORPORA.register("tinyshakespeare", "the 1.1 MB nanoGPT / char-rnn corpus", tokenizer=TOKENIZER, vocab_size=BPE_VOCAB)
def build_tinyshakespeare(p: dict[str, Any]) -> Any:
    from bench.data import find_tinyshakespeare, read_text, text_corpus

    return text_corpus("tinyshakespeare", read_text(find_tinyshakespeare()), p["tokenizer"], p["vocab_size"])


@CORPORA.register(
    "text",
    "any local UTF-8 text file",
    path=Param(str, "", "the path of a UTF-8 text file", required=True),
    tokenizer=TOKENIZER,
    vocab_size=BPE_VOCAB,
)
def build_text(p: dict[str, Any]) -> Any:
    from pathlib import Path

    from bench.data import read_text, text_corpus

    return text_corpus("text", read_text(Path(p["path"]).expanduser()), p["tokenizer"], p["vocab_size"])


@functools.lru_cache(maxsize=8)
def load_corpus(choice: Choice) -> Any:
    """The corpus a config's `data` names, built by its entry. Cached per process."""
    return CORPORA[choice.name].build(choice.params)


def check_corpora(cfgs: Any, source: str | None) -> None:
    """Build every distinct corpus the configs use (cached: training reuses them) and check that each split
    holds more than one context, so that a missing, empty, non-UTF-8 or too short corpus is bad input
    naming `source` before a store is opened or anything printed, not once a worker starts."""
    from bench.data import check_context

    seen = set()
    for cfg in cfgs:
        key = (cfg.data, cfg.model["block_size"])
        if key in seen:
            continue
        seen.add(key)
        try:
            corpus = load_corpus(cfg.data)
            for name, tokens in (("training", corpus.train), ("validation", corpus.val)):
                check_context(tokens, cfg.model["block_size"], name)
        except ConfigError as e:
            raise e.with_source(source) from None
