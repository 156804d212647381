"""bench.machine: the calibration cache read back (kernel and split verdicts, per machine), and which
torch.optim classes have fused kernels here."""

import json

import pytest
import torch

from bench import kernels, machine


@pytest.fixture
def calibration(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    monkeypatch.setenv("OPTBENCH_CALIBRATION", str(path))
    return path


@pytest.mark.device
def test_fused_falls_back_where_torch_lacks_it(monkeypatch):
    from bench.techniques import optimizers

    class OldAdagrad(torch.optim.Adagrad):  # as an older torch: fused Adagrad refuses the device at its step
        def step(self, closure=None):
            if self.defaults.get("fused"):
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of cpu")
            return super().step(closure)

    machine.fused_available.cache_clear()
    monkeypatch.setattr(torch.optim, "Adagrad", OldAdagrad)
    try:
        assert not machine.fused_available("Adagrad", "cpu")
        assert optimizers.impl_kwargs("Adagrad", "auto", "cpu") == {"foreach": True}
        with pytest.raises(ValueError, match="fused"):
            optimizers.impl_kwargs("Adagrad", "fused", "cpu")
        assert "fused" not in kernels.optimizer_impls("adagrad", "cpu")
    finally:
        machine.fused_available.cache_clear()
    assert machine.fused_available("AdamW", "cpu") and not machine.fused_available("NAdam", "cpu")


def test_calibration_off_keeps_torchs_rule(tiny, monkeypatch):
    monkeypatch.setenv("OPTBENCH_CALIBRATION", "off")
    assert machine.cache_path() is None
    assert machine.impl_choice("AdamW", "auto", "cpu", 10, 1).value == "fused"
    assert machine.impl_choice("NAdam", "auto", "cpu", 10, 1).value == "foreach"
    assert machine.impl_choice("AdamW", "auto", "cuda", 10, 1).reason == "torch's default on this device"


def test_a_damaged_cache_is_ignored_and_rewritten_whole(calibration, tiny):
    calibration.write_text('{"half a file')
    assert machine.load() == {}
    machine.save("impl", "k", {"impl": "fused", "reason": "r"})
    assert json.loads(calibration.read_text()) == {
        machine.machine_key(): {"impl": {"k": {"impl": "fused", "reason": "r"}}}
    }


def test_verdicts_are_kept_per_machine_and_kind_and_read_back(calibration, tiny):
    calibration.write_text(json.dumps({"another machine": {"impl": {"k": {"impl": "forloop", "reason": "theirs"}}}}))
    cfg = tiny()
    machine.save("impl", machine.impl_key("AdamW", 1000, 2), {"impl": "foreach", "reason": "measured"})
    machine.save("split", machine.split_key(cfg, 4), {"split": [2, 2], "reason": "measured 2x2"})
    assert machine.impl_choice("AdamW", "auto", "cpu", 1000, 2) == machine.Choice("foreach", "measured")
    assert machine.impl_choice("AdamW", "auto", "cpu", 1000, 4).reason.endswith("no calibration for this machine "
                                                                                "and model")  # fmt: skip
    assert machine.impl_choice("AdamW", "forloop", "cpu", 1000, 2) == machine.Choice("forloop", "set in the config")
    assert machine.split_choice(cfg, 4) == machine.Choice((2, 2), "measured 2x2")
    assert machine.split_choice(cfg, 8) is None
    assert json.loads(calibration.read_text())["another machine"]["impl"]["k"]["reason"] == "theirs"  # kept
