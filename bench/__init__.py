"""optbench: benchmark the techniques used to train language models on one fixed small GPT."""

from bench.version import __version__

__all__ = ["__version__", "load_results"]


def __getattr__(name: str):  # `from bench import load_results` without importing optuna at `import bench`
    if name == "load_results":
        from bench.store import load_results

        return load_results
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
