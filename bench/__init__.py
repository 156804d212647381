"""optbench: benchmark the techniques used to train language models on one fixed small GPT."""

__version__ = "0.1.0"

__all__ = ["load_results"]


def __getattr__(name: str):  # `from bench import load_results` without importing optuna at `import bench`
    if name == "load_results":
        from bench.store import load_results

        return load_results
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
