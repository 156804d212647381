"""Model presets: the fixed GPT's sizes. Entries carry parameters only; bench.model builds the network."""

from __future__ import annotations

from bench.registry import Param, Registry

MODELS = Registry("model", "the fixed GPT's size")

# Every preset takes exactly these parameters (a plugin preset too: bench.axes checks it).
MODEL_PARAMS = ("n_layer", "n_head", "n_embd", "block_size", "positions", "bias")


def model_params(n_layer: int, n_head: int, n_embd: int, block_size: int) -> dict[str, Param]:
    return {
        "n_layer": Param(int, n_layer, "transformer blocks", low=1),
        "n_head": Param(int, n_head, "attention heads", low=1),
        "n_embd": Param(int, n_embd, "width", low=1),
        "block_size": Param(int, block_size, "context length", low=1),
        "positions": Param(str, "learned", "position encoding", choices=("learned", "sinusoidal", "rotary")),
        "bias": Param(bool, False, "biases in linear layers and LayerNorms"),
    }


MODELS.add("tiny", "2 layers, 2 heads, width 64, context 64 (tests, quick suites)", **model_params(2, 2, 64, 64))
MODELS.add("small", "nanoGPT's CPU model: 4 layers, 4 heads, width 128, context 64", **model_params(4, 4, 128, 64))
MODELS.add(
    "base",
    "nanoGPT's shakespeare_char GPU model: 6 layers, 6 heads, width 384, context 256",
    **model_params(6, 6, 384, 256),
)
