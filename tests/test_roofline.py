"""The roofline: a training step's FLOPs, the matmuls it runs, and its achieved rate against theirs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import flops, roofline


def test_matmul_rate_times_every_shape(tiny):
    shapes = flops.matmul_shapes(tiny(), 8)
    seconds, rate = roofline.matmul_rate(shapes, repeats=2)
    assert seconds > 0 and rate == pytest.approx(sum(mm.flops for mm in shapes) / seconds)
    assert roofline.matmul_rate(shapes[:1], torch.bfloat16, repeats=2)[1] > 0


@settings(max_examples=50)
@given(st.floats(1e-3, 1.0), st.floats(1e8, 1e10), st.floats(1e-3, 1.0), st.floats(1e9, 1e12))
def test_roofline_fraction_and_floor(step, flops, mm_seconds, rate):
    r = roofline.Roofline(step, flops, mm_seconds, rate)
    assert r.achieved == pytest.approx(flops / step)
    assert r.fraction == pytest.approx(r.achieved / rate)
    assert r.floor_seconds == pytest.approx(step * r.fraction)


def test_kernel_roofline_pairs_the_training_step_with_its_linear():
    def bench(group, name, gflops, dtype="float32"):
        return {"group": group, "name": f"test[{name}-{dtype}]", "extra_info": {"gflops_per_s": gflops,
                "dtype": dtype, "device": "cpu"}}  # fmt: skip

    benchmarks = [bench("linear", "cpu-small", 200.0), bench("train_step", "cpu-small", 100.0),
                  bench("train_step", "cpu-tiny", 50.0), bench("linear", "cpu-small", 400.0, "bfloat16"),
                  bench("layer_norm", "cpu-small", 9.0)]  # fmt: skip
    assert roofline.kernel_roofline(benchmarks) == [
        "roofline small float32 cpu: training step 100 GFLOP/s = 50% of the linear kernel's 200 GFLOP/s"
    ]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    flops=st.floats(1e6, 1e11),
    steps=st.integers(1, 5000),
    per_step=st.integers(1, 4096),
    speed=st.floats(1.0, 1e7),
    linear=st.floats(1.0, 1000.0),
)
def test_a_reports_roofline_is_step_flops_times_steps_per_second(flops, steps, per_step, speed, linear):
    import pandas as pd

    frame = pd.DataFrame([{"env": {"step_flops": flops}, "steps": steps, "tokens": steps * per_step,
                           "tokens_per_second": speed, "config.model.name": "small"}])  # fmt: skip
    achieved = flops * speed / per_step / 1e9
    bench = [{"group": "linear", "name": "test_linear[small-float32-cpu]",
              "extra_info": {"dtype": "float32", "gflops_per_s": linear}}]  # fmt: skip
    text = roofline.runs_roofline(frame, bench)
    assert f"median of {achieved:.1f} GFLOP/s" in text
    assert f"{achieved / linear:.0%} of the float32 linear kernel's {linear:.0f} GFLOP/s for the small preset" in text
    assert "linear kernel" not in roofline.runs_roofline(frame, None)
    assert roofline.runs_roofline(frame.assign(env=[{}]), bench) == ""


def test_a_run_records_its_step_flops(tiny):
    from bench.train import train

    cfg = tiny(steps=4, eval_interval=2)
    record = train(cfg)
    from bench.techniques.corpora import load_corpus

    assert record.env["step_flops"] == pytest.approx(flops.step_flops(cfg, load_corpus(cfg.data).vocab_size))
