import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import one_line_error, run_optbench

from bench import devices
from bench.config import RunConfig
from bench.registry import ConfigError


def test_defaults_are_nanogpt_cpu_recipe():
    cfg = RunConfig.build()
    assert cfg.model.name == "small" and cfg.model["n_layer"] == 4 and cfg.model["n_embd"] == 128
    assert cfg.optimizer.name == "adamw" and cfg.optimizer["betas"] == (0.9, 0.99)
    assert cfg.optimizer["weight_decay"] == 0.1
    assert cfg.schedule.name == "warmup_cosine" and cfg.schedule["warmup"] == 100
    assert cfg.clip.name == "norm" and cfg.clip["max_norm"] == 1.0
    assert cfg.regularization == ()


def test_same_name_updates_other_name_starts_from_defaults():
    cfg = RunConfig.build({"optimizer": {"name": "adamw", "lr": 3e-3}})
    assert cfg.optimizer["lr"] == 3e-3 and cfg.optimizer["weight_decay"] == 0.1  # kept from the default adamw
    lion = cfg.override({"optimizer": {"name": "lion"}})
    assert lion.optimizer["lr"] == 1e-4 and lion.optimizer["weight_decay"] == 0.0  # lion's own defaults
    renamed = cfg.override({"optimizer.name": "sgd", "optimizer.lr": 0.3})
    assert renamed.optimizer.name == "sgd" and renamed.optimizer["lr"] == 0.3


def test_dotted_and_nested_forms_agree():
    a = RunConfig.build({"model.n_layer": 3, "model": "tiny"})
    b = RunConfig.build({"model": {"name": "tiny", "n_layer": 3}})
    assert a.model["n_layer"] == 2  # applied in order: the preset change came last and reset n_layer
    assert b.model["n_layer"] == 3
    c = RunConfig.build({"model": "tiny", "model.n_layer": 3})
    assert c == b and c.hash == b.hash


def test_hash_depends_on_content_not_threads():
    a = RunConfig.build({"seed": 1})
    assert a.hash == RunConfig.build({"seed": 1, "threads": 2}).hash
    assert a.hash != RunConfig.build({"seed": 2}).hash
    assert a.hash != a.override({"optimizer.lr": 2e-3}).hash
    assert a == RunConfig.from_dict(a.to_dict())


def test_regularization_forms():
    cfg = RunConfig.build({"regularization": ["ema", "dropout"]})
    assert [r.name for r in cfg.regularization] == ["dropout", "ema"]
    assert cfg.enabled("regularization", "dropout")["p"] == 0.1
    cfg = cfg.override({"regularization.dropout.p": 0.2, "regularization.ema": False})
    assert cfg.enabled("regularization", "dropout")["p"] == 0.2 and cfg.enabled("regularization", "ema") is None
    assert RunConfig.build({"regularization": "none"}).regularization == ()


def test_tokens_budget_sets_steps():
    cfg = RunConfig.build(
        {"model": "tiny", "batch_size": 8, "grad_accum": 2, "tokens": 8 * 2 * 64 * 10, "schedule": "constant"}
    )
    assert cfg.tokens_per_step == 1024 and cfg.total_steps == 10


def test_flat_has_dotted_columns():
    flat = RunConfig.build().flat()
    assert flat["optimizer.name"] == "adamw" and flat["optimizer.betas"] == "[0.9, 0.99]"
    assert flat["model.n_layer"] == 4 and "regularization" not in flat


