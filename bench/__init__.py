"""optbench: benchmark the techniques used to train language models on one fixed small GPT."""

__version__ = "0.1.0"
