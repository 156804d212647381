"""Any torch optimizer by import path: optimizer = { class_path = "package.module.Class", ... }."""

import json
import math
import sys
import types
import typing
from importlib import metadata

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from suite_files import write_suite

from bench.cli import main
from bench.codec import claim_attrs
from bench.config import RunConfig
from bench.model import GPT, GPTConfig
from bench.registry import ConfigError
from bench.results import suite_results
from bench.runner import Plan, run_suite
from bench.space import parse_space
from bench.store import Store, load_results
from bench.suite import Suite
from bench.techniques.class_path import LoopNeeds, loop_needs, optimizer_entry
from bench.train import RunRecord, Training, train

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
    ({"class_path": "torch.optim.SGD", "lr": 0.1, "momentum": float("nan")}, "optimizer.momentum",
     "a number or inf (not nan)"),
    ({"class_path": "torch.optim.Adam", "lr": 1e-3, "betas": [0.9, 1.5]}, "optimizer.class_path",
     "Invalid beta parameter"),
]  # fmt: skip


def toml_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # nan, inf: TOML's spelling
    return v if isinstance(v, str) else json.dumps(v)


@pytest.mark.parametrize(("optimizer", "key", "text"), BAD, ids=[b[2][:24] for b in BAD])
def test_bad_class_paths_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, optimizer, key, text):
    with pytest.raises(ConfigError) as e:
        RunConfig.build({**TINY, "optimizer": optimizer})
    assert e.value.key == key and text in e.value.message
    monkeypatch.chdir(tmp_path)
    sets = [f"optimizer.{k}={toml_value(v)}" for k, v in optimizer.items()]
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


# -- any optimizer in the torch ecosystem ----------------------------------------------------------------

GENERATED = types.ModuleType("optbench_generated_optimizers")  # classes a test makes, importable by path
sys.modules[GENERATED.__name__] = GENERATED


def generated_class(body: dict, base: type | None = None) -> str:
    """A torch optimizer class made for one test, registered under a fresh import path; returns the path."""
    import torch

    name = f"Gen{len(vars(GENERATED))}"
    setattr(GENERATED, name, type(name, (base or torch.optim.SGD,), body))
    return f"{GENERATED.__name__}.{name}"


def with_extra_argument(annotation, default):
    """SGD with one more constructor argument, `extra: annotation = default`, which it keeps."""
    import torch

    def __init__(self, params, lr: float = 0.1, extra=default):
        torch.optim.SGD.__init__(self, params, lr=lr)
        self.extra = extra

    __init__.__annotations__ = {"lr": float, "extra": annotation}
    return generated_class({"__init__": __init__})


# (annotation, default, values a config may give it, the kind it reads as)
UNION_CASES = [
    (str | tuple[float, float, float], "original", st.sampled_from(["original", "quintic"]), str),
    (str | tuple[float, float, float], (3.0, -4.0, 2.0), st.tuples(*[st.floats(-5, 5)] * 3), tuple),
    (float | None, None, st.floats(0, 10) | st.none(), float),
    (float | int, 3, st.integers(0, 9), int),
    (float, math.inf, st.floats(0, 10) | st.just(math.inf), float),
    (typing.Literal["gaussian", "rademacher"], "gaussian", st.sampled_from(["gaussian", "rademacher"]), str),
    (tuple[int, ...], (2,), st.tuples(st.integers(0, 5)), tuple),
    (int | None, None, st.integers(1, 9) | st.none(), int),
    (bool | None, None, st.booleans(), bool),
]  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_union_annotated_argument_reads_as_the_member_its_default_is_and_reaches_the_class(data):
    annotation, default, values, kind = data.draw(st.sampled_from(UNION_CASES))
    path = with_extra_argument(annotation, default)
    cfg = RunConfig.build({**TINY, "optimizer": {"class_path": path}})
    expected_default = tuple(float(v) for v in default) if isinstance(default, tuple) else default
    assert cfg.optimizer["extra"] == expected_default  # the class's own default, inf included
    value = data.draw(values)
    cfg = RunConfig.build({**TINY, "optimizer": {"class_path": path, "extra": value}})
    model = GPT(GPTConfig(vocab_size=8, n_layer=1, n_head=2, n_embd=16, block_size=8))
    (opt,) = optimizer_entry(cfg.optimizer).build(model, cfg.optimizer.params)
    given = tuple(float(v) for v in value) if kind is tuple else value
    assert opt.extra == given and (given is None or type(opt.extra) is type(given))


