"""`optbench` subcommands. Exit codes (README, "Exit codes"): 0 done, everything asked for; 1 a run failed while
training; 2 bad input or a write that failed (one line, naming the file, key, flag or variable); 3 runs that
did not run to the end for a reason outside them (a worker died, the database stayed away, others still hold
them); 130 stopped by Ctrl-C or SIGTERM.

Heavy imports (torch, rich) happen inside the commands that need them, so `--help` and `list` are quick.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from bench.checkpoint import kernels_storage, latest_kernels_path, legacy_kernels_path
from bench.errors import StoreUnreachable
from bench.files import atomic_path, check_output_path
from bench.registry import ConfigError

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# Commands that read what the store holds and never train: they run no code a suite file brings (docs/security.md)
READ_ONLY = ("results", "report", "doctor", "compare", "export")


def registries() -> dict[str, Any]:
    from bench.axes import AXES

    return {name: axis.registry for name, axis in AXES.items()}


def cmd_list(args: argparse.Namespace) -> int:
    regs = registries()
    if args.json:
        print(json.dumps({axis: reg.to_json() for axis, reg in regs.items()}, indent=2))
        return 0
    for axis, reg in regs.items():
        print(f"{axis}: {reg.description}")
        for entry in reg:
            print(f"  {entry.name:<20} {entry.description}")
            for name, param in entry.params.items():
                default = param.default if not isinstance(param.default, tuple) else list(param.default)
                print(f"  {'':<20}   {name} = {json.dumps(default)}  ({param.describe()})")
        print()
    return 0


class RichProgress:
    """A bar and one line per evaluation, on stderr."""

    def __init__(self) -> None:
        self.bar: Any = None

    def start(self, cfg: Any, total_steps: int) -> None:
        from bench.progress import progress_bar

        self.bar = progress_bar("train", "loss {task.fields[loss]}")
        self.task = self.bar.add_task("train", total=total_steps, loss="-")
        self.bar.start()

    def update(self, step: int, train_loss: float) -> None:
        self.bar.update(self.task, completed=step, loss=f"{train_loss:.4f}")

    def evaluated(self, step: int, val_loss: float) -> None:
        self.bar.console.print(f"step {step:>6}  val_loss {val_loss:.4f}")

    def finish(self, record: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def summary(record: Any) -> str:
    parts = [f"status {record.status}" + (f" at step {record.status_step}" if record.status_step else "")]
    if record.final_val_loss is not None:
        parts.append(f"val_loss {record.final_val_loss:.4f} (best {record.best_val_loss:.4f})")
    if record.loss_floor is not None:
        parts.append(f"floor {record.loss_floor:.4f}")
    parts.append(f"{record.steps} steps, {record.tokens} tokens")
    parts.append(f"{record.wall_time:.1f} s wall, {record.tokens_per_second:,.0f} tok/s")
    parts.append(f"peak {record.peak_memory_mb:.0f} MiB")
    return "; ".join(parts)


def calibrate_split(suite: Any) -> str:
    """Measure this machine's workers x threads split for the suite's model when it has none cached
    (bench.calibrate); the reason of the split `optbench run` takes."""
    from bench import calibrate, machine
    from bench.runner import rule_split

    cores = os.cpu_count() or 1
    if suite.base.device != "cpu" or machine.cache_path() is None:
        return "the rule for this model width (calibration off)"
    choice = machine.split_choice(suite.base, cores)
    if choice is None:
        print(f"optbench: calibrating the workers x threads split for this model on this machine "
              f"(once; cached in {machine.cache_path()})", file=sys.stderr)  # fmt: skip
        choice = calibrate.measure_split(suite.base, rule_split(suite.base, cores), cores)
    return choice.reason


def report_kernels(cfgs: list[Any], threads: int, force: bool = False) -> None:
    """Say which optimizer kernels `impl = "auto"` takes here and why, measuring them first when missing."""
    from bench import calibrate

    for line in calibrate.calibrate_impls(cfgs, threads, force):
        print(f"optbench: {line}", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from bench.runfile import load_run_config

    cfg = load_run_config(args.file, args.set)
    from bench.resources import check_fits
    from bench.techniques.corpora import check_corpora

    check_corpora([cfg], args.file)
    check_fits([cfg], source=args.file)
    import torch

    from bench.calibrate import run_threads

    threads = run_threads(cfg, torch.get_num_threads())
    print(f"optbench: {threads.value} thread(s): {threads.reason}", file=sys.stderr)
    cfg = cfg.override({"threads": threads.value})  # threads are not in the run's hash: the same run
    report_kernels([cfg], threads.value)
    from bench.train import train

    record = train(cfg, None if args.quiet else RichProgress())
    record.env["threads_choice"] = threads.reason  # record.config holds the count
    print(summary(record), file=sys.stderr)
    if record.error:
        print(record.error, file=sys.stderr)
    if args.json:
        print(record.to_json())
    return 1 if record.status == "failed" else 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench import calibrate, machine
    from bench.runfile import load_run_config, read_toml
    from bench.runner import rule_split

    cfg = load_run_config(args.file, args.set)
    if machine.cache_path() is None:
        raise ConfigError("OPTBENCH_CALIBRATION", "calibration is off; unset it or name a file")
    cores = os.cpu_count() or 1
    split = None if args.force else machine.split_choice(cfg, cores)
    if split is None:
        split = calibrate.measure_split(cfg, rule_split(cfg, cores), cores)
    print(f"optbench run: {split.value[0]} worker(s) x {split.value[1]} thread(s): {split.reason}")
    import torch

    from bench.calibrate import run_threads

    one_run = run_threads(cfg, torch.get_num_threads(), cores, force=args.force)
    print(f"optbench train: {one_run.value} thread(s): {one_run.reason}")
    cfgs = [cfg]
    if args.file and "suite" in read_toml(args.file):  # every optimizer a suite's runs use
        from bench.suite import Suite

        cfgs += [run.config for run in Suite.load(args.file, suite_overrides(args)).runs()]
    for threads in sorted({split.value[1], one_run.value}):  # a suite's workers, and one `optbench train`
        for line in calibrate.calibrate_impls(cfgs, threads, args.force):
            print(f"optbench: {line}")
    print(f"cached in {machine.cache_path()}", file=sys.stderr)
    return 0


def check_sample_flags(args: argparse.Namespace) -> None:
    """The decoding flags, before a run is trained for them (a bad one used to crash after training)."""
    for flag in ("tokens", "top_k", "beams"):
        value = getattr(args, flag)
        if value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}", f"must be an integer >= 1, got {value}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise ConfigError("--temperature", f"must be a finite number > 0, got {args.temperature}")
    if not -(2**63) <= args.seed < 2**64:  # what torch.Generator.manual_seed takes
        raise ConfigError("--seed", f"must be in [-2**63, 2**64), got {args.seed}")


def cmd_sample(args: argparse.Namespace) -> int:
    from bench.runfile import load_run_config

    check_sample_flags(args)
    cfg = load_run_config(args.file, args.set)
    from bench.techniques.corpora import check_corpora

    check_corpora([cfg], args.file)
    import torch

    from bench.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
    from bench.techniques.corpora import load_corpus
    from bench.train import resolve_device, run_training

    corpus = load_corpus(cfg.data)
    device = resolve_device(cfg.device)
    try:
        model = load_checkpoint(cfg.hash, device)
        print(f"loaded the trained weights of run {cfg.hash} from {checkpoint_path(cfg.hash)}", file=sys.stderr)
    except CheckpointError:
        record, model = run_training(cfg, RichProgress())
        print(summary(record), file=sys.stderr)
        if record.status == "failed" or model is None:
            print(record.error, file=sys.stderr)
            return 1
        save_checkpoint(cfg.hash, model)
    model.eval()
    prompt = corpus.encode(args.prompt) or [0]
    idx = torch.tensor([prompt], device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = model.generate(
        idx,
        args.tokens,
        method=args.method,
        temperature=args.temperature,
        top_k=args.top_k,
        beams=args.beams,
        generator=generator,
    )
    print(corpus.decode(out[0].tolist()))
    return 0


def suite_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from bench.runfile import parse_set

    overrides = parse_set(getattr(args, "set", None))
    if getattr(args, "device", None):
        overrides["device"] = args.device
    return overrides


def check_suite_devices(suite: Any, source: str) -> set[str]:
    """The devices a suite's runs train on; ConfigError (exit 2) when this machine lacks one of them."""
    from bench.devices import check_available

    devices = {r.config.device for r in suite.runs()}
    for device in sorted(devices):
        try:
            check_available(device)
        except ConfigError as e:
            raise e.with_source(source) from None
    return devices


