"""The HTML report of a suite: one self-contained file (styles and figures inline, no network).

`build_report(suite)` reads the suite's runs from the store, draws its conclusions (bench.conclusions: every
headline, interval and verdict, as data) and renders them with template.html.j2 (jinja2, autoescaped: every
user-supplied string is shown as text); it writes the conclusions beside the HTML as JSON. The report
computes no verdict of its own: tables and sentences come from the conclusions, figures from the runs. The
same results give the same bytes: fixed table ids, no timestamps in figures.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import faults
from bench.conclusions import MIN_SEEDS_FOR_CI, baseline_arm, conclude, dumps, judged_runs
from bench.config import nested
from bench.files import atomic_path
from bench.labels import label
from bench.registry import ConfigError
from bench.results import suite_results
from bench.stats import performance_profile
from bench.suite import Suite

__all__ = ["SECTIONS", "baseline_arm", "build_report", "conclusions_path", "default_report_path", "render"]

SECTIONS = [
    ("leaderboard", "Leaderboard"),
    ("comparisons", "Paired comparisons"),
    ("speedup", "Speedup"),
    ("sensitivity", "Learning rate"),
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


def conclusions_path(report: str | Path) -> Path:
    """Where a report's conclusions go: beside it, `<name>.json`."""
    report = Path(report)
    beside = report.with_suffix(".json")
    return beside if beside != report else report.with_name(report.name + ".conclusions.json")


def report_inputs(suite: Suite, storage: str | None) -> tuple[pd.DataFrame, list[Any], str, int]:
    """The runs a report is about, the suite's search studies, the design they follow and how many stored
    runs the suite file no longer implies. A suite that was only searched: its trials are the runs."""
    from bench.store import load_results

    frame = suite_results(suite, storage)
    left_out = frame.attrs["left_out"]
    studies = search_studies(suite, storage)
    design = suite.design
    if frame.empty and studies:
        frame = pd.concat([load_results(s.study_name, storage) for s in studies], ignore_index=True)
        frame = frame[frame["status"] != "running"].reset_index(drop=True)
        design = "search"
    if frame.empty:
        hint = f"`optbench run {suite.source or suite.name}` first"
        raise ConfigError("", f"no results for suite '{suite.name}' yet: {hint}")
    return frame, studies, design, left_out