def test_a_default_of_inf_is_taken_and_inf_is_writable_in_toml_and_survives_the_store(tmp_path):
    path = with_extra_argument(float, math.inf)  # Prodigy's and D-Adaptation's growth_rate
    assert RunConfig.build({**TINY, "optimizer": {"class_path": path}}).optimizer["extra"] == math.inf
    for i, (text, expected) in enumerate((("2.5", 2.5), ("inf", math.inf), ("-inf", -math.inf))):
        suite = write_suite(tmp_path, f"inf{i}", f'optimizer = [{{ class_path = "{path}", extra = {text} }}]',
                            seeds="[0]", steps=4)  # fmt: skip
        assert Suite.load(suite).runs()[0].config.optimizer["extra"] == expected
    with pytest.raises(ConfigError, match="not nan"):
        RunConfig.build({**TINY, "optimizer": {"class_path": path, "extra": math.nan}})
    with pytest.raises(ConfigError, match="finite"):  # the built-ins' floats stay finite
        RunConfig.build({**TINY, "optimizer": {"name": "adamw", "lr": math.inf}})
    storage = str(tmp_path / "s.journal")
    import torch

    run_suite(Plan(str(suite), {}, storage, 1, torch.get_num_threads()), show_progress=False)
    frame = load_results("inf2", storage)
    assert frame["status"].tolist() == ["complete"] and frame["config.optimizer.extra"].tolist() == [-math.inf]


def test_an_optimizer_whose_step_needs_a_closure_gets_one_over_the_same_batches():
    import torch

    seen = []

    def step(self, closure):  # as LBFGS: no step without a closure; each call re-evaluates the loss
        first, again = float(closure()), float(closure())
        seen.append((first, again))
        return torch.optim.SGD.step(self)

    path = generated_class({"step": step})
    cfg = RunConfig.build({**TINY, "grad_accum": 2, "optimizer": {"class_path": path, "lr": 0.1}})
    run = Training(cfg)
    assert loop_needs(cfg.optimizer) == LoopNeeds(closure=True) and "step" in vars(run)
    seen.clear()  # the steps that found it needs one
    losses = [float(run.step()[0]) for _ in range(4)]
    assert len(seen) == 4 and all(a == b for a, b in seen)  # the closure sees one step's batches, every call
    assert all(math.isfinite(v) for v in losses)
    plain = Training(RunConfig.build({**TINY, "optimizer": "adamw"}))
    assert "step" not in vars(plain)  # every other optimizer keeps the plain step, untouched


def test_lbfgs_and_sam_train_with_a_closure():
    pytest.importorskip("pytorch_optimizer")
    lbfgs = {"class_path": "torch.optim.LBFGS", "lr": 0.5, "max_iter": 4, "line_search_fn": "strong_wolfe"}
    sam = {"class_path": "pytorch_optimizer.SAM", "base_optimizer": "torch.optim.AdamW", "lr": 3e-3}
    for optimizer in (lbfgs, sam):
        cfg = RunConfig.build({**TINY, "optimizer": optimizer})
        assert loop_needs(cfg.optimizer).closure
        record = train(cfg)
        assert record.status == "complete" and record.final_val_loss < record.curves["train_loss"][0]
    # the wrapped class's arguments join the wrapper's, and its version the run's identity
    cfg = RunConfig.build({**TINY, "optimizer": sam})
    assert cfg.optimizer["betas"] == (0.9, 0.999) and "torch" in cfg.optimizer["version"]
    with pytest.raises(ConfigError, match="is required: the import path of the optimizer class SAM wraps"):
        RunConfig.build({**TINY, "optimizer": {"class_path": "pytorch_optimizer.SAM"}})
    with pytest.raises(ConfigError, match="not a torch.optim.Optimizer subclass") as e:
        RunConfig.build({**TINY, "optimizer": {**sam, "base_optimizer": "torch.nn.Linear"}})
    assert e.value.key == "optimizer.base_optimizer"


