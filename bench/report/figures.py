"""Report figures: seaborn on matplotlib Figures (no pyplot state), encoded as inline PNG.

PNGs are byte-stable: no Software tag, fixed seeds for seaborn's bootstrap bands, fixed sizes and DPI.
"""

from __future__ import annotations

import base64
import io
import itertools

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 96
ERRORBAR = ("ci", 95)
SEED_BAND = ("pi", 100)  # loss curves: the band spans every seed, min to max
SEED = 0
sns.set_theme(style="whitegrid", context="notebook")


def png(fig: Figure) -> str:
    """A data: URI of the figure as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def finite(frame: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    return frame[np.isfinite(frame[column].astype(float))]


def main_effect(frame: pd.DataFrame, axis: str, metric: str, floor: float | None) -> str:
    """Mean metric per value of one axis (averaged over the other axes), with 95% bootstrap intervals."""
    column = f"arm.{axis}"
    data = finite(frame)
    order = list(dict.fromkeys(frame[column]))
    many = len(order) > 8 or max(len(str(o)) for o in order) > 14  # long or many labels: values down the side
    if many:
        fig = Figure(figsize=(7, 0.28 * len(order) + 1.2))
        ax = fig.subplots()
        sns.pointplot(data=data, y=column, x="value", order=order, errorbar=ERRORBAR, seed=SEED, ax=ax,
                      linestyle="none", capsize=0.3, color="#1f5fa8", markersize=4)  # fmt: skip
        ax.set_ylabel(axis)
        ax.set_xlabel(metric)
        ax.tick_params(axis="y", labelsize=7)
    else:
        fig = Figure(figsize=(max(4.0, 0.9 * len(order) + 2), 3.2))
        ax = fig.subplots()
        sns.pointplot(data=data, x=column, y="value", order=order, errorbar=ERRORBAR, seed=SEED, ax=ax,
                      linestyle="none", capsize=0.15, color="#1f5fa8")  # fmt: skip
        ax.set_xlabel(axis)
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", labelsize=8)
    if floor is not None:
        (ax.axvline if many else ax.axhline)(floor, color="#888", linestyle="--", linewidth=1, label="loss floor")
        ax.legend(loc="best", fontsize=8)
    return png(fig)


def interaction(frame: pd.DataFrame, a: str, b: str, metric: str) -> str:
    """Mean metric over every pair of values of two axes."""
    data = finite(frame)
    table = data.pivot_table(index=f"arm.{a}", columns=f"arm.{b}", values="value", aggfunc="mean", sort=False)
    fig = Figure(figsize=(max(4.0, 1.1 * table.shape[1] + 2.5), max(2.6, 0.5 * table.shape[0] + 1.5)))
    ax = fig.subplots()
    sns.heatmap(table, annot=True, fmt=".3f", cmap="RdYlGn_r", ax=ax, cbar_kws={"label": metric}, annot_kws={"size": 8})
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    ax.tick_params(labelsize=8)
    return png(fig)


def axis_pairs(axes: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(axes, 2))


def curves(frame: pd.DataFrame, arms: dict[str, str], floor: float | None) -> str:
    """Validation and training loss of the chosen arms: mean over seeds, the band from lowest seed to highest."""
    val_rows, train_rows = [], []
    for role, arm in arms.items():
        for _, run in frame[frame["arm"] == arm].iterrows():
            c = run.get("curves") or {}
            label = f"{role}: {arm}"
            val = zip(c.get("val_step", []), c.get("val_loss", []), strict=False)
            val_rows += [{"arm": label, "step": s, "loss": v, "seed": run["seed"]} for s, v in val if v is not None]
            train = [(s, v) for s, v in zip(c.get("step", []), c.get("train_loss", []), strict=False) if v is not None]
            smooth = _smooth([v for _, v in train])
            train_rows += [{"arm": label, "step": s, "loss": v, "seed": run["seed"]}
                           for (s, _), v in zip(train, smooth, strict=False)]  # fmt: skip
    fig = Figure(figsize=(10, 3.6))
    ax_val, ax_train = fig.subplots(1, 2)
    for ax, rows, title in ((ax_val, val_rows, "validation loss"), (ax_train, train_rows, "training loss (smoothed)")):
        if rows:
            sns.lineplot(data=pd.DataFrame(rows), x="step", y="loss", hue="arm", errorbar=SEED_BAND, ax=ax)
            ax.legend(fontsize=7, loc="upper right")
        if floor is not None:
            ax.axhline(floor, color="#888", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=10)
    return png(fig)


def _smooth(values: list[float], span: int = 20) -> list[float]:
    if not values:
        return []
    return pd.Series(values, dtype=float).ewm(span=span).mean().tolist()


def to_target(frame: pd.DataFrame, column: str, label: str) -> str:
    """Per arm, the seeds' time (or tokens) to the target; misses drawn at the right edge."""
    data = frame[["arm", column]].copy()
    data[column] = data[column].astype(float)
    reached = data[np.isfinite(data[column])]
    order = list(dict.fromkeys(frame["arm"]))
    fig = Figure(figsize=(8, max(2.5, 0.32 * len(order) + 1)))
    ax = fig.subplots()
    if not reached.empty:
        sns.stripplot(data=reached, y="arm", x=column, order=order, ax=ax, color="#1f5fa8", size=5, jitter=False)
    missed = data[~np.isfinite(data[column])].groupby("arm").size()
    right = reached[column].max() * 1.08 if not reached.empty else 1.0
    for arm, n in missed.items():
        ax.text(right, order.index(arm), f"{n} missed", va="center", fontsize=7, color="#b00")
    ax.set_xlabel(label)
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=7)
    return png(fig)


def profile(rho: pd.DataFrame, scores: pd.Series) -> str:
    """AlgoPerf performance profiles: share of seeds on which each arm is within tau of the best."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    for arm in scores.sort_values(ascending=False).index:
        ax.step(rho.index, rho[arm], where="post", label=f"{arm} ({scores[arm]:.2f})", linewidth=1.2)
    ax.set_xlabel("tau: time / best time on the same seed")
    ax.set_ylabel("share of seeds within tau")
    ax.set_xlim(1, float(rho.index.max()))
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6, loc="lower right", ncol=1 if len(scores) < 10 else 2)
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
    ax.tick_params(axis="y", labelsize=7)
    return png(fig)


def search_figures(study: object) -> list[tuple[str, str]]:
    """Optuna's own plots of a search (optuna.visualization.matplotlib): history, importances, parallel
    coordinates of the most important parameters. Each is skipped where Optuna cannot draw it yet."""
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    from bench.search import importances

    if len(study.directions) > 1:
        plots = [("Pareto front", lambda: ovm.plot_pareto_front(study))]
    else:
        ranked = list(importances(study))
        plots = [
            ("Optimization history", lambda: ovm.plot_optimization_history(study)),
            ("Parameter importances (Optuna's default evaluator)", lambda: ovm.plot_param_importances(study)),
            ("Parallel coordinates of the most important parameters",
             lambda: ovm.plot_parallel_coordinate(study, params=ranked[:6] or None)),
        ]  # fmt: skip
    out = []
    for title, draw in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" and sparse-regime warnings
                ax = draw()
        except (ValueError, RuntimeError, ZeroDivisionError, KeyError):
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 4)
        out.append((title, png(fig)))
        plt.close(fig)
    return out
