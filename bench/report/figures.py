"""Report figures: seaborn on matplotlib Figures (no pyplot state), encoded as inline PNG.

Every interval drawn is the leaderboard's: the 95% Student-t interval over seeds (bench.stats.mean_ci),
never seaborn's percentile bootstrap, which at 3 seeds spans about the min-max of the values and covered
the true mean 75% of the time. Figures that draw something else say what in their caption. PNGs are
byte-stable: no Software tag, fixed sizes and DPI. Optuna's matplotlib plots switch matplotlib to its
ggplot style as they draw: they are drawn inside an rc context with that switch held off (optuna_style),
so they keep the report's theme and leave nothing behind for the figures after them.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import math
from collections.abc import Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

DPI = 96
SEED_BAND = ("pi", 100)  # loss curves: the band spans every seed, min to max
# The report's page is 1100 px wide less its padding; a figure wider than this is scaled down by the
# browser, and its text with it. Tick labels must stay at least MIN_LABEL_PX tall at the page's width.
PAGE_PX = 1052
MIN_LABEL_PX = 9
THEME = {"style": "whitegrid", "context": "notebook"}
sns.set_theme(**THEME)
# Labels are user text (axis names, values, paths): "$...$" in one must print as written, not go to
# mathtext's parser, which raises on an unknown command such as $\nosuchcmd$.
matplotlib.rcParams["text.parse_math"] = False


def t_interval(values: pd.Series) -> tuple[float, float]:
    """The leaderboard's interval (bench.stats.mean_ci), as seaborn's errorbar callable."""
    from bench.stats import mean_ci

    return mean_ci(values.to_numpy(dtype=float))


def per_seed_means(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """One value per (axis value, seed): the seed's mean over the runs at that value (the other axes'
    values). Their mean over seeds is the axis value's mean; their spread, the seeds' noise alone."""
    data = finite(frame)
    return data.groupby([column, "seed"], sort=False, observed=True)["value"].mean().reset_index()


def png(fig: Figure) -> str:
    """A data: URI of the figure as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def short_labels(arms: list[str]) -> dict[str, str]:
    """arm label -> only the settings that differ between the arms ('optimizer=lion, optimizer.lr=0.001' among
    arms that all share the learning rate -> 'optimizer=lion'). Labels that are not key=value lists stay."""
    parts = {arm: dict(p.split("=", 1) for p in arm.split(", ") if "=" in p) for arm in arms}
    keys = list(dict.fromkeys(k for d in parts.values() for k in d))
    varying = [k for k in keys if len({d.get(k) for d in parts.values()}) > 1]
    out = {}
    for arm, d in parts.items():
        short = ", ".join(f"{k}={d[k]}" for k in varying if k in d)
        out[arm] = short or arm
    return out if len(set(out.values())) == len(out) else {a: a for a in arms}


def compact_label(arm: str, width: int = 70) -> str:
    """A search trial's settings without their dotted prefixes ('optimizer.name=lion, optimizer.lion.lr=1e-4'
    -> 'lion, lr=1e-4'), cut to `width` characters."""
    parts = []
    for part in arm.split(", "):
        key, sep, value = part.partition("=")
        if not sep:
            parts.append(part)
        elif key.endswith(".name"):
            parts.append(value)
        else:
            parts.append(f"{key.split('.')[-1] if key.count('.') == 2 else key}={value}")
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def display_labels(arms: list[str], width: int = 64) -> dict[str, str]:
    """arm label -> a label that fits a figure: the settings that differ (short_labels), without dotted
    prefixes, cut to `width` characters; labels cut alike get ' #2', ' #3' so no two arms merge."""
    short = short_labels(arms)
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for arm in arms:
        label = compact_label(short[arm], width)
        seen[label] = seen.get(label, 0) + 1
        out[arm] = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return out


