"""Benchmarks of optbench itself, printed as ratios from side-by-side runs (shared machines are noisy).

    python -m bench.perf harness  [--steps 300] [--repeats 5]
    python -m bench.perf kernels-impl [--steps 300] [--repeats 3]
    python -m bench.perf startup  [--repeats 5]
    python -m bench.perf memory
    python -m bench.perf nanogpt  [--suite suites/nanogpt_cpu.toml]
    python -m bench.perf profile  [--steps 50]
    python -m bench.perf crosscheck [--preset small] [--rounds 200]
    python -m bench.perf report   [--runs 500]
    python -m bench.perf pruning  [--trials 30]
    python -m bench.perf workers  [--suite suites/quick.toml] [--repeats 1]
    python -m bench.perf roofline [--preset small] [--autocast none|bf16]
    python -m bench.perf step     [--variants fused,foreach,forloop,bf16] [--rounds 9] [--clock wall|cpu]
    python -m bench.perf compile  [--rounds 9]
    python -m bench.perf suite-ab --old REV [--suite suites/quick.toml] [--pairs 2]

`harness`: steps per second of train() on the small preset against a bare loop of the same model,
optimizer and batches with no logging and no evaluation; alternated, median ratio (target >= 0.97).
`kernels-impl`: train() steps per second of the nanoGPT recipe with the optimizer's fused, foreach and
for-loop kernels, and with 1 or all threads.
`startup`: seconds until `optbench --help` and `optbench list` answer (target < 1 s).
`crosscheck`: pytest-benchmark's median against torch.utils.benchmark.Timer's for linear, layer norm and
SDPA attention (target: within 10%).
`report`: seconds to render the HTML report of a fabricated store of 500 runs (target < 30 s).
`pruning`: the same trials searched with no pruner and with Hyperband: steps used and best found.
`profile`: torch.profiler's table of the operators that take train()'s time on the nanoGPT recipe.
`nanogpt`: wall time and validation loss of the nanoGPT CPU recipe against nanoGPT's own on this machine kind.
`memory`: peak RSS of a small-preset run of 200 steps in a fresh process (target <= 1 GiB).
`workers`: wall time of `optbench run` on a suite with each worker/thread split of this machine's
cores, each into a fresh store; prints seconds and the speed-up over one worker.
`roofline`: the training step's achieved GFLOP/s against the float32 (and bfloat16) matmul rate of its own
shapes on this machine (bench.roofline).
`step`: Training.step() variants (optimizer kernels, bf16 autocast) in one process, alternated in blocks;
median time per step and median ratio to the first. `--clock cpu` counts process CPU time (with
`--threads 1`, robust to other load on the machine).
`suite-ab`: `optbench run SUITE` wall time with the code of git revision REV (extracted to a temporary
folder) and with this checkout, alternated, each into a fresh store, same interpreter and packages.
`compile`: torch.compile of the model: first-step (compile) seconds in a fresh process with a cold and then
a warm on-disk cache, and the per-step time against eager, alternated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_command(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_workers(suite: str, repeats: int) -> None:
    cores = os.cpu_count() or 1
    splits = [(1, cores)] + [(w, max(1, cores // w)) for w in range(2, cores + 1) if cores % w == 0]
    if (1, 1) not in splits:
        splits.insert(1, (1, 1))
    times: dict[tuple[int, int], list[float]] = {s: [] for s in splits}
    for _ in range(repeats):
        for workers, threads in splits:  # interleaved, so drift in machine load hits every split alike
            with tempfile.TemporaryDirectory() as tmp:
                storage = str(Path(tmp) / "bench.journal")
                cmd = [sys.executable, "-m", "bench", "run", suite, "--storage", storage, "--quiet",
                       "--workers", str(workers), "--threads", str(threads)]  # fmt: skip
                times[(workers, threads)].append(time_command(cmd))
    base = statistics.median(times[splits[0]])
    print(f"suite {suite}, {cores} cores, median of {repeats} run(s) each")
    print(f"{'workers x threads':>18} {'wall s':>8} {'speed-up vs 1 worker':>22}")
    for split in splits:
        t = statistics.median(times[split])
        print(f"{split[0]:>8} x {split[1]:<7} {t:>8.1f} {base / t:>22.2f}")


def small_config(steps: int, **values):
    from bench.config import RunConfig

    # nanoGPT's CPU recipe on the synthetic corpus; no clipping or schedule work the bare loop lacks
    base = {"model": "small", "steps": steps, "eval_interval": steps, "eval_batches": 1, "clip": "none",
            "schedule": "constant"}  # fmt: skip
    return RunConfig.build({**base, **values})


def bare_loop_seconds(cfg) -> float:
    """The same model, optimizer and batches as train(cfg), with nothing else: the harness-free floor."""
    from torch.nn import functional as F

    from bench.data import BatchStream, load_corpus
    from bench.techniques.class_path import optimizer_entry
    from bench.train import build_model

    corpus = load_corpus(cfg.data)
    model = build_model(cfg, corpus, "cpu")
    (opt,) = optimizer_entry(cfg.optimizer).build(model, cfg.optimizer.params, "cpu")
    batches = BatchStream(corpus.train, cfg.batch_size, cfg.model["block_size"], seed=cfg.batch_seed)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg.total_steps):
        x, y = batches.next()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_harness(steps: int, repeats: int) -> None:
    from bench.data import load_corpus
    from bench.train import train

    cfg = small_config(steps)
    load_corpus(cfg.data)  # built once, outside both timings
    ratios, bare_times, harness_times = [], [], []
    bare_loop_seconds(small_config(20))  # warm-up of allocator and kernels
    for _ in range(repeats):
        bare = bare_loop_seconds(cfg)
        harness = train(cfg).train_time
        bare_times.append(bare)
        harness_times.append(harness)
        ratios.append(bare / harness)
    print(f"small preset, {steps} steps, AdamW, {repeats} alternated pairs, {os.cpu_count()} cores")
    for name, times in (("bare loop", bare_times), ("train()", harness_times)):
        median = statistics.median(times)
        print(f"{name:<11} median {median:.2f} s  ({steps / median:.1f} steps/s)")
    print(f"harness ratio (bare / train(), per pair) median {statistics.median(ratios):.3f}  "
          f"min {min(ratios):.3f}  max {max(ratios):.3f}  (target >= 0.97)")  # fmt: skip


def bench_kernels_impl(steps: int, repeats: int) -> None:
    from bench.data import load_corpus
    from bench.train import train

    cores = os.cpu_count() or 1
    variants = {
        f"fused, {cores} threads": {"optimizer.impl": "fused"},
        f"foreach, {cores} threads": {"optimizer.impl": "foreach"},
        f"forloop, {cores} threads": {"optimizer.impl": "forloop"},
        "fused, 1 thread": {"optimizer.impl": "fused", "threads": 1},
    }
    recipe = {"clip": {"name": "norm", "max_norm": 1.0}, "schedule": {"name": "warmup_cosine", "warmup": 10}}
    configs = {name: small_config(steps, **recipe, **v) for name, v in variants.items()}
    load_corpus(next(iter(configs.values())).data)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, cfg in configs.items():  # interleaved
            times[name].append(train(cfg).train_time)
    first = next(iter(configs))
    base = statistics.median(times[first])
    print(f"small preset, AdamW, clip 1.0, {steps} steps, median of {repeats}")
    for name in configs:
        t = statistics.median(times[name])
        print(f"{name:<22} {steps / t:7.1f} steps/s   time vs {first}: {t / base:.2f}x")


def bench_startup(repeats: int) -> None:
    for args in (["--help"], ["list"]):
        times = [time_command([sys.executable, "-m", "bench", *args]) for _ in range(repeats)]
        median = statistics.median(times)
        print(f"optbench {' '.join(args):<7} median {median:.3f} s  max {max(times):.3f} s  (target < 1 s)")


def bench_memory() -> None:
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench", "train", "--quiet", "--json", "--set", "model=small",
         "--set", "steps=200", "--set", "eval_interval=100", "--set", "schedule.warmup=10"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    record = json.loads(out.stdout)
    print(f"small preset, 200 steps, batch 12: peak RSS {record['peak_memory_mb']:.0f} MiB (target <= 1024 MiB)")


def bench_profile(steps: int) -> None:
    """torch.profiler over train() on the nanoGPT recipe: where a step's time goes, by operator."""
    from torch.profiler import ProfilerActivity, profile

    from bench.data import load_corpus
    from bench.train import train

    cfg = small_config(steps, clip={"name": "norm", "max_norm": 1.0}, schedule={"name": "warmup_cosine", "warmup": 5})
    load_corpus(cfg.data)
    train(small_config(10))  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(cfg)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