BAD = [
    ({"optimizer": "adamww"}, "optimizer.name", "did you mean 'adamw'"),
    ({"optimizer.lr": -1e-3}, "optimizer.lr", "must be > 0"),
    ({"optimizer.lr": "fast"}, "optimizer.lr", "must be a number"),
    ({"optimizer.momentum": 0.9}, "optimizer.momentum", "unknown parameter 'momentum' for 'adamw'"),
    ({"optimizer.betas": [0.9]}, "optimizer.betas", "a list of 2 numbers"),
    ({"schedule": "cosin"}, "schedule.name", "did you mean 'cosine'"),
    ({"schedule.warmup": 5000}, "schedule.warmup", "shorter than the run"),
    ({"init": "xavier"}, "init.name", "unknown init 'xavier'"),
    ({"clip": {"name": "norm", "max_norm": 0}}, "clip.max_norm", "must be > 0"),
    ({"regularization.dropout.p": 1.5}, "regularization.dropout.p", "<= 0.9"),
    ({"regularization": ["mixup"]}, "regularization.mixup", "unknown regularizer"),
    ({"steps": 0}, "steps", ">= 1"),
    ({"steps": 10.5}, "steps", "must be an integer"),
    ({"batch_size": True}, "batch_size", "must be an integer"),
    ({"model.n_head": 3}, "model.n_head", "must divide n_embd"),
    ({"model": "huge"}, "model.name", "unknown model 'huge'"),
    ({"data": "text"}, "data.path", "is required: the path"),
    ({"lr": 1e-3}, "lr", "unknown key"),
    ({"device": "tpu"}, "device", "cpu, cuda"),
    ({"autocast": "fp8"}, "autocast", "unknown value 'fp8'"),
    # found by a fuzzer: each passed validation, then crashed the run
    ({"seed": 2**63}, "seed", "<= 9223372036854775807"),
    ({"data_seed": 2**64}, "data_seed", "<= 9223372036854775807"),
    ({"data": {"name": "synthetic", "seed": -1}}, "data.seed", ">= 0"),
    ({"data": {"name": "synthetic", "alphabet": 256, "order": 2}}, "data.order", "at most 4,096 contexts"),
    ({"data": {"name": "synthetic", "alphabet": 16, "order": 4}}, "data.order", "at most 4,096 contexts"),
    ({"optimizer.lr": 10**400}, "optimizer.lr", "finite number"),
    ({"optimizer": {"name": "nesterov", "momentum": 0.0}}, "optimizer.momentum", "> 0"),
    ({"schedule": {"name": "onecycle", "pct_start": 0.0}}, "schedule.pct_start", "> 0"),
]


@pytest.mark.parametrize(("values", "key", "text"), BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_bad_values_name_the_key(values, key, text):
    with pytest.raises(ConfigError) as info:
        RunConfig.build(values, "run.toml")
    assert info.value.key == key
    assert text in info.value.message
    assert info.value.format().startswith("run.toml: key ")


@pytest.mark.parametrize(
    ("values", "suggestion"),
    [
        ({"optimizer": "RMSProp"}, "rmsprop"),
        ({"optimizer": "AdamW"}, "adamw"),
        ({"init": "he_normal"}, "kaiming_normal"),
        ({"init": "glorot_uniform"}, "xavier_uniform"),
        ({"optimizer": {"name": "adamw", "learning_rate": 1e-3}}, "lr"),
        ({"Batch-Size": 8}, "batch_size"),
    ],
)
def test_did_you_mean_knows_case_and_synonyms(values, suggestion):
    with pytest.raises(ConfigError) as e:
        RunConfig.build(values)
    assert f"did you mean '{suggestion}'" in e.value.message


def test_an_empty_key_is_named_in_the_message():
    # before: "unknown key; allowed: ..." (ConfigError shows no empty key)
    with pytest.raises(ConfigError) as e:
        RunConfig.build({"": 1}, "run.toml")
    assert e.value.format().startswith("run.toml: unknown key ''; allowed: model, ")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(2, 256))
def test_a_synthetic_source_is_refused_where_its_transition_matrix_is_too_large(order, alphabet):
    from bench.techniques.corpora import MAX_CONTEXTS

    values = {"data": {"name": "synthetic", "order": order, "alphabet": alphabet}}
    if alphabet**order <= MAX_CONTEXTS:
        assert RunConfig.build(values).data["order"] == order
    else:
        with pytest.raises(ConfigError) as e:
            RunConfig.build(values)
        assert e.value.key == "data.order" and f"{alphabet}**{order}" in e.value.message


@pytest.mark.device
@pytest.mark.parametrize(("gpus", "expected"), [(0, "cpu"), (1, "cuda"), (4, "cuda")])
def test_auto_is_resolved_before_the_config_is_hashed(monkeypatch, gpus, expected):
    monkeypatch.setattr(devices, "cuda_count", lambda: gpus)  # only device counting: nothing runs on them
    cfg = RunConfig.build({"device": "auto"})
    assert cfg.device == expected
    assert cfg.hash == RunConfig.build({"device": expected}).hash


@pytest.mark.device
def test_cpu_and_gpu_executions_of_one_config_have_different_hashes(monkeypatch):
    on_cpu = RunConfig.build({"device": "auto"})
    monkeypatch.setattr(devices, "cuda_count", lambda: 1)
    on_gpu = RunConfig.build({"device": "auto"})
    assert on_cpu.hash != on_gpu.hash


def test_a_token_budget_under_one_step_is_named_as_tokens_not_as_warmup():
    line = one_line_error(run_optbench("train", "--set", "model=tiny", "--set", "tokens=1"))
    assert "'tokens'" in line and "warmup" not in line