def outside_legend(ax: Any, **kwargs: Any) -> None:
    """The legend to the right of the axes, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def finite(frame: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    return frame[np.isfinite(frame[column].astype(float))]


def level_order(labels: pd.Series) -> list[str]:
    """An axis's values as the plots list them: by number where every one is a number (an ablation's base
    value, marked '(base)', in its place among them), else in the order the suite file gives them."""
    order = list(dict.fromkeys(labels))

    def number(text: str) -> float | None:
        try:
            return float(str(text).removesuffix(" (base)"))
        except ValueError:
            return None

    numbers = [number(o) for o in order]
    if any(n is None or math.isnan(n) for n in numbers):
        return order
    return [o for _, o in sorted(zip(numbers, order, strict=True), key=lambda no: no[0])]


def main_effect(frame: pd.DataFrame, axis: str, metric: str, floor: float | None, design: str = "grid") -> str:
    """Mean metric per value of one axis. Suites: the mean over seeds of each seed's average over the other
    axes' values, with the 95% Student-t interval over those per-seed means (none below 3 seeds). A search:
    each trial's value and their mean, no interval (a search's trials are not replicates)."""
    column = f"arm.{axis}"
    order = level_order(frame[column])
    search = design == "search"
    data = finite(frame) if search else per_seed_means(frame, column)
    many = len(order) > 8 or max(len(str(o)) for o in order) > 14  # long or many labels: values down the side
    value_axis, level_axis = ("x", "y") if many else ("y", "x")
    if many:
        fig = Figure(figsize=(7, 0.3 * len(order) + 1.2))
    else:
        fig = Figure(figsize=(max(4.0, 0.9 * len(order) + 2), 3.2))
    ax = fig.subplots()
    where = {level_axis: column, value_axis: "value"}
    if search:
        sns.stripplot(data=data, order=order, ax=ax, color="#9db7d5", size=4, jitter=0.15, **where)
    sns.pointplot(data=data, order=order, errorbar=None if search else t_interval, ax=ax, linestyle="none",
                  capsize=0.3 if many else 0.15, color="#1f5fa8", markersize=4 if many else 6, **where)  # fmt: skip
    (ax.set_ylabel if many else ax.set_xlabel)(axis)
    (ax.set_xlabel if many else ax.set_ylabel)(metric)
    ax.tick_params(labelsize=10)
    if floor is not None:
        low, high = ax.get_xlim() if many else ax.get_ylim()
        if floor >= low - (high - low):  # near the data: drawn; far below, it would squash the effects flat
            (ax.axvline if many else ax.axhline)(floor, color="#888", linestyle="--", linewidth=1, label="loss floor")
            outside_legend(ax, fontsize=9)
        else:
            ax.set_title(f"loss floor {floor:.4f}: below the axis", fontsize=9, loc="right", color="#5b6b7b")
    return png(fig)


def interaction_table(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    data = finite(frame)
    table = data.pivot_table(index=f"arm.{a}", columns=f"arm.{b}", values="value", aggfunc="mean", sort=False)
    # the axes' values in the main effects' order (by number where they are numbers)
    return table.reindex(index=level_order(table.index.to_series()), columns=level_order(table.columns.to_series()))


def interaction(frame: pd.DataFrame, a: str, b: str, metric: str, scale: tuple[float, float] | None = None) -> str:
    """Mean metric over every pair of values of two axes; `scale` (vmin, vmax) is shared by every heatmap of
    a report, so one colour means one loss throughout."""
    table = interaction_table(frame, a, b)
    fig = Figure(figsize=(max(4.0, 1.1 * table.shape[1] + 2.5), max(2.6, 0.5 * table.shape[0] + 1.5)))
    ax = fig.subplots()
    vmin, vmax = scale if scale is not None else (None, None)
    sns.heatmap(table, annot=True, fmt=".3f", cmap="RdYlGn_r", ax=ax, cbar_kws={"label": metric}, annot_kws={"size": 9},
                vmin=vmin, vmax=vmax)  # fmt: skip
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    ax.tick_params(labelsize=10)
    return png(fig)


def axis_pairs(axes: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(axes, 2))


def curves(frame: pd.DataFrame, arms: dict[str, str], floor: float | None) -> str:
    """Validation loss against steps and against tokens (arms with other batch sizes meet at equal tokens),
    and smoothed training loss, of the chosen arms: mean over seeds, the band from lowest seed to highest.
    The legend sits below the plots, never over a curve."""
    short = display_labels(list(dict.fromkeys(arms.values())), 70)
    val_rows, train_rows = [], []
    for role, arm in arms.items():
        for _, run in frame[frame["arm"] == arm].iterrows():
            c = run.get("curves") or {}
            label = f"{role}: {short[arm]}"
            per_step = tokens_per_step(run)
            val = zip(c.get("val_step", []), c.get("val_loss", []), strict=False)
            val_rows += [{"arm": label, "step": s, "tokens": s * per_step, "loss": v, "seed": run["seed"]}
                         for s, v in val if v is not None]  # fmt: skip
            train = [(s, v) for s, v in zip(c.get("step", []), c.get("train_loss", []), strict=False) if v is not None]
            smooth = _smooth([v for _, v in train])
            train_rows += [{"arm": label, "step": s, "loss": v, "seed": run["seed"]}
                           for (s, _), v in zip(train, smooth, strict=False)]  # fmt: skip
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = ((val_rows, "step", "validation loss by step"), (val_rows, "tokens", "validation loss by tokens"),
              (train_rows, "step", "training loss (smoothed) by step"))  # fmt: skip
    for ax, (rows, x, title) in zip(axes, panels, strict=True):
        if rows:
            sns.lineplot(
                data=pd.DataFrame(rows), x=x, y="loss", hue="arm", errorbar=SEED_BAND, ax=ax, legend=ax is axes[0]
            )
        if floor is not None:
            ax.axhline(floor, color="#888", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=10)
    axes[1].xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, not 150000 run into its neighbours
    axes[1].xaxis.set_major_locator(MaxNLocator(5))
    if axes[0].get_legend() is not None:
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        ncol = min(3, len(labels)) if max(map(len, labels)) <= 40 else 1  # long labels: one per row, not wider
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)
    return png(fig)


def tokens_per_step(run: pd.Series) -> float:
    """Tokens per optimizer step of a stored run (its tokens over its steps)."""
    try:
        return float(run["tokens"]) / float(run["steps"]) if run.get("steps") else 1.0
    except (TypeError, ValueError):
        return 1.0


def _smooth(values: list[float], span: int = 20) -> list[float]:
    if not values:
        return []
    return pd.Series(values, dtype=float).ewm(span=span).mean().tolist()


def to_target(frame: pd.DataFrame, column: str, label: str) -> str:
    """Per arm, the seeds' time (or tokens) to the target; misses drawn at the right edge."""
    short = display_labels(list(dict.fromkeys(frame["arm"])))
    data = frame[["arm", column]].copy()
    data["arm"] = data["arm"].map(short)
    data[column] = data[column].astype(float)
    reached = data[np.isfinite(data[column])]
    order = list(dict.fromkeys(data["arm"]))
    longest = max(map(len, order), default=0)  # long labels take their room from the axes, not the page
    fig = Figure(figsize=(8 if longest <= 40 else 6.5, max(2.5, 0.3 * len(order) + 1)))
    ax = fig.subplots()
    if not reached.empty:
        sns.stripplot(data=reached, y="arm", x=column, order=order, ax=ax, color="#1f5fa8", size=5, jitter=False)
    missed = data[~np.isfinite(data[column])].groupby("arm").size()
    right = reached[column].max() * 1.08 if not reached.empty else 1.0
    for arm, n in missed.items():
        ax.text(right, order.index(arm), f"{n} missed", va="center", fontsize=9, color="#b00")
    ax.set_xlabel(label)
    ax.set_ylabel("")
    ax.tick_params(labelsize=10)
    return png(fig)