def build_report(
    suite: Suite,
    storage: str | None = None,
    out: str | Path | None = None,
    sample: bool = True,
    json_out: str | Path | None = None,
    confirm_seeds: list[int] | None = None,
) -> Path:
    """Writes the HTML report and its conclusions beside it (`<name>.json`), and to `json_out` when given;
    each file atomically. Returns the HTML's path."""
    frame, studies, design, left_out = report_inputs(suite, storage)
    conclusions = conclude(suite, frame, design=design, studies=studies, confirm_seeds=confirm_seeds,
                           left_out=left_out)  # fmt: skip
    html = render(suite, frame, sample=sample, search_studies=studies, left_out=left_out, design=design,
                  conclusions=conclusions, confirm_seeds=confirm_seeds)  # fmt: skip
    path = Path(out) if out else default_report_path(suite)
    text = dumps(conclusions)
    for target in dict.fromkeys([conclusions_path(path), *([Path(json_out)] if json_out else [])]):
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        faults.stream(f, "report").write(html.encode("utf-8"))
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
    conclusions: dict[str, Any] | None = None,
    confirm_seeds: list[int] | None = None,
) -> str:
    """The report's HTML: the conclusions' sentences and tables as they are, figures from the runs."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    from bench.conclusions import confirming_mask
    from bench.report import figures

    frame = frame.copy()
    frame["value"] = frame["value"].astype(float)
    design = design or suite.design
    c = conclusions or conclude(suite, frame, design=design, studies=search_studies or [],
                                confirm_seeds=confirm_seeds, left_out=left_out)  # fmt: skip
    tuned = c["tuning"] is not None
    ranked_frame = judged_runs(suite, frame, confirming_mask(frame, confirm_seeds))[0] if tuned else frame
    # in a suite that tunes, every arm at its chosen setting on the seeds that judge it: the grids the protocol
    # grew differ from arm to arm, so averaging over them would weigh each arm by the rates it happened to try
    effect_frame = ranked_frame if tuned else frame
    views = axis_views(suite, effect_frame, design)
    if tuned:
        views = {a: v for a, v in views.items() if a not in suite.tune}
    axes = list(views)
    floor = _first(frame.get("loss_floor"))
    metric = suite.metric
    best = c["arms"][0] if c["arms"] else None

    pairs = figures.axis_pairs(axes) if design == "grid" else []
    heat_scale = shared_scale([figures.interaction_table(effect_frame, a, b) for a, b in pairs])
    context: dict[str, Any] = {
        "suite": suite,
        "metric": metric,
        "sections": SECTIONS,
        "header": header(frame),
        "left_out": left_out,
        "tuned": tuned,
        "min_seeds": MIN_SEEDS_FOR_CI,
        "too_few": any(a["ci"] is None for a in c["arms"]),
        "leaderboard": Markup(leaderboard_html(c["arms"], floor, tuned)),
        "tuning_added": tuning_added(c["arms"]),
        "headline": c["headline"],
        "baseline": c["baseline"],
        "comparisons": c["comparisons"],
        "comparisons_table": Markup(comparisons_html(c["comparisons"])),
        "design": design_text(design, search_studies[0] if search_studies else None),
        "is_search": design == "search",
        "effects": [(a, figures.main_effect(views[a], a, metric, floor, design)) for a in axes],
        "interactions": [(a, b, figures.interaction(effect_frame, a, b, metric, heat_scale)) for a, b in pairs],
        "interactions_note": INTERACTIONS_NOTE.get(design, "Interactions need two or more axes."),
        "curves": figures.curves(ranked_frame, curve_arms(c), floor),
        "all_curves": {
            x: figures.all_curves(ranked_frame, [a["arm"] for a in c["arms"]], x, floor) for x in ("step", "tokens")
        },
        "stability": figures.stability(views),
        "status_counts": status_counts(frame),
        "floor": floor,
        "best_gap_to_floor": (best["mean"] - floor)
        if floor is not None and best and best["mean"] is not None
        else None,
        "target": suite.target,
        "timing": c["timing"],
        "search": [
            (f"{arm_of(study, suite)}{title}", image)
            for study, found in zip(search_studies or [], c["search"], strict=True)
            for title, image in figures.search_figures(study, found["importances"])
        ],
        "search_findings": [
            (arm_of(study, suite), search_summary(study), found)
            for study, found in zip(search_studies or [], c["search"], strict=True)
        ],  # fmt: skip
    }
    if suite.target is not None and c["timing"] is not None:
        context.update(target_context(ranked_frame, c["timing"]))
    context.update(speedup_context(c["speedup"]))
    context.update(sensitivity_context(c["lr_sensitivity"]))
    context.update(kernels_context(frame))
    no_sample = {"sample": None, "sample_note": "Sampling was turned off (--no-sample)."}
    context.update(sample_context(ranked_frame, best["arm"]) if sample and best else no_sample)
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


def runs_text(runs: dict[str, int]) -> str:
    """An arm's runs by status, e.g. '2 complete, 1 pruned'."""
    return ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in runs.items() if n)


def seeds_cell(arm: dict[str, Any]) -> str:
    """Which seeds an arm is judged on, and for a tuned arm which chose its setting."""
    from bench.conclusions import seeds_text

    if arm["judged_on"] == "confirming":
        return f"confirming {seeds_text(arm['confirming_seeds'])}; chosen on {seeds_text(arm['tuning_seeds'])}"
    if arm["judged_on"] == "tuning":
        return f"{seeds_text(arm['seeds'])}, which also chose"
    return str(arm["n"])


def tuning_added(arms: list[dict[str, Any]]) -> list[str]:
    """What the protocol added, one line per set of arms that got the same additions (a tuned ablation
    usually adds the same values to every arm's grid)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for arm in arms:
        texts = tuple(x["text"] for x in arm["tuning_added"])
        if texts:
            groups.setdefault(texts, []).append(arm["arm"])
    return [f"{', '.join(names)}: {'; '.join(texts)}" for texts, names in groups.items()]


def leaderboard_html(arms: list[dict[str, Any]], floor: float | None, tuned: bool = False) -> str:
    """The conclusions' arms as a table, in their order (by rank, then mean)."""
    from bench.conclusions import fmt

    shown = pd.DataFrame({
        "Rank": [a["rank"] for a in arms],
        "Arm": [a["arm"] for a in arms],
        "Mean": [a["mean"] if a["mean"] is not None else math.nan for a in arms],
        "Runs": [runs_text(a["runs"]) for a in arms],
        "95% CI": [f"[{fmt(a['ci'][0])}, {fmt(a['ci'][1])}]" if a["ci"] else a["no_interval"] for a in arms],
        "Gap to best": [a["gap"] if a["gap"] is not None else math.nan for a in arms],
        "Seeds": [seeds_cell(a) for a in arms],
    })  # fmt: skip
    if tuned:
        shown.insert(2, "Best setting", [a["tuned_setting"] or "" for a in arms])
        if any(a["edge_flags"] for a in arms):
            shown["Flags"] = ["; ".join(f["text"] for f in a["edge_flags"]) for a in arms]
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
    styler = styler.map(lambda v: "white-space: nowrap", subset=["95% CI"])
    if "Flags" in shown:
        styler = styler.map(lambda v: "color: #9a3412; text-align: left" if v else "", subset=["Flags"])
    # an arm without a mean gets a quiet cell, not the gradient's black; applied last, so it wins
    styler = styler.highlight_null(subset=["Mean"], props="background-color: #eef0f2; color: #5b6b7b;")
    return styler.to_html()


