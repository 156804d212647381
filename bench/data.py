"""Corpora, tokenizers and deterministic batch streams.

- `synthetic`: an order-k Markov source over a small alphabet with Dirichlet-drawn transitions. Its
  entropy rate H = sum_c pi(c) H(P(.|c)) (pi the stationary distribution of contexts) is the lowest
  loss any model can reach, and every run on it records that floor.
- `tinyshakespeare`: looked up in $OPTBENCH_DATA_DIR, then the user cache; downloaded and checked
  against its sha256 when missing.
- `text`: any local UTF-8 file.

The first 90% of the tokens train, the last 10% validate (nanoGPT's split). Training batches come
from a generator seeded by the run's data seed alone, so configs that share it see the same batches
in the same order; validation batches are fixed per corpus and batch shape.
"""

from __future__ import annotations

import functools
import hashlib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench import settings
from bench.files import atomic_path
from bench.machine import cache_dir
from bench.registry import ConfigError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_FILE = "tinyshakespeare.txt"
TRAIN_FRACTION = 0.9
# Offsets the validation batches' seed from every data seed a run may use.
VAL_SEED = 1_000_003


@dataclass
class Corpus:
    name: str
    train: torch.Tensor  # (N_train,) int64 token ids
    val: torch.Tensor  # (N_val,) int64
    vocab_size: int
    decode: Callable[[list[int]], str]
    encode: Callable[[str], list[int]]
    entropy_rate: float | None = None  # nats per token, where known exactly


# -------------------------------------------------------------------------------------------------
# The synthetic Markov source