PROFILE_LABELLED = 6  # the best arms get a colour and a legend entry; the rest are drawn grey


def profile(rho: pd.DataFrame, scores: pd.Series, noise: bool = False) -> str:
    """AlgoPerf performance profiles: share of seeds on which each arm is within tau of the best. The top
    PROFILE_LABELLED arms are coloured and named, in a legend below the axes (beside them, long labels
    squeezed the axes to a sliver); the others are thin grey lines. `noise`: the conclusions found the
    arms' time differences within the spread of their own seeds, and the title says so."""
    short = display_labels(list(scores.index))
    ranked = list(scores.sort_values(ascending=False, kind="stable").index)
    named = min(PROFILE_LABELLED, len(ranked))
    fig = Figure(figsize=(9, 3.4 + 0.25 * math.ceil((named + (len(ranked) > named)) / 2)), layout="constrained")
    ax = fig.subplots()
    for arm in reversed(ranked[PROFILE_LABELLED:]):
        ax.step(rho.index, rho[arm], where="post", color="#bbbbbb", linewidth=0.8)
    colours = sns.color_palette("tab10", PROFILE_LABELLED)
    for arm, colour in zip(ranked[:PROFILE_LABELLED], colours, strict=False):
        ax.step(rho.index, rho[arm], where="post", label=f"{short[arm]} ({scores[arm]:.2f})",
                linewidth=1.6, color=colour)  # fmt: skip
    if len(ranked) > PROFILE_LABELLED:
        rest = len(ranked) - PROFILE_LABELLED
        ax.plot([], [], color="#bbbbbb", linewidth=0.8, label=f"{rest} other arm{'s' * (rest != 1)}")
    ax.set_xlabel("tau: time / best time on the same seed")
    ax.set_ylabel("share of seeds within tau")
    ax.set_xlim(1, float(rho.index.max()))
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=10)
    if noise:
        ax.set_title("time differences within the spread of each arm's seeds: this ranking is noise", fontsize=10,
                     color="#9a3412", loc="left")  # fmt: skip
    fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return png(fig)