def cmd_run(args: argparse.Namespace) -> int:
    from bench.devices import sharing
    from bench.runner import Plan, run_suite
    from bench.store import Store
    from bench.suite import Suite

    check_crew_flags(args)
    suite = Suite.load(args.suite, suite_overrides(args))  # every run validated before anything is written
    from bench.techniques.corpora import check_corpora

    check_corpora([r.config for r in suite.runs()], args.suite)
    if not args.no_report:
        from bench.report import default_report_path

        check_output_path(default_report_path(suite), "reports")
    check_suite_devices(suite, args.suite)
    Store.open(args.storage).check_writable()  # an unreachable storage is bad input, reported before any work
    workers, threads, gpus, split_reason = crew_for(suite, args, args.suite)  # (calibrates when it must)
    from bench.resources import check_fits

    check_fits([r.config for r in suite.runs()], workers, args.suite)
    plan = Plan(args.suite, suite_overrides(args), args.storage, workers, threads, gpus=gpus, split_reason=split_reason)
    grows = ""
    if suite.tune:
        grows = (f" to start: each arm's grid of {', '.join(suite.tune)} may grow (tune_extend = {suite.tune_extend}, "
                 f"tune_refine = {suite.tune_refine}) and its choice is confirmed on {len(suite.confirm_seeds)} "
                 "fresh seed(s)")  # fmt: skip
    print(f"{suite.name}: {len(suite.runs())} runs{grows}, {workers} worker(s) x {threads} thread(s) ({split_reason})",
          file=sys.stderr)  # fmt: skip
    shared = {g: n for g, n in sharing(gpus).items() if n > 1}
    if shared:
        which = ", ".join(f"{g}: {n} workers" for g, n in shared.items())
        print(f"{suite.name}: GPUs shared ({which}): timings depend on which runs overlapped; "
              "each record carries env.gpu_workers", file=sys.stderr)  # fmt: skip
    report_kernels([r.config for r in suite.runs()], threads)
    summary = run_suite(plan, show_progress=not args.quiet)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()))
    best = f"; best {summary.best[1]:.4f} ({summary.best[0]})" if summary.best else ""
    copied = f"; {summary.copied} taken from other suites" if summary.copied else ""
    done = counts or "nothing run"
    print(f"{suite.name}: {done} of {summary.total} in {summary.elapsed:.1f} s{best}{copied}", file=sys.stderr)
    if not args.no_report and summary.counts:
        from bench.report import build_report

        path = build_report(suite, args.storage, sample=not args.no_sample)
        print(f"report: {path}", file=sys.stderr)
    if summary.complete:
        return EXIT_DONE
    say_unfinished(f"{len(summary.unfinished)} of {summary.total} runs did not finish", summary.unfinished,
                   f"`optbench results {args.suite}` lists them; the same command runs them again")  # fmt: skip
    return EXIT_FAILED if summary.counts.get("failed") else EXIT_INCOMPLETE


