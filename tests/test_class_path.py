"""Any torch optimizer by import path: optimizer = { class_path = "package.module.Class", ... }."""

import json
from importlib import metadata

import optuna
import pytest
from suite_files import write_suite

from bench.cli import main
from bench.config import RunConfig
from bench.model import GPT, GPTConfig
from bench.registry import ConfigError
from bench.runner import Plan, run_suite
from bench.space import parse_space
from bench.store import load_results
from bench.suite import Suite
from bench.techniques.class_path import optimizer_entry
from bench.train import train

TINY = {"model": "tiny", "data": {"name": "synthetic", "alphabet": 8, "order": 1, "length": 20000},
        "steps": 12, "batch_size": 4, "eval_interval": 6, "eval_batches": 2, "eval_batch_size": 4,
        "schedule": "constant"}  # fmt: skip


@pytest.mark.parametrize("decay_all", [False, True])
def test_torch_adamw_by_class_path_trains_exactly_as_the_builtin_adamw(decay_all):
    # the same class on the same parameter groups: equal losses, bit for bit (the for-loop kernels on both)
    common = {"lr": 3e-3, "weight_decay": 0.1, "decay_all": decay_all, "betas": [0.9, 0.95]}
    builtin = train(RunConfig.build({**TINY, "optimizer": {"name": "adamw", "impl": "forloop", **common}}))
    by_path = RunConfig.build({**TINY, "optimizer": {"class_path": "torch.optim.AdamW", "foreach": False, **common}})
    record = train(by_path)
    assert record.status == "complete" and record.curves["train_loss"] == builtin.curves["train_loss"]
    assert record.final_val_loss == builtin.final_val_loss


@pytest.mark.parametrize("decay_all", [False, True])
def test_weight_decay_on_matrices_only_unless_decay_all(decay_all):
    cfg = RunConfig.build({**TINY, "optimizer": {"class_path": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9,
                                                 "weight_decay": 0.05, "decay_all": decay_all}})  # fmt: skip
    model = GPT(GPTConfig(vocab_size=16, n_layer=1, n_head=2, n_embd=32, block_size=16))
    (opt,) = optimizer_entry(cfg.optimizer).build(model, cfg.optimizer.params)
    assert type(opt) is __import__("torch").optim.SGD and opt.defaults["momentum"] == 0.9
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    for p in model.parameters():
        assert (id(p) in decayed) == (decay_all or p.dim() >= 2)


def test_the_run_identity_covers_the_class_path_and_the_installed_version():
    sgd = RunConfig.build({**TINY, "optimizer": {"class_path": "torch.optim.SGD", "lr": 0.1}})
    asgd = RunConfig.build({**TINY, "optimizer": {"class_path": "torch.optim.ASGD", "lr": 0.1}})
    assert sgd.hash != asgd.hash and sgd.optimizer["version"] == f"torch {metadata.version('torch')}"
    # a config stored under another version of the package is the run the code installed now would make
    stale = sgd.to_dict()
    stale["optimizer"]["version"] = "torch 0.0.1"
    assert RunConfig.from_dict(stale).hash == sgd.hash
    # another class path starts from that class's defaults, as naming another entry does
    assert sgd.override({"optimizer.class_path": "torch.optim.ASGD"}).optimizer["lr"] == 0.01


BAD = [
    ({"class_path": "torch.optim.SGD", "momentun": 0.9}, "optimizer.momentun", "allowed: class_path, version"),
    ({"class_path": "torch.optim.SGD", "lr": 0.1, "momentum": "high"}, "optimizer.momentum", "must be a number"),
    ({"class_path": "torch.nn.Linear"}, "optimizer.class_path", "not a torch.optim.Optimizer subclass"),
    ({"class_path": "json.JSONDecoder"}, "optimizer.class_path", "not a torch.optim.Optimizer subclass"),
    ({"class_path": "no_such_package.Opt"}, "optimizer.class_path", "cannot import 'no_such_package'"),
    ({"class_path": "torch.optim.NoSuchOpt"}, "optimizer.class_path", "has no 'NoSuchOpt'"),
    ({"class_path": "AdamW"}, "optimizer.class_path", "must be an import path"),
    ({"class_path": ["torch.optim.SGD"]}, "optimizer.class_path", "must be an import path"),
    ({"class_path": "torch.optim.Optimizer"}, "optimizer.class_path", "takes no `lr`"),
    # values each within their type that the class itself refuses, or a step the loop cannot take
    ({"class_path": "torch.optim.SGD", "lr": 0.1, "nesterov": True}, "optimizer.class_path",
     "cannot take a step with these arguments: ValueError: Nesterov momentum requires"),
    ({"class_path": "torch.optim.LBFGS", "lr": 0.1}, "optimizer.class_path", "cannot take a step"),
    ({"class_path": "torch.optim.Adam", "lr": 1e-3, "betas": [0.9, 1.5]}, "optimizer.class_path",
     "Invalid beta parameter"),
]  # fmt: skip


@pytest.mark.parametrize(("optimizer", "key", "text"), BAD, ids=[b[2][:24] for b in BAD])
def test_bad_class_paths_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, optimizer, key, text):
    with pytest.raises(ConfigError) as e:
        RunConfig.build({**TINY, "optimizer": optimizer})
    assert e.value.key == key and text in e.value.message
    monkeypatch.chdir(tmp_path)
    sets = [f"optimizer.{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in optimizer.items()]
    assert main(["train", "--set", "model=tiny", "--set", "steps=5", *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"key '{key}'" in err and text in err, err
    assert not any(tmp_path.rglob("*"))


def test_a_searched_range_reaches_any_numeric_constructor_argument():
    base = RunConfig.build({**TINY, "optimizer": {"class_path": "torch.optim.SGD", "lr": 0.1}})
    space = parse_space({"optimizer.momentum": {"low": 0.5, "high": 0.95}, "optimizer.lr": {"low": 1e-3,
                         "high": 1e-1, "log": True}}, base)  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        values = space.sample(study.ask())
        cfg = space.config(base, values, seed=0)
        assert (
            cfg.optimizer["momentum"] == values["optimizer.momentum"] and cfg.optimizer["lr"] == values["optimizer.lr"]
        )
        assert cfg.optimizer["class_path"] == "torch.optim.SGD"


def test_third_party_optimizers_in_a_suite_against_adamw(tmp_path):
    pytest.importorskip("pytorch_optimizer")
    axes = ('optimizer = ["adamw", { class_path = "pytorch_optimizer.AdaBelief", lr = 3e-3 },'
            ' { class_path = "pytorch_optimizer.Lion", lr = 3e-4, weight_decay = 0.1 }]')  # fmt: skip
    path = write_suite(tmp_path, "third_party", axes, seeds="[0]", steps=12)
    storage = str(tmp_path / "s.journal")
    import torch

    # one in-process worker: keep this process's threads (a changed count re-rounds later tests' golden losses)
    run_suite(Plan(str(path), {}, storage, 1, torch.get_num_threads()), show_progress=False)
    frame = load_results("third_party", storage)
    assert sorted(frame["status"]) == ["complete"] * 3 and frame["value"].notna().all()
    versions = {v for v in frame["config.optimizer.version"].dropna()}
    assert versions == {f"pytorch_optimizer {metadata.version('pytorch_optimizer')}"}
    assert len(Suite.load(path).runs()) == 3