def stability(views: dict[str, pd.DataFrame]) -> str | None:
    """Runs that did not complete (diverged, stopped early, pruned, failed, interrupted) per axis value."""
    from bench.stats import STATUSES

    rows = []
    for axis, frame in views.items():
        for value, group in frame.groupby(f"arm.{axis}", sort=False):
            for status in STATUSES[1:]:
                n = int((group["status"] == status).sum())
                if n:
                    rows.append({"axis value": f"{axis}={value}", "status": status, "runs": n})
    if not rows:
        return None
    data = pd.DataFrame(rows)
    fig = Figure(figsize=(7, max(2.2, 0.3 * data["axis value"].nunique() + 1)))
    ax = fig.subplots()
    sns.barplot(data=data, y="axis value", x="runs", hue="status", ax=ax, errorbar=None)
    ax.tick_params(labelsize=10)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png(fig)


@contextlib.contextmanager
def optuna_style() -> Iterator[None]:
    """Optuna's matplotlib plots call matplotlib.style.use('ggplot') as they draw, which changed every later
    figure of the report: inside, that call does nothing and any other rcParams change is undone on exit."""
    from unittest import mock

    import matplotlib.style

    with matplotlib.rc_context(), mock.patch.object(matplotlib.style, "use", lambda *a, **k: None):
        yield


def importance_figure(values: dict[str, float]) -> str:
    """The conclusions' parameter importances as bars, largest first."""
    data = pd.DataFrame({"parameter": list(values), "importance": list(values.values())})
    data = data.sort_values("importance", ascending=False, kind="stable")
    fig = Figure(figsize=(8, 0.35 * len(data) + 1.2))
    ax = fig.subplots()
    sns.barplot(data=data, y="parameter", x="importance", ax=ax, color="#1f5fa8", errorbar=None)
    ax.set_xlabel("importance (Optuna's PED-ANOVA, normalized to sum to 1)")
    ax.set_ylabel("")
    ax.tick_params(labelsize=10)
    return png(fig)


def search_figures(study: object, importances: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """A search's figures: Optuna's optimization history (or Pareto front), the conclusions' parameter
    importances (none where they were withheld), and Optuna's parallel coordinates of the most important
    parameters (all of them without importances). Each is skipped where Optuna cannot draw it yet."""
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out = []
    if len(study.directions) > 1:
        names = study.user_attrs.get("search", {}).get("objectives") or None
        plots = [("Pareto front", lambda: ovm.plot_pareto_front(study, target_names=names))]
    else:
        ranked = sorted(importances, key=lambda k: -importances[k]) if importances else []
        plots = [("Optimization history", lambda: ovm.plot_optimization_history(study))]
        if importances:
            plots.append(("Parameter importances", None))
        plots.append(("Parallel coordinates" + (" of the most important parameters" if ranked else ""),
                      lambda: ovm.plot_parallel_coordinate(study, params=ranked[:6] or None)))  # fmt: skip
    for title, draw in plots:
        if draw is None:
            out.append((title, importance_figure(importances or {})))
            continue
        with optuna_style():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "experimental" and sparse-regime warnings
                    ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError, KeyError):
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(*((10, 5) if title.startswith("Parallel") else (8, 4)))
            for a in fig.axes:
                a.tick_params(labelsize=10)
                if title.startswith("Parallel"):
                    a.grid(False)  # every parameter's axis drew its own grid across the others
            legend = fig.axes[0].get_legend() if fig.axes else None
            if legend is not None:  # Optuna puts its legend over the data
                sns.move_legend(fig.axes[0], "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
            out.append((title, png(fig)))
            plt.close(fig)
    return out