def say_unfinished(what: str, items: list[str], after: str, shown: int = 3) -> None:
    """One line: what did not finish and why, the first few named."""
    named = "; ".join(items[:shown]) + (f"; and {len(items) - shown} more" if len(items) > shown else "")
    print(f"optbench: {what}: {named}; {after}", file=sys.stderr)


def store_to_read(storage: str | None) -> bool:
    """Whether the store a read-only command reads exists (it is never created for reading): a missing
    --storage is a typo (NoStore, exit 2); a missing default store, False: no results yet."""
    from bench.store import NoStore, Store

    try:
        Store.open(storage, create=False)
    except NoStore:
        if storage:
            raise
        return False
    return True


def suite_to_read(path: str, storage: str | None, overrides: dict[str, Any] | None = None) -> Any:
    """A suite file parsed for reading its results, its outside entries stood in for by what the store
    recorded of them (bench.standin): none of its plugins or class_path modules is run."""
    from bench import standin
    from bench.runfile import read_toml
    from bench.store import NoStore, Store, search_study_names
    from bench.suite import Suite

    doc = read_toml(path)
    meta = doc.get("suite")
    name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else Path(path).stem
    try:
        store = Store.open(storage, create=False)
    except NoStore:
        store = None  # said by store_to_read, after the suite is known good
    if store is not None:
        for study_name in [name, *search_study_names(name, storage)]:
            study = store.existing_study(study_name)
            if study is not None:
                standin.record(study.user_attrs.get("entries") or {})
    return Suite.load(path, overrides)