def comparisons_html(comparisons: dict[str, Any]) -> str:
    """The conclusions' paired comparisons as a table; a search says why it has none."""
    if comparisons["withheld"]:
        return ""
    rows = comparisons["rows"]
    if not rows:
        return "<p class='note'>Only one arm: nothing to compare.</p>"
    few = [r for r in rows if r["pairs"] < MIN_SEEDS_FOR_CI]
    note = ""
    if few:
        # MIN_SEEDS_FOR_CI in bench.stats carries the measurement behind the threshold
        have = ", ".join(str(n) for n in sorted({r["pairs"] for r in few}))
        note = (f"<p class='note'>No p-value, effect size or verdict where an arm shares fewer than "
                f"{MIN_SEEDS_FOR_CI} finished seeds with the baseline ({len(few)} arm(s) share {have}): at that "
                f"n a 95% interval is meaningless and a t-test detects a one-sd difference 8% of the time. Paired "
                f"tests need {MIN_SEEDS_FOR_CI} or more seeds that finish (complete or stopped early) in both "
                f"arms; mean differences are shown.</p>")  # fmt: skip

    def interval(ci: list[float | None] | None, digits: int, sign: bool = True) -> str:
        from bench.conclusions import fmt

        return f"[{fmt(ci[0], digits, sign)}, {fmt(ci[1], digits, sign)}]" if ci else "–"

    if len(few) == len(rows):
        shown = pd.DataFrame({"Arm": [r["arm"] for r in rows], "Pairs": [r["pairs"] for r in rows],
                              "Mean difference": [r["mean_diff"] for r in rows]})  # fmt: skip
        styler = (
            shown.style.set_uuid("comparisons").hide(axis="index")
            .format({"Mean difference": "{:+.4f}"}, na_rep="–", escape="html")
        )  # fmt: skip
        return note + styler.to_html()
    shown = pd.DataFrame({
        "Arm": [r["arm"] for r in rows],
        "Pairs": [r["pairs"] for r in rows],
        "Mean difference": [r["mean_diff"] for r in rows],
        "95% CI": [interval(r["diff_ci"], 4) for r in rows],
        "p": [r["p"] for r in rows],
        "p (Holm)": [r["p_holm"] for r in rows],
        "Verdict": [r["verdict"] for r in rows],
        "Effect size d [95% CI]": [f"{r['effect_size']:+.2f} {interval(r['effect_size_ci'], 2)}"
                                   if r["effect_size"] is not None else "–" for r in rows],
    })  # fmt: skip
    styler = (
        shown.style.set_uuid("comparisons")
        .hide(axis="index")
        .format({"Mean difference": "{:+.4f}", "p": "{:.3g}", "p (Holm)": "{:.3g}"}, na_rep="–", escape="html")
        .map(lambda v: "font-weight: 700" if v in ("better", "worse") else "", subset=["Verdict"])
    )
    return note + styler.to_html()


def curve_arms(c: dict[str, Any]) -> dict[str, str]:
    """The arms whose loss curves are drawn: the best, the baseline and the worst with a finite mean."""
    arms = c["arms"]
    if not arms:
        return {}
    out = {"best": arms[0]["arm"]}
    rows = {r["arm"]: r for r in c["comparisons"]["rows"]}
    # where the baseline names several arms: the one the best arm was compared with
    baseline = rows[arms[0]["arm"]]["baseline"] if arms[0]["arm"] in rows else c["baseline"]
    if baseline and baseline in {a["arm"] for a in arms} and baseline not in out.values():
        out["baseline"] = baseline
    finite = [a for a in arms if a["mean"] is not None]
    if finite and finite[-1]["arm"] not in out.values():
        out["worst"] = finite[-1]["arm"]
    return out


