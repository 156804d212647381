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
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter  # noqa: E402

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
    arms that all share the learning rate -> 'optimizer=lion'), down to the fields inside a value: those every
    arm shares go ('adamw(weight_decay=0.1)' -> 'adamw'), then the trailing ones those before them already
    tell apart ('{model.n_embd=12, tokens=101280, eval_interval=16}' -> '{model.n_embd=12, tokens=101280}' where
    the budget sets the evaluation interval). Labels that are not key=value lists stay."""
    from bench.suite import label_parts

    parts = {arm: label_parts(arm) for arm in arms}
    if any(v is None for d in parts.values() for v in d.values()):
        return {a: a for a in arms}
    keys = list(dict.fromkeys(k for d in parts.values() for k in d))
    varying = [k for k in keys if len({d.get(k) for d in parts.values()}) > 1]
    inner: dict[tuple[str, str], tuple[str, str, str, dict[str, str | None]]] = {}
    for d in parts.values():
        for k in varying:
            v = d.get(k)
            if v is None or (k, v) in inner:
                continue
            head, opener = (v[:-1].split("(", 1)[0], "(") if v.endswith(")") and "(" in v else ("", "{")
            body = v[len(head) + 1 : -1] if (opener == "(" or (v.startswith("{") and v.endswith("}"))) else None
            fields = label_parts(body) if body else None
            if fields is not None and all(f is not None for f in fields.values()):
                inner[(k, v)] = (head, opener, ")" if opener == "(" else "}", fields)
    dropped: dict[str, set[str]] = {k: set() for k in varying}
    for k in varying:  # fields every arm's value shares
        values = [inner[(k, d[k])][3] for d in parts.values() if (k, d.get(k)) in inner]
        for f in {f for fields in values for f in fields}:
            if len(values) == len(parts) and len({fields.get(f) for fields in values}) == 1:
                dropped[k].add(f)

    def render(d: dict[str, str]) -> str:
        out = []
        for k in varying:
            if k not in d:
                continue
            v = d[k]
            if (k, v) in inner:
                head, opener, closer, fields = inner[(k, v)]
                kept = ", ".join(f"{f}={x}" for f, x in fields.items() if f not in dropped[k])
                v = f"{head}{opener}{kept}{closer}" if kept else head
            out.append(f"{k}={v}")
        return ", ".join(out)

    for k in varying:  # then trailing fields the ones before them already tell apart (the first fields stay:
        fields = list(dict.fromkeys(f for (kk, _), (*_, fs) in inner.items() if kk == k for f in fs))
        for f in reversed(fields):  # a model's width says more than the budget that happens to imply it)
            if f in dropped[k]:
                continue
            dropped[k].add(f)
            emptied = any(not set(fs) - dropped[k] for (kk, _), (*_, fs) in inner.items() if kk == k)
            if emptied or len({render(d) for d in parts.values()}) < len(parts):  # a value keeps a field
                dropped[k].discard(f)
                break
    out = {arm: render(d) or arm for arm, d in parts.items()}
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


# -- speedup, across sizes, learning rates, every arm's curves ---------------------------------------------


def method_colours(methods: list[str]) -> dict[str, Any]:
    """One colour per arm (method) across every speedup figure, the baseline's first."""
    palette = sns.color_palette("tab10", max(10, len(methods)))
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def size_text(n: int) -> str:
    return f"{n:,} parameters"


SPEEDUP_AXIS = (0.05, 50.0)


def speedup_ticks(ax: Any) -> None:
    """A log speedup axis labelled at a few round factors (minor ticks unlabelled: they crowd near 1x), cut at
    SPEEDUP_AXIS: an interval reaching 0x (the baseline's fit never that low) would squash the rest."""
    low, high = ax.get_ylim()
    low, high = max(low, SPEEDUP_AXIS[0]), min(high, SPEEDUP_AXIS[1])
    ax.set_ylim(low, high)
    ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 10, 20, 50, 100) if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}x" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())


