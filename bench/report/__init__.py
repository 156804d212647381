"""The HTML report of a suite: one self-contained file (styles and figures inline, no network).

`build_report(suite)` reads the suite's runs from the store, computes the statistics (bench.stats) and
renders template.html.j2 with jinja2 (autoescaped: every user-supplied string is shown as text). The
same results give the same bytes: fixed table ids, seeded bootstrap bands, no timestamps in figures.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import nested
from bench.files import atomic_path
from bench.labels import label
from bench.registry import ConfigError
from bench.results import suite_results
from bench.stats import MIN_SEEDS_FOR_CI, best_per_arm, paired_comparisons, performance_profile, summarize
from bench.suite import Suite

SECTIONS = [
    ("leaderboard", "Leaderboard"),
    ("comparisons", "Paired comparisons"),
    ("effects", "Main effects"),
    ("interactions", "Interactions"),
    ("curves", "Loss curves"),
    ("target", "Time to target"),
    ("stability", "Stability"),
    ("floor", "Loss floor"),
    ("search", "Search"),
    ("kernels", "Kernels"),
    ("sample", "Sample"),
]
SAMPLE_CHARS = 400


def default_report_path(suite: Suite) -> Path:
    return Path("reports") / f"{suite.name}.html"


def baseline_arm(suite: Suite, frame: pd.DataFrame) -> str:
    """The suite's `baseline` arm if it names one, else the first combination's (each axis's first value)."""
    arms = list(dict.fromkeys(frame["arm"]))
    if suite.baseline in arms:
        return suite.baseline
    if suite.design == "ablation":
        return "base" if "base" in arms else arms[0]
    candidate = suite.arm_label_of(suite.runs()[0])
    return candidate if candidate in arms else arms[0]


def build_report(suite: Suite, storage: str | None = None, out: str | Path | None = None, sample: bool = True) -> Path:
    from bench.store import load_results

    frame = suite_results(suite, storage)
    left_out = frame.attrs["left_out"]
    studies = search_studies(suite, storage)
    design = suite.design
    if frame.empty and studies:  # a suite that was only searched: its trials are the runs
        frame = pd.concat([load_results(s.study_name, storage) for s in studies], ignore_index=True)
        frame = frame[frame["status"] != "running"].reset_index(drop=True)
        design = "search"
    if frame.empty:
        hint = f"`optbench run {suite.source or suite.name}` first"
        raise ConfigError("", f"no results for suite '{suite.name}' yet: {hint}")
    html = render(suite, frame, sample=sample, search_studies=studies, left_out=left_out, design=design)
    path = Path(out) if out else default_report_path(suite)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path


def search_studies(suite: Suite, storage: str | None) -> list[Any]:
    """The suite's search studies: `<suite>.search`, or one per arm of a `--per-arm` search."""
    from bench.store import Store, search_study_names

    store = Store.open(storage)
    return [store.existing_study(name) for name in search_study_names(suite.name, storage)]


def render(
    suite: Suite,
    frame: pd.DataFrame,
    sample: bool = True,
    search_studies: list[Any] | None = None,
    left_out: int = 0,
    design: str | None = None,
) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    from bench.report import figures

    frame = frame.copy()
    frame["value"] = frame["value"].astype(float)
    design = design or suite.design
    views = axis_views(suite, frame, design)
    axes = list(views)
    tuned = bool(suite.tune) and design != "search"
    if tuned:
        groups = frame["run_hash"].map({r.hash: suite.untuned_label(r) for r in suite.runs()})
        ranked_frame = best_per_arm(frame, groups.fillna(frame["arm"]))
        tuned_part = ranked_frame["run_hash"].map({r.hash: suite.tuned_label(r) for r in suite.runs()})
        ranked_frame["tuned_setting"] = [
            t if isinstance(t, str) and t else arm for t, arm in zip(tuned_part, ranked_frame["tuned_arm"], strict=True)
        ]
    else:
        ranked_frame = frame
    table = summarize(ranked_frame)
    baseline = baseline_arm(suite, ranked_frame)
    floor = _first(frame.get("loss_floor"))
    metric = suite.metric

    pairs = figures.axis_pairs(axes) if design == "grid" else []
    heat_scale = shared_scale([figures.interaction_table(frame, a, b) for a, b in pairs])
    context: dict[str, Any] = {
        "suite": suite,
        "metric": metric,
        "sections": SECTIONS,
        "header": header(frame),
        "left_out": left_out,
        "tuned": tuned,
        "min_seeds": MIN_SEEDS_FOR_CI,
        "too_few": bool((table["n"] < MIN_SEEDS_FOR_CI).any()),
        "leaderboard": Markup(leaderboard_html(table, floor, tuned_settings(ranked_frame))),
        "answer": answer(table, metric),
        "baseline": baseline,
        "comparisons": Markup(comparisons_html(paired_comparisons(ranked_frame, baseline))),
        "design": design_text(design, search_studies[0] if search_studies else None),
        "effects": [(a, figures.main_effect(views[a], a, metric, floor)) for a in axes],
        "interactions": [(a, b, figures.interaction(frame, a, b, metric, heat_scale)) for a, b in pairs],
        "interactions_note": INTERACTIONS_NOTE.get(design, "Interactions need two or more axes."),
        "curves": figures.curves(ranked_frame, curve_arms(table, baseline), floor),
        "stability": figures.stability(views),
        "status_counts": status_counts(frame),
        "floor": floor,
        "best_gap_to_floor": (table["mean"].iloc[0] - floor) if floor is not None else None,
        "target": suite.target,
        "search": [
            (f"{arm_of(study, suite)}{title}", image)
            for study in search_studies or []
            for title, image in figures.search_figures(study)
        ],
        "search_summary": " ".join(f"{arm_of(study, suite)}{search_summary(study)}" for study in search_studies or []),
    }
    if suite.target is not None:
        context.update(target_context(ranked_frame))
    context.update(kernels_context(frame))
    no_sample = {"sample": None, "sample_note": "Sampling was turned off (--no-sample)."}
    context.update(sample_context(ranked_frame, table) if sample else no_sample)
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html", "j2"], default=True)
    )
    return env.get_template("template.html.j2").render(**context)