@pytest.mark.parametrize("name", ["AdaHessian", "SophiaH"])
def test_second_order_optimizers_get_backward_with_create_graph(name):
    pytest.importorskip("pytorch_optimizer")
    cfg = RunConfig.build({**TINY, "optimizer": {"class_path": f"pytorch_optimizer.{name}"}})
    assert loop_needs(cfg.optimizer) == LoopNeeds(create_graph=True)
    record = train(cfg)
    assert record.status == "complete" and record.final_val_loss < record.curves["train_loss"][0]


def test_a_step_no_loop_can_take_is_refused_naming_the_reason_not_torchs_symptom():
    import torch

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        torch.autograd.grad([p.grad for p in params], params, [torch.ones_like(p) for p in params])
        raise ValueError("no Hessian-vector product this time")

    path = generated_class({"step": step})
    with pytest.raises(ConfigError) as e:
        RunConfig.build({**TINY, "optimizer": {"class_path": path}})
    assert "needs second-order gradients, backward(create_graph=True)" in e.value.message
    assert "no Hessian-vector product" in e.value.message and "does not require grad" not in e.value.message


REFUSED = [
    ("pytorch_optimizer.AliG", {}, "optimizer.class_path", "takes no `lr`"),
    ("pytorch_optimizer.A2Grad", {}, "optimizer.class_path", "keeps no `lr` in its parameter groups"),
    ("pytorch_optimizer.A2Grad", {"lr": 1e-3}, "optimizer.class_path", "keeps no `lr` in its parameter groups"),
    ("pytorch_optimizer.SaRA", {}, "optimizer.lr", "is required: SaRA has no default learning rate"),
    ("pytorch_optimizer.Ranger21", {}, "optimizer.num_iterations", "is required: Ranger21(num_iterations)"),
    ("pytorch_optimizer.LOMO", {}, "optimizer.class_path", "fused_backward"),
    ("pytorch_optimizer.SpectralSphere", {}, "optimizer.class_path", "only supports 2D parameters"),
]


@pytest.mark.parametrize(("path", "given", "key", "text"), REFUSED, ids=[r[0][18:] + str(r[1]) for r in REFUSED])
def test_third_party_optimizers_the_loop_cannot_train_are_refused_with_their_reason(path, given, key, text):
    pytest.importorskip("pytorch_optimizer")
    with pytest.raises(ConfigError) as e:
        RunConfig.build({**TINY, "optimizer": {"class_path": path, **given}})
    assert e.value.key == key and text in e.value.message


TRAINS = [
    ("pytorch_optimizer.Prodigy", {}),  # growth_rate = inf by default
    ("pytorch_optimizer.DAdaptAdam", {}),
    ("pytorch_optimizer.Muon", {}),  # ns_coeffs: str | tuple = 'original'; groups flagged use_muon
    ("pytorch_optimizer.AdamMini", {"lr": 1e-3}),  # takes the model
    ("pytorch_optimizer.Ranger21", {"num_iterations": 12}),
    ("torch.optim.RAdam", {}),  # betas: tuple[float, float]
    ("pytorch_optimizer.SaRA", {"lr": 1e-3}),  # no default lr
]


@pytest.mark.parametrize(("path", "given"), TRAINS, ids=[t[0].split(".")[-1] for t in TRAINS])
def test_third_party_optimizers_train_at_their_own_defaults(path, given):
    pytest.importorskip("pytorch_optimizer")
    record = train(RunConfig.build({**TINY, "optimizer": {"class_path": path, **given}}))
    assert record.status == "complete", record.error  # complete: every loss finite, within 3x the first
    assert math.isfinite(record.final_val_loss)