def no_results_yet(suite: Any) -> str:
    from bench.store import default_storage_url

    return f"no results for suite '{suite.name}' yet (no store at {default_storage_url()})"


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report, default_report_path

    suite = suite_to_read(args.suite, args.storage)
    if args.baseline is not None:
        suite = suite.with_baseline(args.baseline)
    check_output_path(args.out or default_report_path(suite), "--out" if args.out else "reports")
    if args.json:
        check_output_path(args.json, "--json")
    if not store_to_read(args.storage):  # exit 2, as for an empty store
        raise ConfigError("", f"{no_results_yet(suite)}: `optbench run {args.suite}` first")
    path = build_report(suite, args.storage, args.out, sample=not args.no_sample, json_out=args.json)
    print(f"report: {path}", file=sys.stderr)
    if args.json:
        print(f"conclusions: {args.json}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import Side, compare, environment_text, html, table
    from bench.conclusions import dumps
    from bench.runfile import parse_set

    for flag, path in (("--json", args.json), ("--out", args.out)):
        if path:
            check_output_path(path, flag)
    against_storage = args.storage if args.against is None else args.against
    side = Side(args.storage, parse_set(args.set), "--storage")
    against = Side(against_storage, parse_set(args.against_set), "--against")
    if side == Side(against.storage, against.overrides, "--storage"):
        raise ConfigError("--against", "names the same runs as the side (the same store, the same --set): give "
                          "another store with --against, or other settings with --against-set")  # fmt: skip
    suites = {}
    for s in (side, against):
        if not store_to_read(s.storage):  # the default store, missing
            from bench.store import default_storage_url

            raise ConfigError(s.flag, f"no store at {default_storage_url()}")
        suites[s.flag] = suite_to_read(args.suite, s.storage, dict(s.overrides))
    # each side's runs are what the suite file implies with that side's settings
    result = compare(suites[side.flag], side, suites[against.flag], against, pair=not args.unpaired)
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(result["headline"], highlight=False)
    for key in ("storage", "against"):
        console.print(f"{key}: {result['sides'][key]['storage']}: {environment_text(result['sides'][key])}",
                      highlight=False)  # fmt: skip
    console.print(table(result))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(dumps(result), encoding="utf-8")
        print(f"comparison: {args.json}", file=sys.stderr)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(html(result), encoding="utf-8")
        print(f"page: {args.out}", file=sys.stderr)
    return 0


def check_crew_flags(args: argparse.Namespace) -> None:
    for flag in ("workers", "threads", "workers_per_gpu", "trials"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}", f"must be >= 1, got {value}")


def crew_for(suite: Any, args: argparse.Namespace, source: str) -> tuple[int, int, list[str | None], str]:
    """(workers, threads each, each worker's GPU, why): the split `optbench run` and `optbench search` take,
    from the flags, one worker per GPU, or this machine's calibration for the suite's model."""
    from bench.devices import worker_devices
    from bench.runner import default_split

    devices = check_suite_devices(suite, source)
    gpus = worker_devices(devices, args.workers, getattr(args, "workers_per_gpu", 1))
    reason = "set on the command line" if args.workers or args.threads else "one worker per GPU"
    if args.workers is None and args.threads is None and not any(gpus):
        reason = calibrate_split(suite)
    workers, threads = default_split(suite)
    if args.workers is not None or any(gpus):
        workers = len(gpus) if any(gpus) else args.workers
        threads = max(1, (os.cpu_count() or 1) // workers)
    return workers, args.threads or threads, gpus if any(gpus) else [], reason


def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import check_destination, export

    suite = suite_to_read(args.suite, args.storage)
    tool, destination = args.to
    check_destination(tool, destination)
    if not store_to_read(args.storage):
        raise ConfigError("", f"{no_results_yet(suite)}: `optbench run {args.suite}` first")
    print(export(suite, args.storage, tool, destination), file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from bench import search
    from bench.space import parse_space
    from bench.stats import param_importances
    from bench.store import Store
    from bench.suite import Suite

    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError("--timeout", f"must be a finite number of seconds > 0, got {args.timeout}")
    if args.export:
        check_output_path(args.export, "--export")
    check_crew_flags(args)
    suite = Suite.load(args.suite, suite_overrides(args))
    from bench.techniques.corpora import check_corpora

    check_corpora([suite.base, *(r.config for r in suite.runs())], args.suite)
    if not args.no_report:
        from bench.report import default_report_path

        check_output_path(default_report_path(suite), "reports")
    if not suite.search:
        raise ConfigError("search", "the suite has no [search] table to search", args.suite)
    try:
        space = parse_space(suite.search, suite.base)
    except ConfigError as e:
        raise e.with_source(args.suite) from None
    reduction_factor = search.REDUCTION_FACTOR if args.reduction_factor is None else args.reduction_factor
    if reduction_factor < 2:
        raise ConfigError("--reduction-factor", f"must be >= 2, got {reduction_factor}")
    workers, threads, gpus, reason = crew_for(suite, args, args.suite)
    objectives = tuple(o.strip() for o in args.objectives.split(","))
    plan = search.SearchPlan(
        args.suite, suite_overrides(args), args.storage, args.trials, args.sampler, args.pruner, objectives,
        args.timeout, workers, threads, args.per_arm, reduction_factor=reduction_factor, show_progress=not args.quiet,
        gpus=gpus, split_reason=reason,
    )  # fmt: skip
    plan.check()
    if args.sampler == "grid":
        space.grid()
    found = search.arms(plan, suite, space)  # a bad --per-arm is reported before any work
    from bench.resources import check_fits

    check_fits([suite.base], workers, args.suite)
    store = Store.open(args.storage)
    store.check_writable()
    search.check_studies(plan, store, found, space)
    print(f"{suite.name}: search of {args.trials} trials, {workers} worker(s) x {threads} thread(s) ({reason})",
          file=sys.stderr)  # fmt: skip
    studies = search.run_search(plan)
    exported = None
    rows = []
    for name, study in studies:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        pruned = sum(t.state.name == "PRUNED" for t in study.get_trials(deepcopy=False))
        steps = sum(t.user_attrs.get("steps_trained", 0) for t in study.get_trials(deepcopy=False))
        print(f"{name}: {len(finished)} complete, {pruned} pruned, {steps} training steps", file=sys.stderr)
        if not finished:
            continue
        best = search.best_trial(study)
        if len(objectives) > 1:
            print(f"Pareto front ({', '.join(objectives)}):")
            for t in sorted(study.best_trials, key=lambda t: t.values):
                print(
                    "  "
                    + ", ".join(f"{v:.4f}" for v in t.values)
                    + f"  trial {t.number}: {t.user_attrs.get('arm_label')}"
                )
            print(f"# the recipe of the Pareto point best in {objectives[0]}: trial {best.number}")
        else:
            importances = param_importances(study)
            if study.user_attrs.get("importances") != importances:
                study.set_user_attr("importances", importances)
            print(f"# best of {name}: {objectives[0]} {best.value:.4f} (trial {best.number})")
            if importances:
                print("# importances: " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
        rows.append((name, best.values[0], best.user_attrs.get("arm_label", "")))
        text = search.recipe_toml(search.best_config(study), best, name, threads)
        print(text)
        if exported is None or best.values[0] < exported[0]:
            exported = (best.values[0], text)
    if len(rows) > 1:
        print("best of each arm, equal budgets:")
        for name, value, label in sorted(rows, key=lambda r: r[1]):
            print(f"  {value:.4f}  {name}  {label}")
    if args.export and exported is not None:
        with atomic_path(args.export) as tmp:
            tmp.write_text(exported[1])
        print(f"best recipe written to {args.export}", file=sys.stderr)
    if not args.no_report:
        from bench.report import build_report

        print(f"report: {build_report(suite, args.storage)}", file=sys.stderr)
    short = [s for s in (search.shortfall(plan, study) for _, study in studies) if s]
    if not short:
        return EXIT_DONE
    say_unfinished("the search did not finish", [why for why, _ in short], "the same command resumes it")
    return EXIT_FAILED if any(failed for _, failed in short) else EXIT_INCOMPLETE


def cmd_results(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.frame import concat
    from bench.results import suite_results
    from bench.store import load_results, search_study_names

    suite = suite_to_read(args.suite, args.storage)
    if not store_to_read(args.storage):  # exit 0, as for an empty store
        print(no_results_yet(suite), file=sys.stderr)
        return 0
    frames = []
    if args.study in ("all", "runs"):
        runs = suite_results(suite, args.storage, with_curves=args.format == "json")
        if runs.attrs["left_out"]:
            left_out = runs.attrs["left_out"]
            print(f"{left_out} stored run(s) no longer implied by {args.suite} are left out", file=sys.stderr)
        frames.append(runs.assign(study=suite.name))
    if args.study in ("all", "search"):
        for name in search_study_names(suite.name, args.storage):
            trials = load_results(name, args.storage, with_curves=args.format == "json")
            frames.append(trials.assign(study=name))
    frames = [f for f in frames if len(f)]
    # which studies the rows come from: the suite's runs, its search, or both
    implied = len(suite.runs())
    listed = ", ".join(
        f"study '{f['study'].iloc[0]}': {len(f)} run(s)"
        + (
            f" of {implied} ({implied - len(f)} not run yet)"
            if f["study"].iloc[0] == suite.name and len(f) < implied
            else ""
        )
        for f in frames
    )
    print(listed or f"no results for suite '{suite.name}' yet", file=sys.stderr)
    frame = concat(frames) if frames else suite_results(suite, args.storage, with_curves=False)
    from bench.plugins import describe_used
    from bench.report import flat_configs

    if used := describe_used(flat_configs(frame)):  # the code behind the plugin entries, by hash or version
        print(used, file=sys.stderr)
    frame = frame.drop(columns=[c for c in frame.columns if c == "config" or c.startswith("env.")])
    if args.format == "csv":
        from bench.labels import spreadsheet_safe

        safe = frame.rename(columns=spreadsheet_safe)
        for column in safe.columns:
            if not pd.api.types.is_numeric_dtype(safe[column]):  # text cells only: -0.5 stays a number
                safe[column] = safe[column].map(spreadsheet_safe)
        safe.to_csv(sys.stdout, index=False, lineterminator="\r\n")  # RFC 4180: a cell holding CR is quoted
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=1, date_format="iso"))
    else:
        columns = [
            c
            for c in ("study", "arm", "seed", "stage", "status", "status_step", "value", "best_val_loss", "steps",
                      "tokens", "train_time", "attempts")
            if c in frame and (c != "study" or frame["study"].nunique() > 1) and (c != "stage" or suite.tune)
        ]  # fmt: skip
        if "study" in frame and len(frame):
            from bench.report.figures import compact_label

            searched = frame["study"] != suite.name  # a trial's settings, short; csv and json keep them whole
            frame.loc[searched, "arm"] = frame.loc[searched, "arm"].map(compact_label)
        with pd.option_context("display.width", 200, "display.max_rows", None):
            print(frame[columns].to_string(index=False) if len(frame) else f"no results for suite '{suite.name}' yet")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.doctor import diagnose, summary_line
    from bench.store import default_storage_url, missing_store

    if missing := missing_store(args.storage):  # checking a store never creates one
        raise ConfigError("--storage", f"no such store {missing}: nothing to check")
    findings = diagnose(args.storage, args.repair, Path(args.reports))
    for finding in findings:
        print(finding)
    print(summary_line(findings, args.storage or default_storage_url()), file=sys.stderr)
    return 1 if any(f.open for f in findings) else 0


def kernel_suite_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "suites" / "kernels"
    if not path.is_dir():
        raise ConfigError("", f"the kernel suites are not beside this installation (looked in {path})")
    return path


def cmd_kernels(args: argparse.Namespace) -> int:
    import subprocess

    from bench.devices import check_available

    for device in args.device.split(","):
        if not (device in ("cpu", "cuda") or device.startswith("cuda:")):
            raise ConfigError("--device", f"must be cpu, cuda or cuda:N (comma-separated), got {device!r}")
        check_available(device, "--device")  # a CPU-only torch would skip every CUDA kernel and print nothing
    suite_dir = kernel_suite_dir()
    storage = kernels_storage().resolve()
    json_path = Path(args.json).resolve() if args.json else latest_kernels_path().resolve()
    check_output_path(json_path, "--json" if args.json else "OPTBENCH_RESULTS_DIR")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    legacy = legacy_kernels_path()
    if legacy.is_file():  # pytest-benchmark's storage holds its own files only
        if latest_kernels_path().exists():
            legacy.unlink()
        else:
            legacy.replace(latest_kernels_path())
    command = [
        sys.executable, "-m", "pytest", str(suite_dir), "-q", "-p", "no:cacheprovider",
        f"--device={args.device}",
        f"--kernel-presets={'small' if args.quick else 'tiny,small,base'}",
        f"--kernel-rounds={3 if args.quick else 10}",
        f"--benchmark-json={json_path}",
        f"--benchmark-storage=file://{storage}", "--benchmark-autosave",
        "--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name", "-rs",
    ]  # fmt: skip
    if args.k:
        command += ["-k", args.k]
    print(f"optbench kernels: {' '.join(command[3:])}", file=sys.stderr)
    done = subprocess.run(command, cwd=suite_dir.parent.parent, stdout=subprocess.DEVNULL if not args.verbose else None)
    timed = 0
    if json_path.is_file():
        data = json.loads(json_path.read_text())
        timed = len(data.get("benchmarks", []))
        print(kernel_table(data))
        print(f"JSON: {json_path}; history for `pytest-benchmark compare`: {storage}", file=sys.stderr)
    if timed == 0:
        print("optbench kernels: no kernel was timed (rerun with --verbose for pytest's reasons)", file=sys.stderr)
    return 0 if done.returncode == 0 and timed else 1


# A timing whose interquartile range exceeds this share of its median is flagged: the machine was busy or
# the clock noisy (one kernel moved 48x between two runs on a shared machine without any warning).
SPREAD_WARNING = 0.25


def kernel_table(data: dict[str, Any]) -> str:
    """One line per kernel: group, case, median, IQR, achieved GFLOP/s and GB/s (and % of a known GPU's
    peak); a warning under the table names every timing whose IQR/median exceeds SPREAD_WARNING."""
    info = data.get("machine_info", {})
    lines = [f"torch {info.get('torch')}, {info.get('torch_threads')} threads, {info.get('cpu_model')}"
             + (f", {info['gpu']}" if info.get("gpu") else "")]  # fmt: skip
    if info.get("gpu_device"):
        precision = info.get("precision", {})
        lines.append(f"{info['gpu_device']}: {info.get('gpu_sms')} SMs, {info.get('gpu_memory_mib')} MiB, driver "
                     f"{info.get('gpu_driver')}, peak entry {info.get('gpu_peak_entry') or 'none (no % of peak)'}, "
                     f"TF32 matmul {precision.get('cuda_matmul_allow_tf32')}, float32 matmul precision "
                     f"{precision.get('float32_matmul_precision')}")  # fmt: skip
    lines.append(f"{'group':<34} {'case':<44} {'median':>10} {'IQR':>10} {'GFLOP/s':>9} {'GB/s':>8} {'%peak':>6}")
    noisy = []
    for b in sorted(data.get("benchmarks", []), key=lambda b: (b["group"] or "", b["name"])):
        extra = b.get("extra_info", {})
        median = b["stats"]["median"]
        case = b["name"].split("[", 1)[-1].rstrip("]")
        flops = extra.get("gflops_per_s")
        gbs = extra.get("gb_per_s")
        frac = extra.get("peak_flops_fraction")
        iqr = b["stats"].get("iqr")
        if iqr is not None and median > 0 and iqr / median > SPREAD_WARNING:
            noisy.append(f"{b['group'] or ''} {case} ({iqr / median:.0%})")
        lines.append(
            f"{(b['group'] or ''):<34} {case:<44} {median * 1e6:>8.1f}us "
            f"{(f'{iqr * 1e6:.1f}us' if iqr is not None else '-'):>10} "
            f"{(f'{flops:.1f}' if flops else '-'):>9} {(f'{gbs:.1f}' if gbs else '-'):>8} "
            f"{(f'{100 * frac:.1f}' if frac is not None else '-'):>6}"
        )
    if noisy:
        lines.append(f"warning: IQR above {SPREAD_WARNING:.0%} of the median, timings not to be trusted (a busy "
                     f"machine?): " + ", ".join(noisy))  # fmt: skip
    from bench.roofline import kernel_roofline

    return "\n".join(lines + kernel_roofline(data.get("benchmarks", [])))


class Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of bad input (argparse prints its whole usage block first):
    `optbench: error: MESSAGE; see optbench run --help`, exit 2. Subparsers are built from this class too."""

    def error(self, message: str) -> NoReturn:
        commands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        if commands and "required: COMMAND" in message:  # `optbench` alone: say which commands there are
            message += f" (one of {', '.join(commands[0].choices)})"
        self.fail(message, self.prog)

    def fail(self, message: str, prog: str) -> NoReturn:
        self.exit(2, f"optbench: error: {' '.join(message.split())}; see {prog} --help\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        namespace, extra = self.parse_known_args(args, namespace)
        if extra:  # argparse reports these from the top parser; the hint names the command they were given to
            command = getattr(namespace, "command", None)
            self.fail(f"unrecognized arguments: {' '.join(extra)}", f"{self.prog} {command}" if command else self.prog)
        return namespace


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="optbench", description="Benchmark LM training techniques on one fixed small GPT.")
    from bench.version import __version__

    parser.add_argument("--version", action="version", version=f"optbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the techniques of every axis, with their parameters and defaults")
    p.add_argument("--json", action="store_true", help="print JSON: axis -> entry -> description, params")
    p.set_defaults(func=cmd_list)

    def run_file_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", nargs="?", help="a TOML file whose [base] table is the run (a suite file works)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. optimizer.lr=3e-4")

    p = sub.add_parser("train", help="one training run")
    run_file_args(p)
    p.add_argument("--json", action="store_true", help="print the RunRecord as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="measure this machine's fastest optimizer kernels and workers x threads split")
    run_file_args(p)
    p.add_argument("--force", action="store_true", help="measure again even when a verdict is cached")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("sample", help="text generated by a trained run (trained first when not cached)")
    run_file_args(p)
    p.add_argument("--method", choices=("greedy", "sample", "beam"), default="sample")
    p.add_argument("--prompt", default="\n", help="text to continue")
    p.add_argument("--tokens", type=int, default=200, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("run", help="run a suite (resumable): every run once, kept in the results store")
    p.add_argument("suite", help="suite file (TOML)")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core for small models)")
    p.add_argument("--threads", type=int, help="torch threads per worker")
    p.add_argument(
        "--storage",
        help="results store: a journal file (default results/optbench.journal) or postgresql://...",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto, for every run")
    p.add_argument(
        "--workers-per-gpu", type=int, default=1,
        help="on GPUs: workers allowed to share one GPU (default 1; more makes timings shared, and recorded so)",
    )  # fmt: skip
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field of every run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write reports/<suite>.html at the end")
    p.add_argument("--no-sample", action="store_true", help="no text sample from the best run in the report")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("search", help="Optuna search over the suite's [search] space, with pruning")
    p.add_argument("suite", help="suite file (TOML) with a [search] table")
    p.add_argument("--trials", type=int, default=20, help="trials (per arm with --per-arm)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument(
        "--workers", type=int, help="worker processes (default: as `optbench run`, one per core for small models)"
    )
    p.add_argument("--threads", type=int, help="torch threads per worker")
    p.add_argument("--workers-per-gpu", type=int, default=1, help="on GPUs: workers allowed to share one GPU")
    p.add_argument("--storage", help="results store (default results/optbench.journal) or postgresql://...")
    p.add_argument("--sampler", default="tpe", help="tpe, random, cmaes, qmc or grid (all seeded)")
    p.add_argument(
        "--pruner",
        help="none, median, successive_halving or hyperband (default: hyperband; none where "
        "--objectives names several, which Optuna cannot prune)",
    )
    p.add_argument("--objectives", default="val_loss", help="val_loss, or e.g. val_loss,train_time for a Pareto front")
    p.add_argument("--per-arm", help="give every value of this [search] axis its own equal budget of trials")
    p.add_argument("--reduction-factor", type=int, help="successive_halving/hyperband: keep 1/N per rung (default 4)")
    p.add_argument("--export", metavar="FILE.toml", help="write the best recipe as a [base] table")
    p.add_argument("--no-report", action="store_true", help="do not write reports/<suite>.html at the end")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto, for every trial")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field of the base")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="a self-contained HTML report of a suite's results")
    p.add_argument("suite", help="suite file (TOML)")
    p.add_argument("--storage", help="results store (default results/optbench.journal)")
    p.add_argument("--out", help="where to write it (default reports/<suite>.html)")
    p.add_argument("--no-sample", action="store_true", help="no text sample from the best run")
    p.add_argument("--baseline", metavar="ARM", help="the arm every other is compared with, as the report labels it "
                   "(default: the suite's `baseline` key, else the first arm)")  # fmt: skip
    p.add_argument("--json", metavar="PATH", help="also write the conclusions (docs/conclusions.md) here; they are "
                   "always written beside the report as <name>.json")  # fmt: skip
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="the same suite from two stores or two settings, arm by arm (docs/compare.md)")
    p.add_argument("suite", help="suite file (TOML)")
    p.add_argument("--storage", help="the store of the side compared (default results/optbench.journal); "
                   "differences are this side minus --against")  # fmt: skip
    p.add_argument("--against", metavar="STORAGE", help="the store to compare with (default: the side's own store)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="the side's runs were made with this override (as `optbench run --set`)")  # fmt: skip
    p.add_argument("--against-set", action="append", metavar="KEY=VALUE",
                   help="the --against side's runs were made with this override")  # fmt: skip
    p.add_argument("--unpaired", action="store_true", help="Welch's t-test for every arm, even where seeds pair")
    p.add_argument("--json", metavar="PATH", help="also write the comparison as JSON (docs/compare.md)")
    p.add_argument("--out", metavar="PATH.html", help="also write it as a self-contained HTML page")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", help="every run of a suite and its search's trials, to TensorBoard or MLflow")
    p.add_argument("suite", help="suite file (TOML)")
    p.add_argument(
        "--to", nargs=2, required=True, metavar=("TOOL", "DEST"),
        help="tensorboard DIR, or mlflow URI: a tracking database (sqlite:///FILE.db, postgresql://...) or server",
    )  # fmt: skip
    p.add_argument("--storage", help="results store (default results/optbench.journal)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("kernels", help="the pytest-benchmark kernel suites; history under results/kernels/")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N; comma-separated for several")
    p.add_argument("--quick", action="store_true", help="the small preset's shapes and 3 rounds each")
    p.add_argument(
        "--json", metavar="PATH", help="where to write the pytest-benchmark JSON (default results/kernels-latest.json)"
    )
    p.add_argument("-k", help="only kernels matching this pytest -k expression")
    p.add_argument("--verbose", action="store_true", help="show pytest's own output")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("results", help="one row per run: flattened config, seed, status, metrics")
    p.add_argument("suite", help="suite file (TOML)")
    p.add_argument("--storage", help="results store (default results/optbench.journal)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--study", choices=("all", "runs", "search"), default="all",
        help="the suite's runs, its search's trials, or both (default; a `study` column tells them apart)",
    )  # fmt: skip
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("doctor", help="check a results store for what crashes leave (and --repair it)")
    p.add_argument("--storage", help="results store (default results/optbench.journal)")
    p.add_argument("--repair", action="store_true", help="fix what is found: torn records, stale locks, orphans")
    p.add_argument("--reports", default="reports", help="reports folder to check for temporary files")
    p.set_defaults(func=cmd_doctor)
    for command in sub.choices.values():  # every command: its entries must be known before files are read
        command.add_argument("--plugin", action="append", metavar="FILE|MODULE",
                             help="a plugin registering entries (repeatable; see docs/plugins.md)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench import interrupts

    # SIGTERM stops as Ctrl-C does from the start (it killed a command importing torch without a word)
    previous = interrupts.install()
    try:
        return run_command(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from bench import plugins, settings

        settings.check_all()  # a bad OPTBENCH_* variable is bad input before anything runs
        if args.command in READ_ONLY:
            from bench import standin

            standin.reading()  # no plugin or class_path code runs in a command that only reads
        plugins.load_installed()
        if getattr(args, "plugin", None):
            plugins.load_cli(args.plugin)
        return args.func(args)
    except ConfigError as e:
        print(f"optbench: error: {e.format()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("optbench: interrupted; finished runs are kept, the same command resumes", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StoreUnreachable as e:  # reached before, then away past OPTBENCH_DB_RETRY: not bad input
        print(f"optbench: {e}; finished runs are kept, the same command resumes", file=sys.stderr)
        return EXIT_INCOMPLETE
    except BrokenPipeError:  # e.g. `optbench list | head`
        return 0
    except OSError as e:  # a full disk or a read-only folder while writing a report or a checkpoint
        # the path errors too: output paths are checked up front (check_output_path), this is the last resort
        path_errors = (errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, *path_errors):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"optbench: error: cannot write {where}{e.strerror}; the results store keeps every run", file=sys.stderr)
        return 2
    finally:
        from bench import standin

        standin.done_reading()


if __name__ == "__main__":
    raise SystemExit(main())