INTERACTIONS_NOTE = {
    "ablation": "An ablation changes one axis at a time from the base: no run varies two axes, so there are no "
    "interactions to show.",
    "search": "A search samples its settings: see the Search section's parallel coordinates for how they combine.",
}
# a searched setting with more distinct values than this is continuous: Optuna's plots show it, not main effects
MAX_EFFECT_LEVELS = 12


def base_part(base: Any, given: list[Any]) -> Any:
    """Of the base's value of a field, the part the axis's values set: its name where they give names
    ('none'), the keys they give where they give tables; a whole optimizer table made a 120-character label."""
    if not isinstance(base, dict):
        return base
    keys = {k for g in given if isinstance(g, dict) for k in g}
    if keys:
        return {k: v for k, v in base.items() if k in keys}
    return base.get("name", base) if all(isinstance(g, str) for g in given) else base


def base_value(suite: Suite, axis: str) -> Any:
    """The base run's value of a dotted axis ('clip', 'optimizer.lr') or of a joint axis's fields, or None
    where it has none."""
    from bench.suite import is_joint

    if axis in suite.axes and is_joint(axis, suite.axes[axis]):
        fields = list(dict.fromkeys(k for value in suite.axes[axis] for k in value))
        return {k: base_part(base_value(suite, k), [v[k] for v in suite.axes[axis] if k in v]) for k in fields}
    value: Any = suite.base.to_dict()
    for part in axis.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def axis_views(suite: Suite, frame: pd.DataFrame, design: str) -> dict[str, pd.DataFrame]:
    """axis -> the runs that show its effect, with `arm.<axis>` as text labels in the file's order.

    grid: every run. ablation: the runs that change this axis, and the base runs labelled with the base's
    own value (the base's value need not be one of the axis's). search: every categorical setting the
    trials varied (at most MAX_EFFECT_LEVELS values), over the trials that set it."""
    views: dict[str, pd.DataFrame] = {}
    if design == "search":
        axes = [c.removeprefix("arm.") for c in frame.columns if c.startswith("arm.")]
    else:
        axes = [a for a in suite.axes if f"arm.{a}" in frame.columns or design == "ablation"]
    for axis in axes:
        column = f"arm.{axis}"
        data = frame.copy()
        if column not in data:
            data[column] = np.nan
        if design == "ablation":
            # the base's runs set no ablated axis (a tuned axis is crossed with every arm, the base's too)
            ablated = [f"arm.{a}" for a in suite.axes if a not in suite.crossed_axes and f"arm.{a}" in data]
            is_base = data[ablated].isna().all(axis=1) if ablated else data["arm"] == "base"
            data = data[data[column].notna() | is_base].copy()
            data[column] = (
                data[column].astype(object).where(data[column].notna(), f"{label(base_value(suite, axis))} (base)")
            )
        else:
            data = data[data[column].notna()].copy()
        data[column] = [label(v) if not isinstance(v, str) else v for v in data[column]]
        levels = data[column].nunique()
        if design == "search" and not (2 <= levels <= MAX_EFFECT_LEVELS and levels < len(data)):
            continue
        if not data.empty:
            views[axis] = data
    return views


