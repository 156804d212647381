"""The fixed GPT: a decoder-only transformer after nanoGPT's model.py, read top to bottom.

Token embedding + positions (learned, sinusoidal or rotary) -> n_layer pre-LayerNorm blocks of causal
self-attention (torch's scaled_dot_product_attention) and a GELU MLP -> LayerNorm -> head tied to the
token embedding. Weights keep torch's default initialization here; bench.techniques.init sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    positions: str = "learned"  # learned | sinusoidal | rotary
    bias: bool = False
    dropout: float = 0.0


def rotary_tables(block_size: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (T, head_dim/2) for RoPE (Su et al. 2021)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, nh, T, hs); rotate each (first half, second half) pair by its position's angle
    T = x.size(-2)
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[:T].to(x.dtype), sin[:T].to(x.dtype)
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)


def sinusoidal_table(block_size: int, n_embd: int) -> torch.Tensor:
    """Vaswani et al.'s fixed encoding, (T, C)."""
    position = torch.arange(block_size, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    table = torch.zeros(block_size, n_embd)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : n_embd // 2]
    return table


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        p = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # bf16 autocast on the CPU: attention stays float32, whose flash-attention backward took a fifth
            # of bfloat16's time on an AVX-512 CPU without AMX (torch 2.13; docs/performance.md)
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rotary)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.positions == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        elif config.positions == "sinusoidal":
            self.register_buffer("pe", sinusoidal_table(config.block_size, config.n_embd), persistent=False)
        elif config.positions == "rotary":
            cos, sin = rotary_tables(config.block_size, config.n_embd // config.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            raise ValueError(f"unknown positions {config.positions!r}")
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied (Press & Wolf 2017), as nanoGPT

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab)."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the context of {self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rotary = None
        if self.config.positions == "learned":
            x = x + self.wpe(torch.arange(T, device=idx.device))
        elif self.config.positions == "sinusoidal":
            x = x + self.pe[:T]
        else:
            rotary = (self.rope_cos, self.rope_sin)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rotary)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The 2-D weights inside the blocks (Muon's share); embeddings and head are left out."""
        return [p for p in self.blocks.parameters() if p.dim() == 2]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- decoding ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        method: str = "greedy",
        temperature: float = 1.0,
        top_k: int | None = None,
        beams: int = 4,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue idx (B, T): greedy, temperature + top-k sampling, or beam search (B = 1)."""
        if method == "beam":
            return self._beam_search(idx, max_new_tokens, beams)
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.config.block_size :])[:, -1, :]  # (B, vocab)
            if method == "greedy":
                nxt = logits.argmax(dim=-1, keepdim=True)
            elif method == "sample":
                logits = logits / max(temperature, 1e-6)
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, -float("inf"))
                nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            else:
                raise ValueError(f"unknown decoding method {method!r}; allowed: greedy, sample, beam")
            idx = torch.cat((idx, nxt), dim=1)
        return idx

    def _beam_search(self, idx: torch.Tensor, max_new_tokens: int, beams: int) -> torch.Tensor:
        """Keeps the `beams` most likely continuations by summed log-probability; returns the best."""
        if idx.size(0) != 1:
            raise ValueError("beam search decodes one prompt at a time")
        seqs, scores = idx, torch.zeros(1, device=idx.device)  # (k, T), (k,)
        for _ in range(max_new_tokens):
            logp = F.log_softmax(self(seqs[:, -self.config.block_size :])[:, -1, :].float(), dim=-1)  # (k, V)
            total = (scores[:, None] + logp).flatten()
            scores, flat = total.topk(min(beams, total.numel()))
            parent, token = flat // logp.size(-1), flat % logp.size(-1)
            seqs = torch.cat((seqs[parent], token[:, None]), dim=1)
        return seqs[:1]