def speedup_context(sp: dict[str, Any] | None) -> dict[str, Any]:
    """The conclusions' speedups as tables and figures (every number from the conclusions)."""
    from markupsafe import Markup

    from bench.conclusions import fmt, times_text, tokens_text
    from bench.report import figures

    if sp is None:
        return {"speedup": None}
    fits = pd.DataFrame({
        "Size (parameters)": [f"{f['size']:,}" for f in sp["fits"]],
        "Form": [f["form"] for f in sp["fits"]],
        "E": [fmt(f["E"]) for f in sp["fits"]],
        "B": [fmt(f["B"]) for f in sp["fits"]],
        "beta": [fmt(f["beta"], 3) for f in sp["fits"]],
        "d_ref (tokens)": [tokens_text(f["d_ref"]) for f in sp["fits"]],
        "Budgets (tokens)": [", ".join(tokens_text(t) for t in f["budgets"]) for f in sp["fits"]],
        "Seed noise sd (df)": [f"{fmt(f['noise_sd'])} ({f['noise_df']})" if f["noise_df"] else "–" for f in sp["fits"]],
        "Refits on a bound": [f"{f['draws_at_bound']:.0%}" if f["draws_at_bound"] is not None else "–"
                              for f in sp["fits"]],
    })  # fmt: skip
    entries = sp["entries"]

    def note(e: dict[str, Any]) -> str:
        parts = []
        if e["status"] == "below floor":
            parts.append("below the baseline's fitted floor: no speedup")
        elif e["status"] == "no fit":
            parts.append("no fit at this size")
        elif e["status"] == "diverged":
            parts.append("a seed diverged")
        if e["extrapolated"] == "beyond":
            parts.append("extrapolated beyond the baseline's largest budget")
        elif e["extrapolated"] == "below":
            parts.append("extrapolated below the baseline's smallest budget")
        elif e["interval_extrapolates"]:
            parts.append("interval reaches past the baseline's budgets")
        if e["untrusted_why"]:
            parts.append(f"interval not to be trusted: {e['untrusted_why']}")
        return "; ".join(parts)

    def ci(e: dict[str, Any]) -> str:
        if e["ci"] is None:
            return "–" if e["speedup"] is None else "no interval"
        return f"[{times_text(e['ci'][0])}, {times_text(e['ci'][1])}]"

    table = pd.DataFrame({
        "Size": [f"{e['size']:,}" for e in entries],
        "Arm": [e["method"] for e in entries],
        "Tokens": [tokens_text(e["tokens"]) for e in entries],
        "Tokens per parameter": [f"{e['tokens_per_param']:.1f}" for e in entries],
        "Setting": [e["tuned_setting"] or "" for e in entries],
        "Mean loss": [fmt(e["mean"]) for e in entries],
        "Baseline's tokens to reach it": [tokens_text(e["d_base"]) for e in entries],
        "Speedup": [times_text(e["speedup"]) if e["speedup"] is not None else "–" for e in entries],
        "95% interval": [ci(e) for e in entries],
        "Note": [note(e) for e in entries],
    })  # fmt: skip
    styler = lambda t, uid: (t.style.set_uuid(uid).hide(axis="index")  # noqa: E731
                             .map(lambda v: "white-space: nowrap", subset=[c for c in t.columns
                                                                           if c in ("95% interval", "Tokens")])
                             .map(lambda v: "text-align: left; color: #9a3412" if v else "",
                                  subset=[c for c in t.columns if c == "Note"]))  # fmt: skip
    return {
        "speedup": sp,
        "speedup_fits_table": Markup(styler(fits, "fits").to_html()),
        "speedup_table": Markup(styler(table, "speedup").to_html()) if entries else None,
        "speedup_fits": figures.speedup_fits(sp) if sp["fits"] else None,
        "speedup_chart": figures.speedup_chart(sp) if any(e["speedup"] is not None for e in entries) else None,
        "speedup_trends": figures.speedup_trends(sp),
        "scaling_losses": figures.scaling_losses(sp),
        "rank_chart": figures.rank_chart(sp),
    }


def sensitivity_context(lr: dict[str, Any] | None) -> dict[str, Any]:
    """The conclusions' loss against learning rate and each arm's range of good rates."""
    from markupsafe import Markup

    from bench.conclusions import fmt
    from bench.report import figures

    if lr is None:
        return {"lr": None}
    arms = lr["arms"]
    table = pd.DataFrame({
        "Arm": [a["arm"] for a in arms],
        "Rates tried": [len(a["points"]) for a in arms],
        "Best rate": [label(a["best_lr"]) if a["best_lr"] is not None else "–" for a in arms],
        "Best mean": [fmt(a["best_mean"]) for a in arms],
        f"Rates within {lr['tolerance']:.0%}": [f"{label(a['low'])} to {label(a['high'])}" if a["low"] is not None
                                               else "–" for a in arms],
        "Width (decades)": [("at least " if a["open_low"] or a["open_high"] else "") + f"{a['width_decades']:.2f}"
                            if a["width_decades"] is not None else "–" for a in arms],
    })  # fmt: skip
    styler = table.style.set_uuid("robustness").hide(axis="index")
    return {"lr": lr, "robustness_table": Markup(styler.to_html()), "lr_figure": figures.lr_sensitivity(lr),
            "robustness_figure": figures.lr_robustness(lr)}  # fmt: skip