def shared_scale(tables: list[pd.DataFrame]) -> tuple[float, float] | None:
    """One (vmin, vmax) for every heatmap of a report: the same colour is the same loss in each."""
    values = np.concatenate([t.to_numpy(dtype=float).ravel() for t in tables]) if tables else np.array([])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if len(values) else None


def design_text(design: str, search_study: Any | None) -> str:
    """How the runs were chosen, as the header says it."""
    if design != "search" or search_study is None:
        return design
    how = search_study.user_attrs.get("search", {})
    pruner = f"{how.get('pruner', '?')} pruner" if len(how.get("objectives", [])) <= 1 else "multi-objective, no pruner"
    return f"Optuna search ({how.get('sampler', '?')} sampler, {pruner})"


def _first(column: pd.Series | None) -> float | None:
    if column is None:
        return None
    values = column.dropna()
    return float(values.iloc[0]) if len(values) else None


def short_commit(commit: str | None) -> str:
    """12 hex digits, keeping the '+dirty' mark of a checkout with uncommitted changes."""
    if not commit:
        return "unknown commit"
    sha, dirty, _ = commit.partition("+dirty")
    return sha[:12] + ("+dirty" if dirty else "")


def header(frame: pd.DataFrame) -> dict[str, Any]:
    from bench.plugins import describe_used

    envs = [e for e in (nested(row, "env") for row in frame.to_dict("records")) if e]
    env = envs[0] if envs else {}
    finished = frame["finished"].dropna() if "finished" in frame else pd.Series(dtype=object)
    return {
        "date": str(max(finished))[:10] if len(finished) else "unknown",
        "optbench": env.get("optbench", "?"),
        # runs reused from an earlier version of the code say so: every commit that trained them is listed
        "commit": counted_text([short_commit(e.get("commit")) for e in envs], "unknown commit"),
        "torch": env.get("torch", "?"),
        "device": counted_text([e.get("device_name") or e.get("device", "?") for e in envs], "?"),
        "threads": counted_text([f"{e.get('threads', '?')} thread(s) per run" for e in envs], "? thread(s) per run"),
        "precision": counted_text([precision_of(e) for e in envs], "float32"),
        # workers sharing one GPU (--workers-per-gpu) time each other's kernels: said where any run did
        "shared_gpu": counted_text(
            [f"{e['gpu_workers']} workers per GPU, timings shared" for e in envs if e.get("gpu_workers", 1) > 1], ""
        ),
        "runs": len(frame),
        "seeds": frame["seed"].nunique(),
        "plugins": describe_used(flat_configs(frame)),
    }


def precision_of(env: dict[str, Any]) -> str:
    """What a run computed in: 'float32' or 'bf16 autocast'."""
    autocast = env.get("precision", {}).get("autocast", "none")
    return "float32" if autocast == "none" else f"{autocast} autocast"


def counted_text(values: list[str], default: str) -> str:
    """The one value all runs share, or each value with its run count (runs from several machines or
    settings in one store must not read as one); `default` when there are none."""
    counts = Counter(values)
    if len(counts) <= 1:
        return next(iter(counts), default)
    most_first = sorted(counts.items(), key=lambda vn: (-vn[1], vn[0]))
    return ", ".join(f"{value}: {n} run{'s' * (n != 1)}" for value, n in most_first)