# hashes of class_path configs (TINY, the class's defaults) before union annotations, inf defaults, closures
# and second-order steps were supported: a run stored then is the same run now
BEFORE = {
    "torch.optim.SGD": ("torch 2.13.0+cpu", "2f2f9367c1e16d95"),
    "torch.optim.AdamW": ("torch 2.13.0+cpu", "dc52307454692101"),
    "torch.optim.Adam": ("torch 2.13.0+cpu", "4e28286074d9ff0b"),
    "torch.optim.ASGD": ("torch 2.13.0+cpu", "3db2f96ed924ebdb"),
    "torch.optim.RMSprop": ("torch 2.13.0+cpu", "3c759124e19d1e2b"),
    "torch.optim.Adagrad": ("torch 2.13.0+cpu", "46423b4841501452"),
    "pytorch_optimizer.AdaBelief": ("pytorch_optimizer 4.1.0", "2069ef34f138598f"),
    "pytorch_optimizer.Lamb": ("pytorch_optimizer 4.1.0", "df8259c3e0508961"),
    "pytorch_optimizer.Ranger": ("pytorch_optimizer 4.1.0", "1ab2abe84b8f2d56"),
    "pytorch_optimizer.Lion": ("pytorch_optimizer 4.1.0", "4c5acc8a978cd89e"),
    "pytorch_optimizer.Adan": ("pytorch_optimizer 4.1.0", "10febb510303cde3"),
    "pytorch_optimizer.SOAP": ("pytorch_optimizer 4.1.0", "4e9888a3dc91752a"),
    "pytorch_optimizer.Shampoo": ("pytorch_optimizer 4.1.0", "78987c5e915bc104"),
    "pytorch_optimizer.ScheduleFreeAdamW": ("pytorch_optimizer 4.1.0", "c8555811748abfc5"),
}


def test_class_path_runs_stored_before_keep_their_hash():
    import importlib.util

    for path, (version, pinned) in BEFORE.items():
        if importlib.util.find_spec(path.split(".")[0]) is None:
            continue
        cfg = RunConfig.build({"model": "tiny", "steps": 12, "schedule": "constant", "optimizer": {"class_path": path}})
        if cfg.optimizer["version"] == version:
            assert cfg.hash == pinned, path


def test_an_optimizer_by_import_path_reads_by_its_class_name(tmp_path):
    pytest.importorskip("pytorch_optimizer")
    axes = ('optimizer = ["adamw", { class_path = "pytorch_optimizer.Lamb" },'
            ' { class_path = "torch.optim.SGD", lr = 0.1 }]')  # fmt: skip
    path = write_suite(tmp_path, "named", axes, seeds="[0]", steps=4)
    suite = Suite.load(path)
    assert suite.arm_labels() == ["optimizer=adamw", "optimizer=Lamb", "optimizer=SGD(lr=0.1)"]
    storage = str(tmp_path / "s.journal")
    store = Store.open(storage)
    study = store.study(suite.name)
    for run in suite.runs():  # stored as optbench wrote them before: the arm labelled {class_path=...}
        attrs = claim_attrs(run, suite.name, "s", {})
        attrs["arm_label"] = attrs["arm_label"].replace("Lamb", "{class_path=pytorch_optimizer.Lamb}")
        trial_id = store.create_running_trial(study, attrs)
        record = RunRecord(config=run.config.to_dict(), config_hash=run.hash, status="complete", final_val_loss=1.0)
        store.finish(trial_id, record, [1.0])
    frame = suite_results(suite, storage)
    assert frame["arm"].tolist() == suite.arm_labels()  # labels are display, taken from the suite now
    assert frame["config.optimizer.name"].tolist() == ["adamw", "Lamb", "SGD"]
    assert frame["config.optimizer.class_path"].tolist()[1:] == ["pytorch_optimizer.Lamb", "torch.optim.SGD"]
    assert frame["run_hash"].tolist() == [r.hash for r in suite.runs()]  # the hash is the identity
    assert {json.loads(c)["optimizer"]["name"] for c in frame["config"]} == {"adamw", "class_path"}


def test_two_classes_of_one_name_read_by_their_import_paths():
    pytest.importorskip("pytorch_optimizer")
    suite = Suite.parse({"suite": {"name": "lions"}, "base": TINY, "axes": {"optimizer": [
        {"class_path": "lion_pytorch.Lion"}, {"class_path": "pytorch_optimizer.Lion", "lr": 3e-4}]}})  # fmt: skip
    assert suite.arm_labels() == ["optimizer=lion_pytorch.Lion", "optimizer=pytorch_optimizer.Lion(lr=0.0003)"]