def target_context(frame: pd.DataFrame, timing: dict[str, Any]) -> dict[str, Any]:
    """The conclusions' time, tokens and steps to target as a table, with the per-seed figures and the
    performance profile (time-based: marked as noise where the conclusions say the time ranking is)."""
    from markupsafe import Markup

    from bench.conclusions import fmt
    from bench.report import figures

    def spread(stats: dict[str, Any], digits: int, thousands: bool = False) -> str:
        if stats["median"] is None:
            return "–"
        f = (lambda x: f"{x:,.0f}") if thousands else (lambda x: fmt(x, digits))
        if stats["min"] == stats["max"]:
            return f(stats["median"])
        return f"{f(stats['median'])} ({f(stats['min'])}-{f(stats['max'])})"

    rows = timing["arms"]
    noise = timing["time_ranking"] == "noise"
    mark = {"noise": " (noise here)", "untestable": " (not judged)"}.get(timing["time_ranking"], "")
    shown = pd.DataFrame({
        "Arm": [r["arm"] for r in rows],
        "Reached": [f"{r['reached']}/{r['of']}" for r in rows],
        "Tokens: median (range)": [spread(r["tokens"], 0, thousands=True) for r in rows],
        "Steps: median": [fmt(r["steps"]["median"], 0) for r in rows],
        "Seconds: median (range over seeds)": [spread(r["time"], 2) for r in rows],
        "Time against the fastest": [r["time_verdict"] for r in rows],
        "Profile score": [r["profile_score"] for r in rows],
    })  # fmt: skip
    if mark:  # the time columns follow the tokens: they are noise here, or nothing says they are not
        shown = shown.rename(columns={"Seconds: median (range over seeds)": f"Seconds{mark}",
                                      "Profile score": f"Profile score{mark}"})  # fmt: skip
    styler = (
        shown.style.set_uuid("target")
        .hide(axis="index")
        .format({c: "{:.3f}" for c in shown.columns if c.startswith("Profile")}, na_rep="–", escape="html")
        .map(lambda v: "white-space: nowrap", subset=[c for c in shown.columns if c.startswith("Seconds")])
    )  # fmt: skip
    html = styler.to_html()
    if not any(r["reached"] for r in rows):
        return {"target_table": Markup(html), "time_to_target": None}
    arms = [r["arm"] for r in rows]
    counted = frame[~frame["status"].isin(("pruned", "interrupted", "running"))]
    times = counted.pivot_table(index="seed", columns="arm", values="target_time", aggfunc="first", sort=False)
    times = times.reindex(index=sorted(frame["seed"].unique()), columns=arms).astype(float)
    ran = counted.pivot_table(index="seed", columns="arm", values="status", aggfunc="first", sort=False)
    ran = ran.reindex(index=times.index, columns=arms).notna()
    times = times.where(~(ran & times.isna()), np.inf)  # ran and never reached: a miss; not run: no workload
    out = {
        "target_table": Markup(html),
        "time_to_target": figures.to_target(counted, "target_time", "training seconds to target"),
        "tokens_to_target": figures.to_target(counted, "target_tokens", "tokens to target"),
        "profile": None,
    }
    if len(times) > 1:  # a profile over one seed is each arm's ratio on that seed: the table says it
        rho, _ = performance_profile(times, np.linspace(1.0, 4.0, 301))
        scores = pd.Series({r["arm"]: r["profile_score"] if r["profile_score"] is not None else 0.0 for r in rows})
        out["profile"] = figures.profile(rho, scores, noise=noise)
    return out


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


def sample_context(frame: pd.DataFrame, best_arm: str) -> dict[str, Any]:
    """Text from the weights saved when the best run finished (bench.checkpoint); never trains. Where there
    are none, or they cannot be read, the section says so in one line."""
    import torch

    from bench.checkpoint import CheckpointError, load_checkpoint
    from bench.config import RunConfig
    from bench.env import set_threads
    from bench.techniques.corpora import load_corpus

    finished = frame[frame["status"].isin(("complete", "stopped_early"))]
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