def flat_configs(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each run's config as dotted keys (the frame's config.* columns, prefix dropped)."""
    columns = [c for c in frame.columns if c.startswith("config.")]
    return [{c.removeprefix("config."): v for c, v in row.items()} for row in frame[columns].to_dict("records")]


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) else f"{x:.{digits}f}"


def tuned_settings(frame: pd.DataFrame) -> dict[str, str] | None:
    """arm -> the tuned settings it is ranked at (its best), when the suite tunes."""
    if "tuned_arm" not in frame:
        return None
    return dict(zip(frame["arm"], frame.get("tuned_setting", frame["tuned_arm"]), strict=True))


def status_counts(frame: pd.DataFrame, noun: str = "runs") -> str:
    """'12 runs: 9 complete, 2 pruned (at steps 20, 40), 1 diverged (at step 7)'."""
    from bench.stats import STATUSES

    parts = []
    for status in STATUSES:
        runs = frame[frame["status"] == status]
        if runs.empty:
            continue
        text = f"{len(runs)} {status.replace('_', ' ')}"
        steps = sorted({int(s) for s in runs.get("status_step", pd.Series(dtype=float)).dropna()})
        if status != "complete" and steps:
            shown = ", ".join(map(str, steps[:8])) + (" ..." if len(steps) > 8 else "")
            text += f" (at step{'s' if len(steps) > 1 else ''} {shown})"
        parts.append(text)
    return f"{len(frame)} {noun}: " + ", ".join(parts)


def arm_of(study: Any, suite: Suite) -> str:
    """'adamw: ' for the study of one arm of a --per-arm search; '' for a whole search."""
    arm = study.study_name.removeprefix(f"{suite.name}.search").removeprefix(".")
    return f"{arm}: " if arm else ""


def search_summary(study: Any) -> str:
    """The search's trials by status (the suite's own runs may be all the rest of the report shows), and
    what a multi-objective search ranks by."""
    from bench.codec import trial_status

    trials = [t for t in study.get_trials(deepcopy=False) if trial_status(t).value != "running"]
    rows = [{"status": trial_status(t).value, "status_step": t.user_attrs.get("status_step")} for t in trials]
    text = status_counts(pd.DataFrame(rows, columns=["status", "status_step"]), "trials") + "."
    objectives = study.user_attrs.get("search", {}).get("objectives", [])
    if len(objectives) > 1:
        text += (f" A Pareto front of {', '.join(objectives)}, never pruned (Optuna prunes single-objective"
                 f" studies only); where the search's trials are the report's runs, they are ranked by"
                 f" {objectives[0]}.")  # fmt: skip
    return text


def outcome(row: pd.Series) -> str:
    """An arm's runs by status, e.g. '2 complete, 1 pruned'."""
    from bench.stats import STATUSES

    return ", ".join(f"{row[s]} {s.replace('_', ' ')}" for s in STATUSES if row.get(s, 0))


def no_interval_text(row: pd.Series) -> str:
    """Why an arm has no interval: diverged runs (an infinite loss has none), too few seeds run, or too
    few of them finished."""
    from bench.stats import STATUSES

    ran = sum(int(row.get(s, 0)) for s in STATUSES)
    if row.get("diverged", 0):
        return f"none: {row['diverged']} of {ran} seeds diverged"
    return f"{row['n']} of {ran} seeds finished" if ran >= MIN_SEEDS_FOR_CI else "too few seeds"


def leaderboard_html(table: pd.DataFrame, floor: float | None, tuned: dict[str, str] | None = None) -> str:
    shown = pd.DataFrame({
        "Rank": table["rank"],
        "Arm": table["arm"],
        "Mean": table["mean"].where(np.isfinite(table["mean"])),
        "Runs": [outcome(row) for _, row in table.iterrows()],
        "95% CI": [f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]" if not math.isnan(row["ci_low"])
                   else no_interval_text(row) for _, row in table.iterrows()],
        "Gap to best": table["gap"].where(np.isfinite(table["gap"])),
        "Seeds": table["n"],
    })  # fmt: skip
    if tuned is not None:
        shown.insert(2, "Best setting", [tuned.get(arm, "") for arm in table["arm"]])
    if floor is not None:
        shown["Above floor"] = shown["Mean"] - floor
    styler = (
        shown.style.set_uuid("leaderboard")
        .hide(axis="index")
        .format({"Mean": "{:.4f}", "Gap to best": "{:+.4f}", "Above floor": "{:.4f}"}, na_rep="–", escape="html")
    )
    if shown["Mean"].notna().any():  # (a gradient over no number at all warns and colours nothing)
        styler = styler.background_gradient(subset=["Mean"], cmap="RdYlGn_r").highlight_min(
            subset=["Mean"], props="font-weight: 700; outline: 2px solid #2f7d32;"
        )
    # an arm without a mean gets a quiet cell, not the gradient's black; applied last, so it wins
    styler = styler.highlight_null(subset=["Mean"], props="background-color: #eef0f2; color: #5b6b7b;")
    return styler.to_html()