class MarkovSource:
    """An order-`order` Markov chain over `alphabet` tokens; transition rows ~ Dirichlet(concentration)."""

    def __init__(self, order: int, alphabet: int, concentration: float, seed: int):
        self.order, self.alphabet = order, alphabet
        rng = np.random.default_rng(seed)
        self.n_contexts = alphabet**order
        self.probs = rng.dirichlet(np.full(alphabet, concentration), size=self.n_contexts)  # (contexts, V)
        self.probs = np.maximum(self.probs, 1e-12)
        self.probs /= self.probs.sum(axis=1, keepdims=True)

    def next_context(self, context: np.ndarray, token: np.ndarray) -> np.ndarray:
        # a context is the last `order` tokens read as a base-V number, oldest first
        return (context * self.alphabet + token) % self.n_contexts

    def stationary(self) -> np.ndarray:
        """pi with pi T = pi over contexts; solved once per source (sampling and the entropy rate use it)."""
        return self._stationary

    @functools.cached_property
    def _stationary(self) -> np.ndarray:
        """Solved exactly: T the context-to-context transition matrix."""
        n, V = self.n_contexts, self.alphabet
        T = np.zeros((n, n))
        ctx = np.repeat(np.arange(n), V)
        tok = np.tile(np.arange(V), n)
        np.add.at(T, (ctx, self.next_context(ctx, tok)), self.probs.reshape(-1))
        # (T^t - I) pi = 0 with one equation replaced by sum(pi) = 1
        A = T.T - np.eye(n)
        A[-1, :] = 1.0
        b = np.zeros(n)
        b[-1] = 1.0
        pi = np.linalg.solve(A, b)
        return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()

    def entropy_rate(self) -> float:
        """Nats per token: sum over contexts of pi(c) times the entropy of P(. | c)."""
        row_entropy = -(self.probs * np.log(self.probs)).sum(axis=1)
        return float(self.stationary() @ row_entropy)

    def sample(self, length: int, seed: int, chains: int = 256) -> np.ndarray:
        """`length` tokens: `chains` independent stationary chains generated side by side, concatenated."""
        rng = np.random.default_rng(seed)
        per_chain = -(-length // chains)
        context = rng.choice(self.n_contexts, size=chains, p=self.stationary())
        cumulative = np.cumsum(self.probs, axis=1)
        cumulative[:, -1] = 1.0
        out = np.empty((chains, per_chain), dtype=np.int64)
        uniforms = rng.random((per_chain, chains))
        for t in range(per_chain):
            token = (uniforms[t][:, None] > cumulative[context]).sum(axis=1)
            out[:, t] = token
            context = self.next_context(context, token)
        return out.reshape(-1)[:length]

    def cross_entropy(self, tokens: np.ndarray) -> float:
        """Mean -log P(token | previous `order` tokens) under the source itself."""
        k, V = self.order, self.alphabet
        context = np.zeros(len(tokens) - k, dtype=np.int64)
        for j in range(k):
            context = context * V + tokens[j : len(tokens) - k + j]
        return float(-np.log(self.probs[context, tokens[k:]]).mean())


def synthetic_alphabet(n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return letters[:n] if n <= len(letters) else "".join(chr(0x100 + i) for i in range(n))


# -------------------------------------------------------------------------------------------------
# Text corpora and tokenizers


def find_tinyshakespeare() -> Path:
    """$OPTBENCH_DATA_DIR, then the user cache, then a checked download into the cache."""
    candidates = []
    if data_dir := settings.get("OPTBENCH_DATA_DIR"):
        candidates.append(data_dir / TINYSHAKESPEARE_FILE)
    cached = cache_dir() / TINYSHAKESPEARE_FILE
    candidates.append(cached)
    for path in candidates:
        if path.is_file():
            return path
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=30) as response:
            data = response.read()
    except OSError as e:
        raise ConfigError(
            "data",
            f"tinyshakespeare is not on this machine and could not be downloaded ({e}); "
            f"place {TINYSHAKESPEARE_FILE} (sha256 {TINYSHAKESPEARE_SHA256[:12]}...) in $OPTBENCH_DATA_DIR "
            f"or {cached.parent}",
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != TINYSHAKESPEARE_SHA256:
        raise ConfigError("data", f"downloaded tinyshakespeare has sha256 {digest}, expected {TINYSHAKESPEARE_SHA256}")
    with atomic_path(cached) as tmp:
        tmp.write_bytes(data)
    return cached


class CharTokenizer:
    """One token per distinct character of the corpus, sorted (nanoGPT's shakespeare_char)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text if c in self.stoi]

    def encode_array(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
        for c, i in self.stoi.items():
            table[ord(c)] = i
        return table[codes]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


class ByteTokenizer:
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class BPETokenizer:
    """Byte-level BPE trained with Hugging Face `tokenizers`, cached by corpus hash and vocabulary size."""

    def __init__(self, text: str, vocab_size: int):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = cache_dir() / "tokenizers" / f"bpe-{digest}-{vocab_size}.json"
        if path.is_file():
            self.tok = Tokenizer.from_file(str(path))
        else:
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            tok.train_from_iterator([text], trainer=trainer)
            with atomic_path(path, library=True) as tmp:  # tokenizers raises a plain Exception on a full disk
                tok.save(str(tmp))
            self.tok = tok
        self.vocab_size = self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


def make_tokenizer(name: str, text: str, vocab_size: int):
    if name == "char":
        return CharTokenizer(text)
    if name == "byte":
        return ByteTokenizer()
    return BPETokenizer(text, vocab_size)


# -------------------------------------------------------------------------------------------------


def check_context(tokens: torch.Tensor, block_size: int, split_name: str = "") -> None:
    if len(tokens) <= block_size + 1:  # a window is block_size + 1 tokens (inputs and their targets)
        raise ConfigError(
            "model.block_size",
            f"the data corpus's {split_name + ' ' if split_name else ''}split has {len(tokens)} tokens, fewer than "
            f"a context of {block_size + 1}: a longer corpus or a smaller block_size",
        )


def read_text(path: Path, key: str = "data.path") -> str:
    """A corpus file's text; a missing, non-UTF-8 or empty file is bad input naming `key`."""
    if not path.is_file():
        resolved = "" if path.is_absolute() else f" ({path.absolute()}: relative to the working folder)"
        raise ConfigError(key, f"no such file: {path}{resolved}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(key, f"{path} is not UTF-8 text (byte {e.start})") from None
    if not text:
        raise ConfigError(key, f"{path} is empty")
    return text


def text_corpus(name: str, text: str, tokenizer_name: str, vocab_size: int) -> Corpus:
    """Any text, tokenized (char, byte or BPE) and split 90/10."""
    tokenizer = make_tokenizer(tokenizer_name, text, vocab_size)
    tokens = torch.from_numpy(tokenizer.encode_array(text))
    return Corpus(name, *split(tokens), vocab_size=tokenizer.vocab_size, decode=tokenizer.decode,
                  encode=tokenizer.encode)  # fmt: skip


def split(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(len(tokens) * TRAIN_FRACTION)
    return tokens[:n], tokens[n:]


class BatchStream:
    """Random windows of a token array, as nanoGPT's get_batch, from a generator of their own."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int, device: str = "cpu"):
        check_context(tokens, block_size)
        self.tokens, self.batch_size, self.block_size, self.device = tokens, batch_size, block_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(block_size + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(self.tokens) - self.block_size, (self.batch_size,), generator=self.generator)
        window = self.tokens[ix[:, None] + self.offsets]  # (B, T+1)
        if self.device != "cpu":
            window = window.pin_memory().to(self.device, non_blocking=True)
        return window[:, :-1], window[:, 1:]


def fixed_batches(
    tokens: torch.Tensor, count: int, batch_size: int, block_size: int, device: str = "cpu"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same validation batches for every run on this corpus and batch shape."""
    stream = BatchStream(tokens, batch_size, block_size, seed=VAL_SEED, device=device)
    return [stream.next() for _ in range(count)]