# nanoGPT's own train.py on this kind of machine (2-core CPU): README CPU recipe, 2000 iterations.
NANOGPT_SECONDS, NANOGPT_VAL_LOSS = 102.8, 1.886


def bench_nanogpt(suite: str) -> None:
    """The nanoGPT CPU recipe through `optbench train`, against nanoGPT's own figures on this machine kind."""
    from bench.config import load_run_config
    from bench.train import train

    record = train(load_run_config(suite, None))
    print(
        f"{suite}: {record.steps} steps, validation loss {record.final_val_loss:.4f} "
        f"({record.final_val_loss - NANOGPT_VAL_LOSS:+.4f} vs nanoGPT's {NANOGPT_VAL_LOSS}, target within 0.03)"
    )
    share = record.wall_time / NANOGPT_SECONDS
    print(f"wall {record.wall_time:.1f} s = {share:.0%} of nanoGPT's {NANOGPT_SECONDS} s ({1 / share:.2f}x faster)")


CROSSCHECK = {"linear": "linear", "layer_norm": "layer_norm", "attention_sdpa": "attention_sdpa"}


def bench_crosscheck(preset: str, rounds: int) -> None:
    """pytest-benchmark's median against torch.utils.benchmark.Timer's for three kernels (target within 10%)."""
    import json

    import torch
    import torch.utils.benchmark as tbench

    from bench import kernels
    from bench.env import set_threads

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "k.json"
        suite = Path(__file__).resolve().parent.parent / "suites" / "kernels" / "test_ops.py"
        selection = " or ".join(f"{name}-float32" for name in CROSSCHECK)
        subprocess.run(
            [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", f"--kernel-presets={preset}",
             f"--kernel-rounds={rounds}", f"--benchmark-json={out}", "-k", selection],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        medians = {b["group"]: b["stats"]["median"] for b in json.loads(out.read_text())["benchmarks"]}
    print(f"{preset} preset, float32, cpu, {torch.get_num_threads()} threads")
    print(f"{'kernel':<16} {'pytest-benchmark':>17} {'torch Timer':>12} {'ratio':>7}")
    # Timer's default of one thread differs from torch's, so it gets the benchmark's count; and since any
    # torch.set_num_threads call slows the CPU pool (bench.env.set_threads), its thread setter skips no-ops.
    common = tbench.utils.common

    @contextlib.contextmanager
    def same_threads(n: int):
        before = torch.get_num_threads()
        set_threads(n)
        try:
            yield
        finally:
            set_threads(before)

    common.set_torch_threads = same_threads
    for group, factory in CROSSCHECK.items():
        fn = getattr(kernels, factory)(preset, torch.float32, "cpu").fn
        timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        theirs = timer.blocked_autorange(min_run_time=1.0).median
        ours = medians[group]
        print(f"{group:<16} {ours * 1e6:>15.1f}us {theirs * 1e6:>10.1f}us {ours / theirs:>7.3f}  (target 0.90-1.10)")


def fabricate_results(suite_path: str, storage: str, seed: int = 0) -> int:
    """Store made-up but plausible RunRecords for every run of a suite, without training (report tests and
    the report benchmark). Each arm gets its own level, each seed noise, a few runs diverge."""
    import random

    from bench.runner import claim
    from bench.store import Store
    from bench.suite import Suite
    from bench.train import RunRecord

    rng = random.Random(seed)
    suite = Suite.load(suite_path)
    store = Store.open(storage)
    study = store.study(suite.name)
    levels: dict[str, float] = {}
    runs = suite.runs()
    for run in runs:
        level = levels.setdefault(run.arm_label, 1.2 + 0.6 * rng.random())
        trial_id = claim(store, study, run, suite, "fabricated")
        steps = run.config.total_steps
        diverged = rng.random() < 0.03
        final = level + rng.gauss(0, 0.02)
        val_steps = list(range(run.config.eval_interval, steps + 1, run.config.eval_interval)) or [steps]
        val = [final + (3.0 - final) * (1 - s / steps) ** 2 for s in val_steps]
        train_loss = [final + (3.0 - final) * (1 - s / steps) ** 2 + rng.gauss(0, 0.05) for s in range(steps)]
        reached = next((s for s, v in zip(val_steps, val, strict=True) if suite.target and v <= suite.target), None)
        record = RunRecord(
            config=run.config.to_dict(), config_hash=run.hash,
            status="diverged" if diverged else "complete", status_step=steps // 2 if diverged else None,
            final_val_loss=None if diverged else val[-1], best_val_loss=None if diverged else min(val),
            loss_floor=1.0, steps=steps, tokens=steps * run.config.tokens_per_step, wall_time=steps / 100,
            train_time=steps / 110, cpu_time=steps / 120, tokens_per_second=1e5, peak_memory_mb=300.0, n_params=100_000,
            target=suite.target, target_step=reached, target_tokens=reached and reached * run.config.tokens_per_step,
            target_time=reached and reached / 110,
            curves={"train_loss": train_loss, "grad_norm": [1.0] * steps, "lr": [1e-3] * steps,
                    "val_step": val_steps, "val_loss": val},
            env={"optbench": "0.1.0", "commit": "fabricated", "torch": "x", "device": "cpu", "device_name": "cpu",
                 "threads": 1},
        )  # fmt: skip
        store.finish(trial_id, record, suite.metric_field)
    return len(runs)


def bench_report(runs: int) -> None:
    """Wall time of `build_report` on a fabricated store of about `runs` runs (target < 30 s for 500)."""
    from bench.report import build_report
    from bench.suite import Suite

    axes = 'optimizer = ["adamw", "lion", "sgd", "adam", "nadam"]\n"optimizer.lr" = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]\n'
    axes += 'schedule = ["constant", "cosine", "wsd", "linear", "warmup_cosine"]\n'
    seeds = max(1, runs // 125)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_report.toml"
        path.write_text(f'[suite]\nname = "bench_report"\nseeds = {list(range(seeds))}\ntarget = 1.6\n'
                        f'[base]\nmodel = "tiny"\nsteps = 500\neval_interval = 50\nschedule = {{ name = "constant" }}\n'
                        f"[axes]\n{axes}")  # fmt: skip
        storage = str(Path(tmp) / "r.journal")
        n = fabricate_results(str(path), storage)
        start = time.perf_counter()
        out = build_report(Suite.load(path), storage, Path(tmp) / "r.html", sample=False)
        seconds = time.perf_counter() - start
        print(f"report of {n} runs: {seconds:.1f} s, {out.stat().st_size / 1e6:.1f} MB (target < 30 s for 500 runs)")


PRUNING_SUITE = """[suite]
name = "pruning_bench"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", order = 2, alphabet = 8 }
steps = 810
eval_interval = 30
eval_batches = 10
schedule = { name = "warmup_cosine", warmup = 30 }
[search]
optimizer = ["adamw", "lion", "nesterov"]
schedule = ["warmup_cosine", "wsd", "constant"]
"schedule.warmup" = { low = 0, high = 100, type = "int" }
"""


def bench_pruning(trials: int, reduction_factors: list[int], seed: int = 0) -> None:
    """The same trials (the same sampled settings, in the same order) searched without pruning and with
    Hyperband at each reduction factor: training steps used and the best value found (target: <= 40% of
    the steps, best within 0.02)."""
    import optuna

    from bench import search
    from bench.store import Store

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pruning_bench.toml"
        path.write_text(PRUNING_SUITE)
        storage = str(Path(tmp) / "p.journal")
        suite = search.Suite.load(path)
        space = search.parse_space(suite.search, suite.base)
        sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        settings = []
        for _ in range(trials):  # the fixed set of trials every search runs
            trial = sampler_study.ask()
            settings.append(space.sample(trial))
            sampler_study.tell(trial, 0.0)

        def steps_and_best(pruner: str, reduction_factor: int = 3) -> tuple[int, float]:
            plan = search.SearchPlan(str(path), {}, storage, trials, "random", pruner)
            study = optuna.create_study(study_name=f"pruning_bench.{pruner}.{reduction_factor}",
                                        storage=Store.open(storage).storage,
                                        pruner=search.make_pruner(pruner, suite.base, reduction_factor))  # fmt: skip
            for values in settings:
                study.enqueue_trial(values)
            study.optimize(search.objective_factory(plan, suite, space, {}), n_trials=trials)
            return sum(t.user_attrs.get("steps_trained", 0) for t in study.trials), study.best_value

        print(f"{trials} identical trials (sampled with seed {seed}), tiny model, synthetic order-2 corpus, "
              f"up to 810 steps each")  # fmt: skip
        s0, b0 = steps_and_best("none")
        print(f"no pruning:                     {s0} steps, best {b0:.4f}")
        for factor in reduction_factors:
            s1, b1 = steps_and_best("hyperband", factor)
            print(f"hyperband, reduction factor {factor}: {s1} steps ({s1 / s0:.0%}; target <= 40%), "
                  f"best {b1:.4f} ({b1 - b0:+.4f}; target within 0.02)")  # fmt: skip


STEP_VARIANTS = {
    "fused": {"optimizer.impl": "fused"},
    "foreach": {"optimizer.impl": "foreach"},
    "forloop": {"optimizer.impl": "forloop"},
    "bf16": {"autocast": "bf16"},
    "bf16+foreach": {"autocast": "bf16", "optimizer.impl": "foreach"},
}


def recipe_config(preset: str = "small", **values):
    """nanoGPT's CPU recipe (AdamW, clipping, warmup-cosine) on the synthetic corpus with its 65 tokens."""
    from bench.config import RunConfig

    return RunConfig.build({"model": preset, "steps": 10**6, "eval_batches": 1,
                            "data": {"name": "synthetic", "alphabet": 65}, **values})  # fmt: skip


def bench_roofline(preset: str, autocast: str) -> None:
    import torch

    from bench import roofline
    from bench.env import cpu_model

    cfg = recipe_config(preset, autocast=autocast)
    r = roofline.roofline(cfg)
    shapes = roofline.matmul_shapes(cfg, 65)
    _, bf16_rate = roofline.matmul_rate(shapes, torch.bfloat16)
    print(f"{preset} preset, batch {cfg.batch_size} x {cfg.model['block_size']} tokens, autocast {autocast}, "
          f"{torch.get_num_threads()} threads, {cpu_model()}, torch {torch.__version__}")  # fmt: skip
    print(f"training step:  {r.step_seconds * 1e3:6.1f} ms (median of 5 blocks of 20), {r.step_flops / 1e9:.2f} GFLOP"
          f" -> {r.achieved / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"float32 matmuls of its shapes ({sum(m.count for m in shapes)} per step, each timed alone): "
          f"{r.matmul_seconds * 1e3:.1f} ms -> {r.matmul_flops_per_second / 1e9:.0f} GFLOP/s; "
          f"bfloat16: {bf16_rate / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"achieved / float32 matmul rate: {r.fraction:.0%}; the step's FLOPs at that rate: "
          f"{r.floor_seconds * 1e3:.1f} ms; {1e3 * (r.step_seconds - r.floor_seconds):.1f} ms above it")  # fmt: skip


def bench_step(variants: list[str], rounds: int, block: int, clock: str, threads: int | None) -> None:
    import torch

    from bench.env import set_threads
    from bench.train import Training

    set_threads(threads)
    unknown = [v for v in variants if v not in STEP_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; allowed: {', '.join(STEP_VARIANTS)}")
    now = time.process_time if clock == "cpu" else time.perf_counter
    runs = {v: Training(recipe_config(**STEP_VARIANTS[v])) for v in variants}
    for run in runs.values():
        for _ in range(block):
            run.step()
    times: dict[str, list[float]] = {v: [] for v in runs}
    for _ in range(rounds):
        for v, run in runs.items():  # interleaved: load on the machine hits every variant alike
            start = now()
            for _ in range(block):
                run.step()
            times[v].append((now() - start) / block)
    first = variants[0]
    print(f"small preset, nanoGPT recipe, {torch.get_num_threads()} threads, {rounds} alternated blocks of "
          f"{block} steps, {clock} clock")  # fmt: skip
    for v in variants:
        ratios = [t / b for t, b in zip(times[v], times[first], strict=True)]
        print(f"{v:<14} {statistics.median(times[v]) * 1e3:7.2f} ms/step  vs {first}: median "
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip


COMPILE_PROBE = """
import statistics, sys, time, torch
from bench.perf import recipe_config
from bench.train import Training
rounds = int(sys.argv[1])
eager, compiled = Training(recipe_config()), Training(recipe_config())
compiled.model = torch.compile(compiled.model)
start = time.perf_counter(); compiled.step(); first = time.perf_counter() - start
start = time.perf_counter(); compiled.evaluate(); first_eval = time.perf_counter() - start
for _ in range(10): eager.step(); compiled.step()
te, tc = [], []
for _ in range(rounds):
    for times, run in ((te, eager), (tc, compiled)):
        start = time.perf_counter()
        for _ in range(10): run.step()
        times.append((time.perf_counter() - start) / 10)
ratio = statistics.median(c / e for c, e in zip(tc, te))
print(f"first step {first:.1f} s, first evaluation {first_eval:.1f} s; eager {statistics.median(te) * 1e3:.2f} "
      f"ms/step, compiled {statistics.median(tc) * 1e3:.2f}: ratio {ratio:.3f}")
"""


def bench_compile(rounds: int) -> None:
    """torch.compile of the model, in fresh processes sharing one on-disk cache: cold, then warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for label in ("cold cache", "warm cache"):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", COMPILE_PROBE, str(rounds)], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
            print(f"{label}: {out}; process {time.perf_counter() - start:.1f} s")


def bench_suite_ab(suite: str, old: str, pairs: int) -> None:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        old_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", old], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        sides = {f"old {old}": (old_tree, {"PYTHONPATH": str(old_tree)}), "this checkout": (root, {})}
        times: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(pairs):
            for side, (cwd, extra) in sides.items():  # alternated: drift in machine load hits both alike
                storage = str(Path(tmp) / f"{len(times[side])}-{side[:3]}.journal")
                cmd = [sys.executable, "-m", "bench", "run", suite, "--storage", storage, "--no-report", "--quiet"]
                start = time.perf_counter()
                subprocess.run(cmd, cwd=cwd, env={**os.environ, **extra}, check=True, capture_output=True)
                times[side].append(time.perf_counter() - start)
                print(f"pair {i + 1}, {side}: {times[side][-1]:.1f} s", flush=True)
    medians = {side: statistics.median(t) for side, t in times.items()}
    old_median, new_median = medians.values()
    print(f"{suite}: old {old_median:.1f} s, this checkout {new_median:.1f} s (medians of {pairs}); "
          f"ratio {new_median / old_median:.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("workers", help="suite wall time per worker/thread split")
    p.add_argument("--suite", default="suites/quick.toml")
    p.add_argument("--repeats", type=int, default=1)
    p.set_defaults(run=lambda a: bench_workers(a.suite, a.repeats))
    p = sub.add_parser("harness", help="train() against a bare training loop")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(run=lambda a: bench_harness(a.steps, a.repeats))
    p = sub.add_parser("kernels-impl", help="optimizer kernels and threads in train()")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(run=lambda a: bench_kernels_impl(a.steps, a.repeats))
    p = sub.add_parser("startup", help="time to answer --help and list")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(run=lambda a: bench_startup(a.repeats))
    p = sub.add_parser("memory", help="peak RSS of a small-preset run")
    p.set_defaults(run=lambda a: bench_memory())
    p = sub.add_parser("report", help="time to render the report of a fabricated 500-run store")
    p.add_argument("--runs", type=int, default=500)
    p.set_defaults(run=lambda a: bench_report(a.runs))
    p = sub.add_parser("pruning", help="the same trials with and without Hyperband pruning")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--reduction-factor", type=int, nargs="+", default=[3, 4])
    p.add_argument("--seed", type=int, default=0, help="seed of the random sampler drawing the trials")
    p.set_defaults(run=lambda a: bench_pruning(a.trials, a.reduction_factor, a.seed))
    p = sub.add_parser("crosscheck", help="pytest-benchmark against torch.utils.benchmark.Timer on three kernels")
    p.add_argument("--preset", default="small")
    p.add_argument("--rounds", type=int, default=200)
    p.set_defaults(run=lambda a: bench_crosscheck(a.preset, a.rounds))
    p = sub.add_parser("nanogpt", help="the nanoGPT CPU recipe against nanoGPT's own time and loss")
    p.add_argument("--suite", default="suites/nanogpt_cpu.toml")
    p.set_defaults(run=lambda a: bench_nanogpt(a.suite))
    p = sub.add_parser("profile", help="operators that take a step's time (torch.profiler)")
    p.add_argument("--steps", type=int, default=50)
    p.set_defaults(run=lambda a: bench_profile(a.steps))
    p = sub.add_parser("roofline", help="the training step's GFLOP/s against the matmul rate of its shapes")
    p.add_argument("--preset", default="small")
    p.add_argument("--autocast", default="none", choices=("none", "bf16"))
    p.set_defaults(run=lambda a: bench_roofline(a.preset, a.autocast))
    p = sub.add_parser("step", help="training-step variants alternated in one process")
    p.add_argument("--variants", default="fused,foreach,forloop,bf16")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    p.add_argument("--threads", type=int)
    p.set_defaults(run=lambda a: bench_step(a.variants.split(","), a.rounds, a.block, a.clock, a.threads))
    p = sub.add_parser("suite-ab", help="optbench run SUITE with an older revision's code and this one, alternated")
    p.add_argument("--old", required=True, help="git revision of the old code")
    p.add_argument("--suite", default="suites/quick.toml")
    p.add_argument("--pairs", type=int, default=2)
    p.set_defaults(run=lambda a: bench_suite_ab(a.suite, a.old, a.pairs))
    p = sub.add_parser("compile", help="torch.compile: cold and warm compile time, per-step gain")
    p.add_argument("--rounds", type=int, default=9)
    p.set_defaults(run=lambda a: bench_compile(a.rounds))
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