def answer(table: pd.DataFrame, metric: str) -> str:
    best = table.iloc[0]
    if not np.isfinite(best["mean"]):
        return f"No arm has a {metric} to rank: every run diverged, failed, was pruned or was interrupted."
    tied = table[(table["rank"] == 1) & (table["arm"] != best["arm"])]["arm"].tolist()
    text = f"Best: {best['arm']}, mean {metric} {_fmt(best['mean'])}"
    if not math.isnan(best["ci_low"]):
        text += f" (95% CI [{_fmt(best['ci_low'])}, {_fmt(best['ci_high'])}])"
    if tied:
        more = " ..." if len(tied) > 5 else ""
        text += f"; statistically tied with {len(tied)} other arm(s): " + ", ".join(tied[:5]) + more
    elif len(table) > 1 and not math.isnan(best["ci_low"]):
        text += "; ahead of every other arm beyond its interval"
    return text + "."


def comparisons_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p class='note'>Only one arm: nothing to compare.</p>"
    few = table[table["pairs"] < MIN_SEEDS_FOR_CI]
    note = ""
    if len(few):
        # MIN_SEEDS_FOR_CI in bench.stats carries the measurement behind the threshold
        have = ", ".join(str(n) for n in sorted(set(few["pairs"])))
        note = (f"<p class='note'>No p-value, effect size or significance mark where an arm shares fewer than "
                f"{MIN_SEEDS_FOR_CI} finished seeds with the baseline ({len(few)} arm(s) share {have}): at that "
                f"n a 95% interval is meaningless and a t-test detects a one-sd difference 8% of the time. Paired "
                f"tests need {MIN_SEEDS_FOR_CI} or more seeds that finish (complete or stopped early) in both "
                f"arms; mean differences are shown.</p>")  # fmt: skip
    if len(few) == len(table):
        shown = table.rename(columns={"arm": "Arm", "pairs": "Pairs", "mean_diff": "Mean difference"})
        styler = (
            shown[["Arm", "Pairs", "Mean difference"]].style.set_uuid("comparisons").hide(axis="index")
            .format({"Mean difference": "{:+.4f}"}, na_rep="–", escape="html")
        )  # fmt: skip
        return note + styler.to_html()
    shown = table.rename(columns={"arm": "Arm", "pairs": "Pairs", "mean_diff": "Mean difference", "p": "p",
                                  "p_holm": "p (Holm)", "effect_size": "Effect size d"})  # fmt: skip
    shown = shown[["Arm", "Pairs", "Mean difference", "p", "p (Holm)", "Effect size d"]]
    styler = (
        shown.style.set_uuid("comparisons")
        .hide(axis="index")
        .format(
            {"Mean difference": "{:+.4f}", "p": "{:.3g}", "p (Holm)": "{:.3g}", "Effect size d": "{:+.2f}"},
            na_rep="–",
            escape="html",
        )  # fmt: skip
        .map(lambda v: "font-weight: 700" if isinstance(v, float) and v < 0.05 else "", subset=["p (Holm)"])
    )
    return note + styler.to_html()


def curve_arms(table: pd.DataFrame, baseline: str) -> dict[str, str]:
    finite = table[np.isfinite(table["mean"])]
    arms = {"best": table["arm"].iloc[0]}
    if baseline not in arms.values():
        arms["baseline"] = baseline
    if len(finite) and finite["arm"].iloc[-1] not in arms.values():
        arms["worst"] = finite["arm"].iloc[-1]
    return arms


def target_context(frame: pd.DataFrame) -> dict[str, Any]:
    from markupsafe import Markup

    from bench.report import figures

    times = frame.pivot_table(index="seed", columns="arm", values="target_time", aggfunc="first", sort=False)
    # every seed and arm, even where no run reached the target (pivot_table drops what is all missing)
    times = times.reindex(index=sorted(frame["seed"].unique()), columns=list(dict.fromkeys(frame["arm"])))
    times = times.astype(float).fillna(np.inf)
    taus = np.linspace(1.0, 4.0, 301)
    rho, scores = performance_profile(times, taus)
    summary = pd.DataFrame({
        "Arm": times.columns,
        "Reached": [f"{int(np.isfinite(times[a]).sum())}/{len(times)}" for a in times.columns],
        "Median seconds": [float(np.median(times[a])) for a in times.columns],
        "Median tokens": [float(np.median(frame[frame.arm == a]["target_tokens"].astype(float).fillna(np.inf)))
                          for a in times.columns],
        "Profile score": [scores[a] for a in times.columns],
    }).sort_values("Profile score", ascending=False, kind="stable")  # fmt: skip
    styler = (
        summary.style.set_uuid("target")
        .hide(axis="index")
        .format(
            {"Median seconds": "{:.2f}", "Median tokens": "{:,.0f}", "Profile score": "{:.3f}"},
            na_rep="–",
            escape="html",
        )  # fmt: skip
    )
    html = styler.to_html().replace(">inf<", ">missed<")
    if not np.isfinite(times.to_numpy()).any():
        return {"target_table": Markup(html), "time_to_target": None}
    return {
        "target_table": Markup(html),
        "time_to_target": figures.to_target(frame, "target_time", "training seconds to target"),
        "tokens_to_target": figures.to_target(frame, "target_tokens", "tokens to target"),
        "profile": figures.profile(rho, scores),
    }