def size_ticks(ax: Any, sizes: list[int]) -> None:
    """A log parameter axis ticked at the sizes that ran, and nowhere else."""
    ax.set_xticks(sizes, [EngFormatter(sep="", places=1)(s) for s in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)


def speedup_fits(sp: dict[str, Any]) -> str:
    """Per size: the baseline's mean final loss at each budget, its fitted curve (dashed past its budgets, as
    far as any speedup reads it), and every other arm's mean loss at its budget; log tokens."""
    fits = sp["fits"]
    colours = method_colours(sp["methods"])
    short = display_labels(sp["methods"], 40)
    fig = Figure(figsize=(min(11, 3.7 * len(fits)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(fits)))  # each size its own loss range: the curves' shapes show
    for ax, f in zip(axes, fits, strict=True):
        cells = [c for c in sp["cells"] if c["size"] == f["size"] and c["mean"] is not None]
        if f["form"] != "none" and f["budgets"]:
            reach = [e["d_base"] for e in sp["entries"] if e["size"] == f["size"] and e["d_base"] is not None]
            low, high = min(f["budgets"]), max(f["budgets"])
            span = [t for t in [*reach, *(c["tokens"] for c in cells)] if t and np.isfinite(t)]
            lo, hi = min([low, *span]) / 1.1, min(max([high, *span]) * 1.1, high * 16)
            inside = np.geomspace(low, high, 60)

            def curve(d: np.ndarray, f: dict[str, Any] = f) -> np.ndarray:
                return (f["E"] or 0.0) + f["B"] * (d / f["d_ref"]) ** -f["beta"]

            ax.plot(inside, curve(inside), color=colours[sp["baseline"]], linewidth=1.5, label="baseline fit")
            for part in (np.geomspace(lo, low, 30), np.geomspace(high, hi, 30)):
                ax.plot(part, curve(part), color=colours[sp["baseline"]], linewidth=1.2, linestyle="--")
            drawn = [curve(np.geomspace(lo, hi, 60)), [c["mean"] for c in cells]]
            top, bottom = max(np.max(v) for v in drawn if len(v)), min(np.min(v) for v in drawn if len(v))
            pad = 0.08 * (top - bottom or 0.1)
            if f["form"] == "saturating" and f["E"] is not None and f["E"] >= bottom - 3 * pad:
                ax.axhline(f["E"], color="#999", linewidth=0.8, linestyle=":")
                bottom = min(bottom, f["E"])
            elif f["form"] == "saturating" and f["E"] is not None:
                ax.text(0.98, 0.98, f"floor E = {f['E']:.3g}: below the axis", transform=ax.transAxes,
                        ha="right", va="top", fontsize=8, color="#666")  # fmt: skip
            ax.set_ylim(bottom - pad, top + pad)
        for c in cells:
            is_base = c["method"] == sp["baseline"]
            ax.plot(c["tokens"], c["mean"], marker="o" if is_base else "D", markersize=6 if is_base else 5,
                    color=colours[c["method"]], linestyle="none")  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(size_text(f["size"]), fontsize=10)
        ax.set_xlabel("tokens")
        ax.tick_params(labelsize=9)
    axes[0].set_ylabel("mean final loss")
    handles = [Line2D([], [], color=colours[m], marker="o" if m == sp["baseline"] else "D",
                                       linestyle="-" if m == sp["baseline"] else "none", label=short[m])
               for m in sp["methods"]]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    return png(fig)


def speedup_chart(sp: dict[str, Any]) -> str:
    """Per size: each other arm's speedup at each budget (tokens per parameter, log) with its 95% interval;
    hollow markers where the fit was extrapolated; an arrow where the interval has no upper end."""
    fits = sp["fits"]
    colours = method_colours(sp["methods"])
    short = display_labels(sp["methods"], 40)
    others = sp["methods"][1:]
    fig = Figure(figsize=(min(11, 3.7 * len(fits)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(fits), sharey=True))
    stated = [e for e in sp["entries"] if e["speedup"] is not None]
    values = [v for e in stated for v in (e["speedup"], *(e["ci"] or [])) if v is not None and v > 0]
    top = max(values, default=2.0) * 1.3
    for ax, f in zip(axes, fits, strict=True):
        for k, method in enumerate(others):
            rows = [e for e in stated if e["size"] == f["size"] and e["method"] == method]
            for e in rows:
                x = e["tokens_per_param"] * (1 + 0.04 * (k - (len(others) - 1) / 2))  # side by side, not on top
                colour = colours[method]
                if e["ci"]:
                    high = e["ci"][1] if e["ci"][1] is not None else top
                    ax.plot([x, x], [e["ci"][0], high], color=colour, linewidth=1.4)
                    if e["ci"][1] is None:
                        ax.annotate("", (x, top), (x, top / 1.15), arrowprops={"arrowstyle": "->", "color": colour})
                ax.plot(x, e["speedup"], marker="o", markersize=6, color=colour,
                        markerfacecolor="white" if e["extrapolated"] else colour, linestyle="none")  # fmt: skip
        ax.axhline(1.0, color="#666", linewidth=1, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(size_text(f["size"]), fontsize=10)
        ax.set_xlabel("tokens per parameter")
        ax.tick_params(labelsize=9)
        ratios = sorted({float(f"{e['tokens_per_param']:.2g}") for e in sp["entries"] if e["size"] == f["size"]
                         and e["tokens_per_param"]})  # fmt: skip
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(ratios, default=1) / 1.3, max(ratios, default=1) * 1.3)
    speedup_ticks(axes[0])  # the axes share it: once all are drawn
    axes[0].set_ylabel("speedup over the baseline")
    handles = [Line2D([], [], color=colours[m], marker="o", linestyle="-", label=short[m])
               for m in others]  # fmt: skip
    handles.append(Line2D([], [], color="#444", marker="o", markerfacecolor="white", linestyle="none",
                          label="extrapolated past the baseline's budgets"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    return png(fig)


def speedup_trends(sp: dict[str, Any]) -> str | None:
    """Speedup against parameters (log-log), one panel per budget rank: each arm's speedups with their
    intervals, the least-squares trend and its 95% band from the draws."""
    trends = sp["trends"]
    if not trends:
        return None
    levels = sorted({t["level"] for t in trends})
    colours = method_colours(sp["methods"])
    short = display_labels(sp["methods"], 40)
    fig = Figure(figsize=(min(11, 3.7 * len(levels)), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(levels), sharey=True))
    for ax, level in zip(axes, levels, strict=True):
        for t in (t for t in trends if t["level"] == level):
            colour = colours[t["method"]]
            if t["band"]:
                band = np.array(t["band"], dtype=float)
                ax.fill_between(band[:, 0], band[:, 2], band[:, 3], color=colour, alpha=0.15, linewidth=0)
                ax.plot(band[:, 0], band[:, 1], color=colour, linewidth=1.4)
            for e in sp["entries"]:
                if e["method"] == t["method"] and e["level"] == level and e["speedup"] is not None:
                    if e["ci"]:
                        high = e["ci"][1] if e["ci"][1] is not None else e["speedup"] * 4
                        ax.plot([e["size"]] * 2, [e["ci"][0], high], color=colour, linewidth=1)
                    ax.plot(e["size"], e["speedup"], marker="o", color=colour, linestyle="none",
                            markerfacecolor="white" if e["extrapolated"] else colour)  # fmt: skip
        ax.axhline(1.0, color="#666", linewidth=1, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ratio = np.mean([t["tokens_per_param"] for t in trends if t["level"] == level])
        ax.set_title(f"budget {level + 1}: about {ratio:.0f} tokens per parameter", fontsize=10)
        ax.set_xlabel("parameters")
        size_ticks(ax, sorted({e["size"] for e in sp["entries"]}))
        ax.tick_params(labelsize=8, which="both")
    speedup_ticks(axes[0])
    axes[0].set_ylabel("speedup")
    methods = list(dict.fromkeys(t["method"] for t in trends))
    handles = [Line2D([], [], color=colours[m], marker="o", label=short[m]) for m in methods]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    return png(fig)


def scaling_losses(sp: dict[str, Any]) -> str | None:
    """Mean final loss per arm against parameters (one line per budget rank) and against training FLOPs (one
    line per size through its budgets), with the leaderboard's Student-t intervals where there are any."""
    cells = [c for c in sp["cells"] if c["mean"] is not None]
    sizes = sorted({c["size"] for c in cells})
    if len(sizes) < 2 and len({c["level"] for c in cells}) < 2:
        return None
    colours = method_colours(sp["methods"])
    short = display_labels(sp["methods"], 40)
    fig = Figure(figsize=(11, 3.9), layout="constrained")
    by_params, by_flops = fig.subplots(1, 2, sharey=True)
    styles = ["-", "--", ":", "-."]
    for method in sp["methods"]:
        mine = [c for c in cells if c["method"] == method]
        for level in sorted({c["level"] for c in mine}):
            row = sorted((c for c in mine if c["level"] == level), key=lambda c: c["size"])
            by_params.plot([c["size"] for c in row], [c["mean"] for c in row], color=colours[method], marker="o",
                           markersize=4, linestyle=styles[level % len(styles)], linewidth=1.2)  # fmt: skip
            for c in row:
                if c["ci"]:
                    by_params.plot([c["size"]] * 2, c["ci"], color=colours[method], linewidth=0.8)
        for k, size in enumerate(sizes):
            row = sorted((c for c in mine if c["size"] == size and c["flops"]), key=lambda c: c["flops"])
            by_flops.plot([c["flops"] for c in row], [c["mean"] for c in row], color=colours[method],
                          marker="osD^v"[k % 5], markersize=4, linewidth=1.2)  # fmt: skip
            for c in row:
                if c["ci"]:
                    by_flops.plot([c["flops"]] * 2, c["ci"], color=colours[method], linewidth=0.8)
    for ax, xlabel in ((by_params, "parameters"), (by_flops, "training FLOPs (step FLOPs x steps)")):
        if not ax.has_data():  # no run recorded its step FLOPs
            ax.text(0.5, 0.5, "no step FLOPs recorded", transform=ax.transAxes, ha="center", color="#666")
            continue
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.tick_params(labelsize=9)
    size_ticks(by_params, sizes)
    by_params.set_ylabel("mean final loss")
    by_params.set_title("by parameters: one line per budget rank (solid: smallest)", fontsize=10)
    by_flops.set_title("by training FLOPs: one line per size through its budgets", fontsize=10)
    handles = [Line2D([], [], color=colours[m], label=short[m]) for m in sp["methods"]]
    handles += [Line2D([], [], color="#444", marker="osD^v"[k % 5], linestyle="none",
                                        label=size_text(s)) for k, s in enumerate(sizes)]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    return png(fig)


def rank_chart(sp: dict[str, Any]) -> str | None:
    """Each size's order of the arms by mean loss (1: lowest), one panel per budget rank, with Kendall's tau
    between sizes and its interval in the panel."""
    ranks = [r for r in sp["rank_stability"] if r["pairs"]]
    if not ranks:
        return None
    colours = method_colours(sp["methods"])
    short = display_labels(sp["methods"], 40)
    fig = Figure(figsize=(min(11, 3.7 * len(ranks)), 3.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(ranks), sharey=True))
    most = max(len(v) for r in ranks for v in r["order"].values())
    for ax, r in zip(axes, ranks, strict=True):
        sizes = sorted(r["order"], key=int)
        for method in sp["methods"]:
            points = [(int(s), r["order"][s].index(method) + 1) for s in sizes if method in r["order"][s]]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", color=colours[method], linewidth=1.6)
        lines = [f"{a / 1e3:.3g}k vs {b / 1e3:.3g}k: tau {p['tau']:+.2f}"
                 + (f" [{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}]" if p["ci"] else "")
                 for p in r["pairs"] for a, b in [p["sizes"]]]  # fmt: skip
        ax.text(0.02, 0.02, "\n".join(lines), transform=ax.transAxes, fontsize=8, va="bottom", color="#333")
        ax.set_xscale("log")
        size_ticks(ax, [int(s) for s in sizes])
        ax.set_ylim(most + 0.5 + 0.45 * len(lines), 0.5)
        ax.set_yticks(range(1, most + 1))
        ax.set_title(f"budget {r['level'] + 1} of each size", fontsize=10)
        ax.set_xlabel("parameters")
        ax.tick_params(labelsize=8, which="both")
    axes[0].set_ylabel("rank by mean loss (1: lowest)")
    handles = [Line2D([], [], color=colours[m], marker="o", label=short[m]) for m in sp["methods"]]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    return png(fig)


def lr_groups(arms: list[str]) -> dict[str, list[str]]:
    """Panels of the learning-rate figures: arms grouped by their parts after the first (a size and budget),
    one line per first part (the optimizer); one panel where the arms differ in their first part alone."""
    from bench.suite import label_parts

    groups: dict[str, list[str]] = {}
    for arm in arms:
        parts = label_parts(arm)
        rest = ", ".join(f"{k}={v}" for k, v in list(parts.items())[1:])
        groups.setdefault(rest, []).append(arm)
    return groups


def lr_sensitivity(lr: dict[str, Any]) -> str:
    """Mean loss against learning rate (log) per arm, with the leaderboard's Student-t interval where there is
    one; filled markers for the rates within the tolerance of the arm's best, hollow for the others."""
    from bench.suite import label_parts

    arms = [a["arm"] for a in lr["arms"]]
    groups = lr_groups(arms)
    firsts = list(dict.fromkeys(next(iter(label_parts(a).items()), ("", a))[1] or a for a in arms))
    one_panel = len(groups) == 1 and len(arms) <= 10
    panels = {"": arms} if one_panel else (groups if len(groups) > 1 else {a: [a] for a in arms})
    cols = 1 if len(panels) == 1 else min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    width = 9 if cols == 1 else 11
    fig = Figure(figsize=(width, (3.6 if cols == 1 else 2.6) * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    by_arm = {a["arm"]: a for a in lr["arms"]}
    line_label = display_labels(firsts, 40) if len(groups) > 1 else display_labels(arms, 40)
    keys = firsts if len(groups) > 1 else arms
    colours = dict(zip(keys, sns.color_palette("tab10", max(10, len(keys))), strict=False))
    titles = display_labels([t for t in panels if t], 60)
    for ax, (title, members) in zip(axes, panels.items(), strict=False):
        for arm in members:
            key = (next(iter(label_parts(arm).values()), None) or arm) if len(groups) > 1 else arm
            entry = by_arm[arm]
            points = [p for p in entry["points"] if p["mean"] is not None]
            colour = colours[key]
            ax.plot([p["lr"] for p in points], [p["mean"] for p in points], color=colour, linewidth=1.3)
            for p in points:
                if p["ci"]:
                    ax.plot([p["lr"]] * 2, p["ci"], color=colour, linewidth=0.9)
                ax.plot(p["lr"], p["mean"], marker="o", markersize=5, color=colour, linestyle="none",
                        markerfacecolor=colour if p["within"] else "white")  # fmt: skip
        ax.set_xscale("log")
        if title:
            ax.set_title(titles[title], fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.supxlabel("learning rate", fontsize=10)
    fig.supylabel("mean final loss", fontsize=10)
    handles = [Line2D([], [], color=colours[k], marker="o", label=line_label[k]) for k in keys]
    handles.append(
        Line2D(
            [],
            [],
            color="#444",
            marker="o",
            markerfacecolor="white",
            linestyle="none",
            label=f"outside {lr['tolerance']:.0%} of the best",
        )
    )
    fig.legend(handles=handles, loc="outside upper center", ncol=min(4, len(handles)), fontsize=9, frameon=False)
    return png(fig)


def lr_robustness(lr: dict[str, Any]) -> str:
    """Per arm, the contiguous range of rates within the tolerance of its best (a bar on a log axis, its
    width in decades written beside it), the best rate marked; an open end (the range reaches the rates tried)
    drawn as an arrow."""
    arms = lr["arms"]
    short = display_labels([a["arm"] for a in arms], 60)
    fig = Figure(figsize=(9, 0.32 * len(arms) + 1.3), layout="constrained")
    ax = fig.subplots()
    for i, a in enumerate(arms):
        if a["best_lr"] is None:
            continue
        rates = [p["lr"] for p in a["points"]]
        ax.plot(rates, [i] * len(rates), linestyle="none", marker="|", color="#999", markersize=7)
        ax.plot([a["low"], a["high"]], [i, i], color="#1f5fa8", linewidth=5, solid_capstyle="butt")
        ax.plot(a["best_lr"], i, marker="o", color="#0b2e59", markersize=5)
        for end, open_, side in ((a["low"], a["open_low"], -1), (a["high"], a["open_high"], 1)):
            if open_:
                ax.annotate("", (end * 10 ** (0.12 * side), i), (end, i),
                            arrowprops={"arrowstyle": "->", "color": "#1f5fa8"})  # fmt: skip
        least = "≥ " if a["open_low"] or a["open_high"] else ""
        ax.text(max(rates) * 10**0.25, i, f"{least}{a['width_decades']:.2f}", va="center", fontsize=8)
    ax.set_yticks(range(len(arms)), [short[a["arm"]] for a in arms], fontsize=8)
    ax.set_ylim(len(arms) - 0.5, -0.5)
    ax.set_xscale("log")
    low = min(p["lr"] for a in arms for p in a["points"])
    high = max(p["lr"] for a in arms for p in a["points"])
    ax.set_xlim(low / 10**0.3, high * 10**0.8)
    ax.set_xlabel(f"learning rate: bar = rates within {lr['tolerance']:.0%} of the best (dot); ticks = rates tried; "
                  "number = width in decades")  # fmt: skip
    ax.tick_params(axis="x", labelsize=9)
    return png(fig)


def all_curves(frame: pd.DataFrame, arms: list[str], x: str, floor: float | None) -> str | None:
    """Every arm's validation loss against steps or tokens: one small panel per arm (mean over seeds, the band
    from lowest seed to highest), every other arm's mean in light grey behind it, one shared loss axis."""
    import textwrap

    per_arm: dict[str, pd.DataFrame] = {}
    for arm in arms:
        rows = []
        for _, run in frame[frame["arm"] == arm].iterrows():
            c = run.get("curves") or {}
            per_step = tokens_per_step(run)
            rows += [{"step": s, "tokens": s * per_step, "loss": v, "seed": run["seed"]}
                     for s, v in zip(c.get("val_step", []), c.get("val_loss", []), strict=False)
                     if v is not None and np.isfinite(v)]  # fmt: skip
        if rows:
            per_arm[arm] = pd.DataFrame(rows)
    if not per_arm:
        return None
    means = {a: d.groupby(x)["loss"].agg(["mean", "min", "max"]) for a, d in per_arm.items()}
    values = np.concatenate([m["mean"].to_numpy() for m in means.values()])
    low, high = np.quantile(values, [0.0, 0.98])
    pad = 0.05 * (high - low or 1.0)
    cols = min(5, len(per_arm))
    rows_n = math.ceil(len(per_arm) / cols)
    fig = Figure(figsize=(10.6, 1.95 * rows_n + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows_n, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    short = display_labels(list(per_arm), 90)
    for ax, arm in zip(axes, per_arm, strict=False):
        for other, m in means.items():
            if other != arm:
                ax.plot(m.index, m["mean"], color="#d5d9de", linewidth=0.6)
        m = means[arm]
        ax.fill_between(m.index, m["min"], m["max"], color="#1f5fa8", alpha=0.25, linewidth=0)
        ax.plot(m.index, m["mean"], color="#1f5fa8", linewidth=1.4)
        if floor is not None:
            ax.axhline(floor, color="#888", linestyle="--", linewidth=0.8)
        ax.set_title(textwrap.fill(short[arm], 34), fontsize=7.5)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_major_locator(MaxNLocator(3))
    for ax in axes[len(per_arm) :]:
        ax.set_visible(False)
    axes[0].set_ylim(low - pad, high + pad)
    fig.supxlabel("optimizer steps" if x == "step" else "tokens seen", fontsize=10)
    fig.supylabel("validation loss", fontsize=10)
    return png(fig)
