"""Trained weights kept beside the results: `results/checkpoints/<run hash>.pt`.

A checkpoint holds the model's GPTConfig with its state dict, so a reader (the report's text sample,
`optbench sample`) rebuilds the model without the training loop. The runner writes one when a run
finishes as the best of its suite so far.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import faults, settings
from bench.files import atomic_path


def results_dir() -> Path:
    return settings.get("OPTBENCH_RESULTS_DIR")


def kernels_storage() -> Path:
    """pytest-benchmark's storage of kernel timings (its own autosaved files only, for `pytest-benchmark compare`)."""
    return results_dir() / "kernels"


def latest_kernels_path() -> Path:
    """optbench's copy of the latest kernel timings, kept outside pytest-benchmark's storage: inside it, its
    `list` showed the file as a run and a globbed `compare` counted that run twice."""
    return results_dir() / "kernels-latest.json"


def legacy_kernels_path() -> Path:
    """Where optbench versions before this layout wrote the latest timings, inside pytest-benchmark's storage."""
    return kernels_storage() / "latest.json"


def kernels_to_read() -> Path:
    """The latest kernel timings a reader takes: the current file, else one a former version left."""
    path = latest_kernels_path()
    return legacy_kernels_path() if not path.is_file() and legacy_kernels_path().is_file() else path


def checkpoint_path(run_hash: str) -> Path:
    return results_dir() / "checkpoints" / f"{run_hash}.pt"


def save_checkpoint(run_hash: str, model: Any) -> Path:
    import torch

    path = checkpoint_path(run_hash)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # any error of torch.save is the write's: on a full disk it raises RuntimeError, not OSError
    with atomic_path(path, library=True) as tmp, open(tmp, "wb") as f:
        torch.save({"gpt_config": asdict(model.config), "state_dict": state}, faults.stream(f, "checkpoint"))
    return path


class CheckpointError(Exception):
    """A checkpoint that is missing or cannot be read; the message is one line."""


def load_checkpoint(run_hash: str, device: str = "cpu") -> Any:
    """The GPT saved for a run, in eval mode. CheckpointError when it is missing or unreadable."""
    import torch

    from bench.model import GPT, GPTConfig

    path = checkpoint_path(run_hash)
    if not path.is_file():
        raise CheckpointError(f"no weights were saved for run {run_hash} ({path} is missing)")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        model = GPT(GPTConfig(**saved["gpt_config"]))
        model.load_state_dict(saved["state_dict"])
    except Exception as e:  # noqa: BLE001 -- any unreadable file is reported as such, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"the weights in {path} cannot be read ({type(e).__name__}: {first[:120]})") from None
    return model.to(device).eval()