def kernels_context(frame: pd.DataFrame) -> dict[str, Any]:
    from markupsafe import Markup

    from bench.checkpoint import kernels_to_read
    from bench.roofline import kernel_roofline, runs_roofline

    path = kernels_to_read()
    if not path.is_file():
        return {"kernels": None, "roofline": [runs_roofline(frame, None)]}
    data = json.loads(path.read_text())
    rows = []
    for b in sorted(data.get("benchmarks", []), key=lambda b: (b.get("group") or "", b["name"])):
        extra = b.get("extra_info", {})
        rows.append({
            "Kernel": b.get("group") or "",
            "Case": b["name"].split("[", 1)[-1].rstrip("]"),
            "Median (us)": b["stats"]["median"] * 1e6,
            "GFLOP/s": extra.get("gflops_per_s"),
            "GB/s": extra.get("gb_per_s"),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    styler = (
        table.style.set_uuid("kernels").hide(axis="index")
        .format({"Median (us)": "{:.1f}", "GFLOP/s": "{:.1f}", "GB/s": "{:.1f}"}, na_rep="–", escape="html")
    )  # fmt: skip
    info = data.get("machine_info", {})
    machine = f"torch {info.get('torch')}, {info.get('torch_threads')} threads, {info.get('cpu_model')}"
    roofline = [runs_roofline(frame, data.get("benchmarks")), *kernel_roofline(data.get("benchmarks", []))]
    return {"kernels": Markup(styler.to_html()), "kernels_source": str(path), "kernels_machine": machine,
            "roofline": roofline}  # fmt: skip


def sample_context(frame: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    """Text from the weights saved when the best run finished (bench.checkpoint); never trains. Where there
    are none, or they cannot be read, the section says so in one line."""
    import torch

    from bench.checkpoint import CheckpointError, load_checkpoint
    from bench.config import RunConfig
    from bench.env import set_threads
    from bench.techniques.corpora import load_corpus

    finished = frame[frame["status"].isin(("complete", "stopped_early"))]
    best_arm = table["arm"].iloc[0]
    runs = finished[finished["arm"] == best_arm]
    if runs.empty:
        return {"sample": None, "sample_note": "The best arm has no finished run to sample from."}
    # the best arm's seeds first; the runner keeps the weights of the best single run, which may be another
    # arm's, so then the best run whose weights were kept
    others = finished[finished["arm"] != best_arm].sort_values("value", na_position="last", kind="stable")
    chosen, model, reason = None, None, ""
    for _, run in [*runs.sort_values("seed").iterrows(), *others.iterrows()]:
        try:
            model = load_checkpoint(run["run_hash"])
        except CheckpointError as e:
            reason = reason or str(e)
            continue
        chosen = run
        break
    if chosen is None:
        return {"sample": None, "sample_note": f"No sample: {reason}."}
    try:
        config = json.loads(chosen["config"]) if isinstance(chosen["config"], str) else chosen["config"]
        corpus = load_corpus(RunConfig.from_dict(config).data)
    except Exception as e:  # noqa: BLE001 -- a corpus moved away since the run: say so, don't fail the report
        return {"sample": None, "sample_note": f"No sample: the run's corpus cannot be read ({e})."}
    threads = torch.get_num_threads()
    set_threads(1)  # decoding one token at a time is latency-bound: on a busy machine 2 threads took 4x longer
    try:
        out = model.generate(torch.tensor([[0]]), SAMPLE_CHARS, method="sample", temperature=0.8, top_k=40,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    finally:
        set_threads(threads)
    note = f"{chosen['arm']}, seed {chosen['seed']}: {SAMPLE_CHARS} tokens, temperature 0.8, top-k 40."
    if chosen["arm"] != best_arm:
        note += " (the best single run whose weights were kept; none of the best arm's runs kept theirs)"
    return {"sample": corpus.decode(out[0, 1:].tolist()), "sample_note": note}
