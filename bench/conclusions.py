"""The findings of a suite's runs, as data: every headline, interval and verdict a report states.

`conclude(suite, frame, ...)` turns a results frame (`bench.results.suite_results`, or a search's trials) into one
JSON-ready dict, versioned by SCHEMA_VERSION and documented field by field in docs/conclusions.md. The HTML
report renders this dict and decides nothing itself; `build_report` writes it beside the HTML as
`reports/<suite>.json`, and a script, a CI job or a paper's table reads it from there.

Tuned arms. A suite that tunes (`tune = ["optimizer.lr"]`) ranks each arm at its best tuned setting. The
setting is chosen on the tuning seeds alone; where runs of the chosen setting on confirming seeds exist
(seeds that took no part in choosing: `confirm_seeds`, or a `confirming` column of the frame), the arm's
mean, interval, rank and paired tests come from those runs only. Without them the arm is judged on the seeds
that chose it, and the conclusions say so: its mean is then biased low, and its interval with it (the
winner's curse; benchmarks/confirmation.py measures by how much). A tuned setting at either end of its
numeric grid is flagged wherever the arm appears.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.codec import FINISHED, STATUSES
from bench.labels import label
from bench.protocol import edge_of, stages
from bench.stats import (
    ALPHA,
    CONFIDENCE,
    MIN_SEEDS_FOR_CI,
    best_per_arm,
    compare_times,
    mean_ci,
    paired_comparisons,
    performance_profile,
    summarize,
)
from bench.suite import label_parts, matching_arms

SCHEMA_VERSION = 1
# Optuna's PED-ANOVA evaluator (its default in 5.0) compares the top 10% of trials with the rest, and its
# documentation asks for at least 5 trials in that top: 50 complete trials.
MIN_TRIALS_FOR_IMPORTANCE = 50
TIES_IN_TEXT = 8  # more tied arms than this: the headline gives their count, the list stands beside it
VERDICT_WORDS = {"better": "better", "worse": "worse", "not distinguishable": "not distinguishable at these seeds",
                 "not tested": "not tested"}  # fmt: skip
ABLATION_WORDS = {"better": "helps", "worse": "hurts", "not distinguishable": "not distinguishable at these seeds",
                  "not tested": "not tested"}  # fmt: skip


def fmt(x: float | None, digits: int = 4, sign: bool = False) -> str:
    """A number as the report prints it ('–' for none)."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def num(x: Any) -> float | int | None:
    """A JSON number: NaN and infinities become null (a diverged arm's mean is said by its run counts)."""
    if x is None or x is pd.NA:
        return None
    if isinstance(x, bool | np.bool_):
        return bool(x)  # type: ignore[return-value]
    if isinstance(x, int | np.integer):
        return int(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def seeds_text(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds) or "none"


def arms_text(arms: Sequence[str]) -> str:
    """Arms in a sentence: semicolons between them, since a grid's arm labels hold commas."""
    return "; ".join(arms)


def baseline_arms(suite: Any, frame: pd.DataFrame, design: str | None = None) -> list[str]:
    """The arms the suite's `baseline` names (bench.suite.matching_arms: the arm of that label, or every arm
    holding the key=value parts it gives), else the first combination's arm (each axis's first value); an
    ablation's base."""
    arms = list(dict.fromkeys(frame["arm"]))
    if suite.baseline:
        matched = matching_arms(suite.baseline, arms)
        if matched:
            return matched
    if (design or suite.design) == "ablation":
        return ["base" if "base" in arms else arms[0]]
    runs = suite.runs()
    candidate = suite.arm_label_of(runs[0]) if runs else None
    return [candidate if candidate in arms else arms[0]]


def baseline_arm(suite: Any, frame: pd.DataFrame, design: str | None = None) -> str:
    """The baseline as the conclusions name it: its arm, or the suite's `baseline` as written where that names
    several arms (each other arm is then compared with its counterpart: counterparts)."""
    arms = baseline_arms(suite, frame, design)
    return arms[0] if len(arms) == 1 else suite.baseline


def counterparts(arms: Sequence[str], baselines: Sequence[str], given: str | None) -> dict[str, str] | None:
    """Where the baseline names several arms: each other arm -> the baseline arm sharing its other parts (those
    the baseline does not give: optimizer=lion at tokens=X against optimizer=adamw at tokens=X), else the one
    sharing most of them, the first of equals. None where the baseline is one arm."""
    if len(baselines) <= 1:
        return None
    named = set(label_parts(given)) if given else set()
    parts = {a: label_parts(a) for a in [*arms, *baselines]}

    def shared(arm: str, base: str) -> int:
        return sum(parts[arm].get(k) == v for k, v in parts[base].items() if k not in named)

    return {a: max(baselines, key=lambda b: shared(a, b)) for a in arms if a not in baselines}


def tuned_values(suite: Any, run: Any) -> dict[str, Any]:
    """The run's tuned settings as values: {'optimizer.lr': 0.003} (a tuned axis, or a field of an axis's
    table values that `tune` names)."""
    out: dict[str, Any] = {}
    for key in suite.axes:
        if key not in run.values:
            continue
        value = run.values[key]
        if key in suite.tune:
            out[key] = value
            continue
        inner = [t.split(".", 1)[1] for t in suite.tune if t.startswith(key + ".") and t not in suite.axes]
        if inner and isinstance(value, dict):
            out.update({f"{key}.{k}": value[k] for k in inner if k in value})
    return out


def edge_text(position: str, size: int) -> str:
    return f"tuned optimum at the edge of its grid ({position} of {size} values): the arm may be under-tuned"


def confirming_mask(frame: pd.DataFrame, confirm_seeds: Iterable[int] | None) -> pd.Series:
    """Rows run on confirming seeds: the seeds given, else the frame's `confirming` column, else none."""
    if confirm_seeds is not None:
        return frame["seed"].isin(set(confirm_seeds)).fillna(False).astype(bool)
    if "confirming" in frame:
        return frame["confirming"].fillna(False).astype(bool)
    if "stage" in frame:  # bench.results marks the tuning protocol's confirmation runs
        return (frame["stage"] == "confirm").fillna(False).astype(bool)
    return pd.Series(False, index=frame.index)


def settled_of(frame: pd.DataFrame) -> dict[str, tuple[str, Any]]:
    """{run hash: (status, value)}: what bench.protocol.stages reads."""
    return {h: (s, v) for h, s, v in zip(frame["run_hash"], frame["status"], frame["value"], strict=True)}


def judged_runs(suite: Any, frame: pd.DataFrame, confirming: pd.Series) -> tuple[pd.DataFrame, dict[str, dict]]:
    """A tuned suite's runs as the leaderboard ranks them: per arm (the arm without its tuned settings), the
    setting with the lowest mean over the tuning seeds, judged on its confirming runs where it has any,
    else on the tuning runs. Where the confirming runs of an arm are of one setting alone, that setting is
    the one chosen (the tuning protocol chose it when it trained them). Returns those runs (`arm` the
    untuned arm, `tuned_arm` the setting's arm) and per arm: tuned setting and values, edge flags on the grid
    as the protocol extended it, what the protocol added and why, tuning and confirming seeds."""
    protocol = stages(suite, settled_of(frame))
    one_per_arm: dict[str, Any] = {}
    for run in protocol.runs:  # declared, added by the protocol, confirming: an arm's seeds share its settings
        one_per_arm.setdefault(run.arm_label, run)
    group_of = {arm: suite.untuned_label(r) for arm, r in one_per_arm.items()}
    groups = frame["arm"].map(group_of).fillna(frame["arm"])
    choosing = frame[~confirming]
    chosen = best_per_arm(choosing, groups[~confirming]) if len(choosing) else choosing.assign(tuned_arm=[])
    confirmed_as = frame[confirming].groupby(groups[confirming], sort=False)["arm"].unique()
    protocol_choice = {g: labels[0] for g, labels in confirmed_as.items() if len(labels) == 1}
    if protocol_choice:
        rows = choosing[choosing["arm"].isin(protocol_choice.values())].copy()
        rows["tuned_arm"], rows["arm"] = rows["arm"], groups[rows.index]
        chosen = pd.concat([chosen[~chosen["arm"].isin(protocol_choice)], rows], ignore_index=True)
    grids: dict[str, dict[str, list[Any]]] = {}
    values_of: dict[str, dict[str, Any]] = {}
    setting_of: dict[str, str] = {}
    tried = set(choosing["arm"])  # a grid is what ran: values the protocol asks for next are not in it yet
    for arm, run in one_per_arm.items():
        if run.stage == "confirm":
            continue
        values = tuned_values(suite, run)
        values_of[arm] = values
        setting_of[arm] = suite.tuned_label(run)
        if arm not in tried:
            continue
        for key, value in values.items():
            grid = grids.setdefault(group_of[arm], {}).setdefault(key, [])
            if value not in grid:
                grid.append(value)
    tuning_seeds_of = {g: sorted(int(s) for s in seeds.dropna().unique())
                       for g, seeds in choosing["seed"].groupby(groups[~confirming], sort=False)}  # fmt: skip
    tuned_arm_of = {**dict(zip(chosen["arm"], chosen["tuned_arm"], strict=True)), **protocol_choice}
    group_of_tuned = {a: g for g, a in tuned_arm_of.items()}
    confirm = frame[confirming & frame["arm"].isin(group_of_tuned)].copy()
    confirm["tuned_arm"] = confirm["arm"]
    confirm["arm"] = confirm["tuned_arm"].map(group_of_tuned)
    confirm_seeds_of = {g: sorted(int(s) for s in seeds.dropna().unique())
                        for g, seeds in confirm["seed"].groupby(confirm["arm"], sort=False)}  # fmt: skip
    judged = pd.concat([chosen[~chosen["arm"].isin(confirm_seeds_of)], confirm], ignore_index=True)
    judged["tuned_setting"] = judged["tuned_arm"].map(setting_of).fillna(judged["tuned_arm"])
    info = {}
    for group, tuned_arm in tuned_arm_of.items():
        values = values_of.get(tuned_arm, {})
        tuning = protocol.arms.get(group)
        flags = []
        for key, value in values.items():
            edge = edge_of(grids.get(group, {}).get(key, []), value)
            if edge is not None:
                flags.append({"setting": key, "value": num(value), "position": edge[0], "grid_size": edge[1],
                              "grid": [num(v) for v in sorted(grids[group][key])],
                              "why": tuning.edges.get(key) if tuning else None,
                              "text": f"{key}: {edge_text(*edge)}"})  # fmt: skip
        ran = grids.get(group, {})
        added = [{"setting": a.key, "value": num(a.value), "why": a.why, "text": f"{a.key}={label(a.value)}: {a.why}"}
                 for a in (tuning.added if tuning else []) if a.value in ran.get(a.key, [])]  # fmt: skip
        info[group] = {
            "tuned_arm": tuned_arm,
            "tuned_setting": setting_of.get(tuned_arm) or tuned_arm,
            "tuned_values": {k: num(v) if not isinstance(v, str) else v for k, v in values.items()},
            "edge_flags": flags,
            "tuning_added": added,
            "tuning_seeds": tuning_seeds_of.get(group, []),
            "confirming_seeds": confirm_seeds_of.get(group, []),
            "judged_on": "confirming" if group in confirm_seeds_of else "tuning",
        }
    return judged, info


def conclude(
    suite: Any,
    frame: pd.DataFrame,
    *,
    design: str | None = None,
    studies: Sequence[Any] = (),
    confirm_seeds: Iterable[int] | None = None,
    left_out: int = 0,
) -> dict[str, Any]:
    """Every finding about the suite's runs, as a JSON-ready dict (docs/conclusions.md). `frame`: one row
    per run (`load_results` columns; an optional boolean `confirming`); `design`: 'search' where the rows
    are a search's trials; `studies`: the suite's Optuna search studies; `confirm_seeds`: seeds whose runs
    took no part in choosing a tuned setting (default: the frame's `confirming` column)."""
    design = design or suite.design
    frame = frame.copy()
    frame["value"] = frame["value"].astype(float)
    tuned = bool(suite.tune) and design != "search"
    confirming = confirming_mask(frame, confirm_seeds)
    if tuned:
        judged, info = judged_runs(suite, frame, confirming)
    else:
        judged, info = frame, {}
    table = summarize(judged) if len(judged) else summarize(frame)
    baselines = baseline_arms(suite, judged if len(judged) else frame, design)
    baseline = baselines[0] if len(baselines) == 1 else suite.baseline
    base_of = counterparts(list(dict.fromkeys(judged["arm"])), baselines, suite.baseline)
    comparisons = paired_comparisons(judged, baselines[0], baselines=base_of) if design != "search" else None
    arms = arm_findings(table, judged, info)
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "suite": {
            "name": suite.name,
            "description": suite.description,
            "design": design,
            "metric": suite.metric,
            "target": suite.target,
            "tune": list(suite.tune),
            "seeds": list(suite.seeds),
        },  # fmt: skip
        "headline": None,  # drawn last, from everything below, and read first
        "runs": {
            "total": len(frame),
            "by_status": {s: int((frame["status"] == s).sum()) for s in STATUSES},
            "left_out": int(left_out),
        },  # fmt: skip
        "method": method(),
        "tuning": tuning_summary(suite, arms, tuned),
        "arms": arms,
        "baseline": baseline,
        "baseline_arms": baselines if design != "search" else [],
        "comparisons": comparison_findings(comparisons, baseline, design),
        "ablation": ablation_findings(comparisons, baseline, arms, judged) if design == "ablation" else None,
        "timing": timing_findings(judged, suite) if suite.target is not None and len(judged) else None,
        "search": [search_findings(study) for study in studies],
        "speedup": None,
        "lr_sensitivity": None,
    }
    if design != "search":
        runs_of = {r.hash: r for r in (stages(suite, settled_of(frame)).runs if tuned else suite.runs())}
        out["speedup"] = speedup_findings(suite, judged, runs_of, baselines, arms, design)
        out["lr_sensitivity"] = lr_findings(suite, frame[~confirming], runs_of)
    out["headline"] = headline(out, design, suite.metric)
    return out


def method() -> dict[str, Any]:
    return {
        "confidence": CONFIDENCE,
        "interval": "Student-t interval of the mean over seeds (as scipy.stats.ttest_1samp gives it)",
        "min_seeds": MIN_SEEDS_FOR_CI,
        "rank": "1 + the number of arms whose interval lies wholly below this arm's; arms sharing a rank are tied",
        "paired": "each arm against the baseline over matching seeds: paired t-test, Holm-adjusted over the arms "
        "tested, verdict by the adjusted p against alpha; the difference's interval is per comparison",
        "alpha": ALPHA,
        "effect_size": "paired d = mean(diff) / sd(diff), with its noncentral-t interval; absent where that "
        "interval cannot be computed",
        "lower_is_better": True,
    }


def tuning_summary(suite: Any, arms: list[dict[str, Any]], tuned: bool) -> dict[str, Any] | None:
    """Which tuned arms are flagged at a grid's edge, and which are judged on the seeds that chose them or
    on confirming seeds (in the leaderboard's order)."""
    if not tuned:
        return None
    return {
        "settings": list(suite.tune),
        "arms": len(arms),
        "edge_flagged": [a["arm"] for a in arms if a["edge_flags"]],
        "judged_on_tuning_seeds": [a["arm"] for a in arms if a["judged_on"] == "tuning"],
        "confirmed": [a["arm"] for a in arms if a["judged_on"] == "confirming"],
        "added": [f"{a['arm']}: {x['text']}" for a in arms for x in a["tuning_added"]],
    }


def arm_findings(table: pd.DataFrame, judged: pd.DataFrame, info: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    finished = judged[judged["status"].isin(FINISHED)]
    seeds_of = {arm: sorted(int(s) for s in g.dropna().unique()) for arm, g in finished.groupby("arm")["seed"]}
    tokens_of = finished.groupby("arm")["tokens"].median() if "tokens" in finished else pd.Series(dtype=float)
    by_rank = {rank: g.tolist() for rank, g in table.groupby("rank")["arm"]}
    for _, row in table.iterrows():
        arm = row["arm"]
        seeds = seeds_of.get(arm, [])
        ties = [a for a in by_rank[row["rank"]] if a != arm]
        has_ci = not math.isnan(row["ci_low"])
        entry: dict[str, Any] = {
            "arm": arm,
            "rank": int(row["rank"]),
            "mean": num(row["mean"]),
            "std": num(row["std"]),
            "ci": [num(row["ci_low"]), num(row["ci_high"])] if has_ci else None,
            "no_interval": None if has_ci else no_interval_reason(row),
            "n": int(row["n"]),
            "seeds": seeds,
            "tokens": int(tokens_of[arm]) if arm in tokens_of and pd.notna(tokens_of[arm]) else None,
            "gap": num(row["gap"]),
            "runs": {s: int(row[s]) for s in STATUSES if int(row.get(s, 0))},
            "ties": ties,
            "tuned_setting": None,
            "tuned_values": None,
            "edge_flags": [],
            "tuning_added": [],
            "tuning_seeds": [],
            "confirming_seeds": [],
            "judged_on": "all",
        }
        if arm in info:
            i = info[arm]
            entry.update({k: i[k] for k in ("tuned_setting", "tuned_values", "edge_flags", "tuning_added",
                                            "tuning_seeds", "confirming_seeds", "judged_on")})  # fmt: skip
        out.append(entry)
    return out


def no_interval_reason(row: pd.Series) -> str:
    """Why an arm has no interval: diverged runs (an infinite loss has none), too few seeds run, or too
    few of them finished."""
    ran = sum(int(row.get(s, 0)) for s in STATUSES)
    if row.get("diverged", 0):
        return f"none: {row['diverged']} of {ran} seeds diverged"
    return f"{row['n']} of {ran} seeds finished" if ran >= MIN_SEEDS_FOR_CI else "too few seeds"


def comparison_findings(table: pd.DataFrame | None, baseline: str, design: str) -> dict[str, Any]:
    if table is None:
        withheld = (
            "A search's trials are not arms of a design: each was sampled from the results of earlier "
            "trials, and none is a baseline, so no trial is tested against another."
        )
        return {"baseline": None, "rows": [], "tested": 0, "withheld": withheld}
    rows = []
    for _, r in table.iterrows():
        has_d = not math.isnan(r["d_low"])
        rows.append({
            "arm": r["arm"], "baseline": r["baseline"], "pairs": int(r["pairs"]), "mean_diff": num(r["mean_diff"]),
            "diff_ci": [num(r["diff_low"]), num(r["diff_high"])] if not math.isnan(r["diff_low"]) else None,
            "p": num(r["p"]), "p_holm": num(r["p_holm"]),
            "effect_size": num(r["effect_size"]) if has_d else None,
            "effect_size_ci": [num(r["d_low"]), num(r["d_high"])] if has_d else None,
            "verdict": r["verdict"],
        })  # fmt: skip
    return {"baseline": baseline, "rows": rows, "tested": int(table["p"].notna().sum()), "withheld": None}


def comparison_text(r: dict[str, Any], words: dict[str, str], tested: int) -> str:
    """One paired comparison in words: '+0.0440 [+0.0210, +0.0670], Holm p 0.012: hurts'."""
    if r["verdict"] == "not tested":
        if r["pairs"] >= MIN_SEEDS_FOR_CI:  # identical differences on every seed: no spread to test against
            return f"{fmt(r['mean_diff'], sign=True)} on every one of {r['pairs']} seeds: not tested (no spread)"
        return (f"{fmt(r['mean_diff'], sign=True)} over {r['pairs']} matching seed(s): not tested "
                f"({MIN_SEEDS_FOR_CI} needed)")  # fmt: skip
    ci = r["diff_ci"]
    text = f"{fmt(r['mean_diff'], sign=True)} [{fmt(ci[0], sign=True)}, {fmt(ci[1], sign=True)}]"
    if r["p_holm"] is not None:
        text += f", Holm p {r['p_holm']:.3g}"
    text += f": {words[r['verdict']]}"
    if r["verdict"] == "not distinguishable" and r["p"] is not None and r["p"] < ALPHA and tested > 1:
        text += f" (p {r['p']:.3g} before correcting for {tested} tests)"
    return text


def ablation_findings(
    table: pd.DataFrame | None, baseline: str, arms: list[dict[str, Any]], judged: pd.DataFrame
) -> dict[str, Any] | None:
    """Each change against the base: helps / hurts / not distinguishable at these seeds, ordered by effect."""
    if table is None:
        return None
    comparisons = comparison_findings(table, baseline, "ablation")
    by_arm = {a["arm"]: a for a in arms}
    tested = comparisons["tested"]
    changes = []
    for r in sorted(comparisons["rows"], key=lambda r: (r["mean_diff"] is None, r["mean_diff"] or 0.0)):
        text = f"{r['arm']}: " + comparison_text(r, ABLATION_WORDS, tested)
        flags = by_arm.get(r["arm"], {}).get("edge_flags", [])
        if flags:
            text += "; " + "; ".join(f["text"] for f in flags)
        changes.append({"arm": r["arm"], "verdict": ABLATION_WORDS[r["verdict"]], "mean_diff": r["mean_diff"],
                        "diff_ci": r["diff_ci"], "p_holm": r["p_holm"], "pairs": r["pairs"], "text": text})  # fmt: skip
    base_rows = judged[(judged["arm"] == baseline) & judged["status"].isin(FINISHED)]
    return {"base": baseline, "seeds": sorted(int(s) for s in base_rows["seed"].dropna().unique()),
            "tested": tested, "changes": changes}  # fmt: skip


def headline(c: dict[str, Any], design: str, metric: str) -> dict[str, Any]:
    """The sentence at the top of the report, and what it rests on."""
    arms = c["arms"]
    out: dict[str, Any] = {"kind": design, "text": "", "best": None, "ties": [], "ties_beside": False, "lines": [],
                           "cautions": []}  # fmt: skip
    if not arms or arms[0]["mean"] is None:
        out["kind"] = "none"
        out["text"] = f"No arm has a {metric} to rank: every run diverged, failed, was pruned or was interrupted."
        return out
    best = arms[0]
    out["best"] = best["arm"]
    if design == "ablation" and c["ablation"] is not None:
        return ablation_headline(c, out)
    text = f"Best{' trial' if design == 'search' else ''}: {best['arm']}"
    if best["tuned_setting"]:
        text += f" at {best['tuned_setting']}"
    text += f", mean {metric} {fmt(best['mean'])}"
    text += f" (95% CI [{fmt(best['ci'][0])}, {fmt(best['ci'][1])}]" if best["ci"] else " (no interval"
    text += f", {best['n']} seed{'s' * (best['n'] != 1)}{judged_on_text(best)})."
    if design == "search":
        text += (" A search's trials are not arms of a design: no test ranks them against each other; the "
                 "Search section shows how the settings matter.")  # fmt: skip
        out["text"] = text
        return out
    rows = {r["arm"]: r for r in c["comparisons"]["rows"]}
    if best["arm"] in c["baseline_arms"]:
        text += " " + baseline_is_best_text(c, out, best["arm"])
    else:
        paired = rows.get(best["arm"])
        baseline = paired["baseline"] if paired is not None else c["baseline"]
        told_by_pairs = paired is not None and paired["verdict"] != "not tested"
        others = [a for a in arms[1:] if not (told_by_pairs and a["arm"] == baseline)]
        ties = [a["arm"] for a in others if a["rank"] == 1]
        besides = " besides the baseline" if told_by_pairs else ""
        baseline_tied = any(a["arm"] == baseline and a["rank"] == 1 for a in arms)
        if not best["ci"]:
            text += f" With fewer than {MIN_SEEDS_FOR_CI} finished seeds it has no interval to rank it by."
        elif ties:
            out["ties"], out["ties_beside"] = ties, len(ties) > TIES_IN_TEXT
            listed = f": {arms_text(ties)}" if len(ties) <= TIES_IN_TEXT else " (listed beside)"
            text += (f" It shares rank 1 with {len(ties)} other arm{'s' * (len(ties) != 1)}"
                     f"{besides if baseline_tied else ''} whose "
                     f"intervals overlap its own{listed}.")  # fmt: skip
        elif others:
            text += f" Its interval lies wholly below those of the {len(others)} other arm(s){besides}."
        if paired is not None:
            text += (
                f" Against the baseline {baseline}, paired: "
                + comparison_text(paired, VERDICT_WORDS, c["comparisons"]["tested"])
                + "."
            )
    out["text"] = text
    out["cautions"] = cautions(c, best)
    return out


def judged_on_text(arm: dict[str, Any]) -> str:
    if arm["judged_on"] == "confirming":
        return f": confirming seeds {seeds_text(arm['confirming_seeds'])}, chosen on {seeds_text(arm['tuning_seeds'])}"
    if arm["judged_on"] == "tuning":
        return f": the seeds that chose the setting, {seeds_text(arm['tuning_seeds'])}"
    return ""


def baseline_is_best_text(c: dict[str, Any], out: dict[str, Any], best: str) -> str:
    """The best arm is the baseline (or, where the baseline names several arms, one of them): the paired table
    tells how every arm compared with it stands against it."""
    rows = [r for r in c["comparisons"]["rows"] if r["baseline"] == best]
    several = len(c["baseline_arms"]) > 1
    by = {v: [r["arm"] for r in rows if r["verdict"] == v] for v in VERDICT_WORDS}
    out["ties"] = by["not distinguishable"]
    out["ties_beside"] = len(out["ties"]) > TIES_IN_TEXT
    parts = []
    if by["worse"]:
        parts.append(f"{len(by['worse'])} worse")
    if by["not distinguishable"]:
        nd = by["not distinguishable"]
        listed = f": {arms_text(nd)}" if len(nd) <= TIES_IN_TEXT else " (listed beside)"
        parts.append(f"{len(nd)} not distinguishable at these seeds{listed}")
    if by["better"]:  # matching seeds only: an arm may beat it on the seeds both finished
        parts.append(f"{len(by['better'])} better on the seeds both finished: {arms_text(by['better'])}")
    if by["not tested"]:
        parts.append(f"{len(by['not tested'])} not tested (fewer than {MIN_SEEDS_FOR_CI} matching seeds)")
    if several:
        return (f"It is the baseline ({c['baseline']}) at its other settings; of the {len(rows)} arm(s) paired against "
                "it, " + "; ".join(parts) + "." if parts else f"It is the baseline ({c['baseline']}) at its other "
                "settings; no other arm shares them.")  # fmt: skip
    return "It is the baseline; paired against it, " + "; ".join(parts) + "." if parts else "It is the only arm."


def ablation_headline(c: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    a = c["ablation"]
    changes = a["changes"]
    count = {w: sum(ch["verdict"] == w for ch in changes) for w in ABLATION_WORDS.values()}
    helps, hurts = count["helps"], count["hurts"]
    parts = [f"{helps} help{'s' * (helps == 1)}", f"{hurts} hurt{'s' * (hurts == 1)}",
             f"{count['not distinguishable at these seeds']} not distinguishable at these seeds"]  # fmt: skip
    if count["not tested"]:
        parts.append(f"{count['not tested']} not tested (fewer than {MIN_SEEDS_FOR_CI} matching seeds)")
    n = len(changes)
    base = next((x for x in c["arms"] if x["arm"] == a["base"]), None)
    base_setting = f" at {base['tuned_setting']}" if base and base["tuned_setting"] else ""
    named = "" if a["base"] == "base" else f" ({a['base']})"
    over = f"seeds {seeds_text(a['seeds'])}"
    if base and base["judged_on"] == "confirming":
        over = f"confirming {over} (each setting chosen on {seeds_text(base['tuning_seeds'])})"
    out["text"] = (f"What each change does to the base{named}{base_setting}, paired over {over}, "
                   f"Holm-corrected over {a['tested']} test{'s' * (a['tested'] != 1)}: "
                   f"of {n} change{'s' * (n != 1)}, " + ", ".join(parts) + ". Lower "
                   f"{c['suite']['metric']} is better; ordered by effect:")  # fmt: skip
    out["lines"] = [ch["text"] for ch in changes]
    out["ties"] = [ch["arm"] for ch in changes if ch["verdict"] == ABLATION_WORDS["not distinguishable"]]
    out["cautions"] = cautions(c, base)
    return out


def cautions(c: dict[str, Any], best: dict[str, Any] | None) -> list[str]:
    """What limits the headline: the best arm's edge flags, how many arms are flagged, tuned arms judged on
    the seeds that chose their setting, arms without an interval."""
    out = []
    if best is not None and best["edge_flags"]:
        out.append(f"{best['arm']}: " + "; ".join(f["text"] for f in best["edge_flags"]) + ".")
    tuning = c["tuning"]
    if tuning and tuning["edge_flagged"]:
        k, n = len(tuning["edge_flagged"]), tuning["arms"]
        out.append(f"{k} of {n} tuned arms have their tuned optimum at an edge of the grid: the comparison may be "
                   "between under-tuned arms (leaderboard: Flags).")  # fmt: skip
    if tuning and tuning["judged_on_tuning_seeds"]:
        k = len(tuning["judged_on_tuning_seeds"])
        out.append(f"{k} tuned arm{'s are' if k != 1 else ' is'} judged on the seeds that chose the setting: those "
                   "means are biased low, and their intervals with them (the winner's curse). Runs of each chosen "
                   "setting on confirming seeds would judge them afresh.")  # fmt: skip
    budgets = sorted({a["tokens"] for a in c["arms"] if a.get("tokens")})
    if len(budgets) > 1 and budgets[-1] > 1.01 * budgets[0]:
        out.append(f"The arms trained on different token budgets ({budgets[0]:,} to {budgets[-1]:,} tokens, "
                   "median over seeds): a lower loss may be more data rather than a better setting. Time and "
                   "tokens to target compare at equal loss; `tokens` in [base] fixes the budget."
                   + (" The Speedup section compares each arm with the baseline at its own budget and size."
                      if c.get("speedup") else ""))  # fmt: skip
    short = [a["arm"] for a in c["arms"] if a["ci"] is None and a["mean"] is not None]
    if short:
        out.append(f"{len(short)} arm(s) have no interval (fewer than {MIN_SEEDS_FOR_CI} finished seeds or a "
                   "diverged seed): their rank follows the means alone.")  # fmt: skip
    return out


# -- time and tokens to target ----------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    """Median over every counted run, a miss as infinitely long (so an arm that missed on half its seeds or
    more has no median: it is no leader), and the range of those that reached."""
    every = np.asarray([math.inf if v is None or not np.isfinite(v) else v for v in values], dtype=float)
    x = every[np.isfinite(every)]
    if not len(x):
        return {"median": None, "min": None, "max": None}
    return {"median": num(np.median(every)), "min": num(x.min()), "max": num(x.max())}


def timing_findings(judged: pd.DataFrame, suite: Any) -> dict[str, Any]:
    """Time, tokens and steps to the target per arm, and whether the arms' time differences lie beyond the
    spread of each arm's own seeds (bench.stats.compare_times). Pruned and interrupted runs are no workload
    (they did not miss: they were stopped); a finished run that never reached the target, or a failed one,
    is a miss."""
    frame = judged.copy()
    counted = ~frame["status"].isin(("pruned", "interrupted", "running"))
    arms = list(dict.fromkeys(frame["arm"]))
    seeds = sorted(frame["seed"].dropna().unique())
    times = pd.DataFrame(np.nan, index=seeds, columns=arms, dtype=float)
    for _, r in frame[counted].iterrows():
        t = r.get("target_time")
        times.loc[r["seed"], r["arm"]] = float(t) if t is not None and not pd.isna(t) else math.inf
    reached = {a: [float(t) for t in times[a] if np.isfinite(t)] for a in arms}
    counted_of = {a: int(times[a].notna().sum()) for a in arms}
    # only an arm that reached the target on more than half its seeds is timed against others: one that
    # missed on the rest would otherwise be "fastest" on the seeds it happened to reach it on
    timed = {a: r for a, r in reached.items() if 2 * len(r) > counted_of[a]}

    def per_run(column: str, arm: str) -> list[float]:  # a miss as infinite
        return [math.inf if pd.isna(v) else float(v) for v in frame[(frame["arm"] == arm) & counted][column]]

    tokens = {a: per_run("target_tokens", a) for a in arms}
    steps = {a: per_run("target_step", a) for a in arms}
    out: dict[str, Any] = {"target": suite.target, "metric": suite.metric, "arms": [], "anova_p": None,
                           "time_ranking": "untestable", "time_within_noise": None, "lead": "tokens", "text": "",
                           "cpu_per_wall": None, "not_workloads": int((~counted).sum())}  # fmt: skip
    if not any(reached.values()):
        out["text"] = f"No run reached the target {suite.metric} of {suite.target}."
        return out
    compared, p_all = compare_times(timed) if timed else (pd.DataFrame(columns=["arm", "verdict"]), math.nan)
    compared = compared.set_index("arm")
    for a in arms:
        if a not in compared.index:
            compared.loc[a, "verdict"] = f"missed on {counted_of[a] - len(reached[a])} of {counted_of[a]}"
    taus = np.linspace(1.0, 4.0, 301)
    _, scores = performance_profile(times, taus)
    testable = int(compared["verdict"].isin(("fastest", "slower", "within noise")).sum())
    separated = compared[compared["verdict"] == "slower"].index.tolist()
    within = compared[compared["verdict"] == "within noise"].index.tolist()
    fastest = compared.index[compared["verdict"] == "fastest"][0] if (compared["verdict"] == "fastest").any() else None
    untestable = testable < 2 or math.isnan(p_all)
    noise = untestable or not separated
    out["anova_p"], out["lead"] = num(p_all), "tokens" if noise else "time"
    out["time_ranking"] = "untestable" if untestable else "noise" if noise else "resolved"
    out["time_within_noise"] = None if untestable else bool(noise)
    for a in arms:
        out["arms"].append({
            "arm": a, "reached": len(reached[a]), "of": counted_of[a],
            "time": _stats(list(times[a].dropna())), "tokens": _stats(tokens[a]), "steps": _stats(steps[a]),
            "profile_score": num(scores.get(a)), "time_verdict": compared.loc[a, "verdict"],
            "time_p_holm": num(compared.loc[a].get("p_holm")),
        })  # fmt: skip

    def by_tokens(e: dict[str, Any]) -> tuple:
        return e["tokens"]["median"] is None, e["tokens"]["median"] or 0, e["steps"]["median"] or 0

    def by_time(e: dict[str, Any]) -> tuple:
        return e["time"]["median"] is None, e["time"]["median"] or 0

    out["arms"].sort(key=by_tokens if noise else by_time)
    fewest = min((e["tokens"]["median"] for e in out["arms"] if e["tokens"]["median"] is not None), default=None)
    if fewest is None:
        tokens_text = "none: no arm reached the target on more than half of its seeds"
    else:
        leaders = [e["arm"] for e in out["arms"] if e["tokens"]["median"] == fewest]
        who = leaders[0] if len(leaders) == 1 else f"{len(leaders)} arms alike ({arms_text(leaders)})"
        tokens_text = f"the fewest tokens, {fewest:,.0f} (median over seeds, a miss counted as never), by {who}"
    if untestable:
        out["text"] = (f"Time to target is not ranked: fewer than two arms have two or more seeds that reached the "
                       f"target with any spread between them, so there is no spread of identical configurations to "
                       f"judge their differences against. Tokens to target lead: {tokens_text}.")  # fmt: skip
    elif noise:
        test = f"Welch's ANOVA on log seconds, p {p_all:.2g}"
        if p_all < ALPHA:
            test += "; no arm is slower than the fastest after Holm correction"
        out["text"] = (f"Time to target: among the {testable} arms whose seeds' times to target differ, the "
                       f"differences lie within the spread of their own seeds ({test}): the time ranking is noise "
                       f"on this machine. Tokens to target lead: {tokens_text}.")  # fmt: skip
    else:
        f = compared.loc[fastest]
        within_text = f". Within it: {arms_text(within)}" if within else ""
        out["text"] = (f"Time to target: {fastest} is fastest ({fmt(f['median'], 2)} s median, {fmt(f['min'], 2)}-"
                       f"{fmt(f['max'], 2)} s over its seeds); slower beyond the spread of the seeds: "
                       f"{arms_text(separated)}{within_text}.")  # fmt: skip
    unjudged = sum(1 for a in out["arms"] if a["time_verdict"] == "not tested" and a["reached"])
    if unjudged and not untestable:
        out["text"] += (f" {unjudged} arm{'s' * (unjudged != 1)} that reached the target on fewer than two seeds, or "
                        "in the same time on each, are not judged by time.")  # fmt: skip
    cpu = cpu_per_wall(frame[counted])
    if cpu is not None:
        out["cpu_per_wall"] = cpu
        if cpu["max"] > cpu["min"] * 1.005:
            varied = ": the machine's load varied between runs" if cpu["max"] > 1.2 * cpu["min"] else ""
            spread = f"ranged {cpu['min']:.2f}-{cpu['max']:.2f} over the runs{varied}"
        else:
            spread = f"was {cpu['median']:.2f} in every run"
        out["text"] += f" CPU seconds per training second {spread}."
    return out


def cpu_per_wall(frame: pd.DataFrame) -> dict[str, float] | None:
    """Process CPU seconds per wall second of the timed steps, over the runs that recorded both."""
    if "cpu_time" not in frame:
        return None
    cpu = pd.to_numeric(frame["cpu_time"], errors="coerce")
    wall = pd.to_numeric(frame["train_time"], errors="coerce")
    ratio = (cpu / wall)[(cpu > 0) & (wall > 0)]
    if ratio.empty:
        return None
    return {"min": float(ratio.min()), "median": float(ratio.median()), "max": float(ratio.max())}


# -- search ------------------------------------------------------------------------------------------


def search_findings(study: Any) -> dict[str, Any]:
    """A search study's trials by status and its parameter importances, withheld below
    MIN_TRIALS_FOR_IMPORTANCE complete trials."""
    import optuna

    from bench.codec import trial_status

    trials = [t for t in study.get_trials(deepcopy=False) if trial_status(t).value != "running"]
    by_status = {s: sum(trial_status(t).value == s for t in trials) for s in STATUSES}
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    objectives = study.user_attrs.get("search", {}).get("objectives", [])
    out: dict[str, Any] = {"study": study.study_name, "trials": {k: v for k, v in by_status.items() if v},
                           "complete_trials": complete, "objectives": objectives,
                           "min_trials_for_importance": MIN_TRIALS_FOR_IMPORTANCE, "importances": None}  # fmt: skip
    if len(study.directions) > 1:
        out["importance_note"] = ("A multi-objective search: no parameter importances (Optuna's evaluator ranks "
                                  "one objective).")  # fmt: skip
    elif complete < MIN_TRIALS_FOR_IMPORTANCE:
        out["importance_note"] = (f"Parameter importances withheld: they would rest on {complete} complete trial"
                                  f"{'s' * (complete != 1)}, fewer than the {MIN_TRIALS_FOR_IMPORTANCE} that Optuna's "
                                  "PED-ANOVA evaluator asks for (5 trials in its top 10%).")  # fmt: skip
    else:
        from bench.stats import param_importances

        values = param_importances(study)
        out["importances"] = {k: num(v) for k, v in values.items()} or None
        out["importance_note"] = (f"Parameter importances by Optuna's PED-ANOVA evaluator over {complete} complete "
                                  "trials." if values else f"No parameter importances: the {complete} complete "
                                  "trials do not vary a parameter they all set.")  # fmt: skip
    return out


# -- speedup in data, across sizes ---------------------------------------------------------------------


def tokens_text(t: float | None) -> str:
    """A token count as the report prints it: 2.31M, 340.8k, 950."""
    if t is None or not math.isfinite(t):
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if t >= div:
            return f"{t / div:.3g}{unit}"
    return f"{t:.0f}"


def times_text(x: float | None) -> str:
    return "unbounded" if x is None or math.isinf(x) else f"{x:.2f}x"


def scale_axes(parts: Sequence[dict[str, str]], tokens: Sequence[float], sizes: Sequence[int]) -> list[str]:
    """The axes that set a run's budget or its model's size: those whose values, all else alike, give runs of
    other recorded tokens (beyond bench.scaling.SAME_BUDGET) or other parameter counts."""
    from bench.scaling import SAME_BUDGET

    keys = list(dict.fromkeys(k for p in parts for k in p))
    out = []
    for key in keys:
        groups: dict[tuple, dict[Any, list[tuple[float, int]]]] = {}
        for p, t, n in zip(parts, tokens, sizes, strict=True):
            rest = tuple((k, v) for k, v in p.items() if k != key)
            groups.setdefault(rest, {}).setdefault(p.get(key), []).append((float(t), int(n)))
        for by_value in groups.values():
            scales = [(float(np.median([t for t, _ in v])), {n for _, n in v}) for v in by_value.values()]
            budgets = [t for t, _ in scales]
            if len({frozenset(n) for _, n in scales}) > 1 or max(budgets) > min(budgets) * SAME_BUDGET:
                out.append(key)
                break
    return out


def speedup_findings(suite: Any, judged: pd.DataFrame, runs_of: dict[str, Any], baselines: list[str],
                     arms: list[dict[str, Any]], design: str) -> dict[str, Any] | None:  # fmt: skip
    """The baseline's final loss against its token budget at each model size and every other arm's speedup
    in tokens (bench.scaling), across sizes the speedup's trend and the arms' rank correlation; each arm at the
    setting the leaderboard ranks it at, on the seeds that judge it. None unless a grid's runs vary their
    recorded budget or their model's size."""
    from bench import scaling

    if design != "grid" or not {"tokens", "n_params"} <= set(judged.columns) or judged.empty:
        return None
    rows = judged[judged["status"].isin(FINISHED)].copy()
    rows = rows[
        pd.to_numeric(rows["tokens"], errors="coerce").notna() & pd.to_numeric(rows["n_params"], errors="coerce").gt(0)
    ]
    if rows.empty:
        return None
    parts = [suite.arm_parts(runs_of[h]) if h in runs_of else label_parts(a)
             for h, a in zip(rows["run_hash"], rows["arm"], strict=True)]  # fmt: skip
    rows["tokens"] = rows["tokens"].astype(float)
    rows["size"] = rows["n_params"].astype(int)
    scaled = scale_axes(parts, rows["tokens"].tolist(), rows["size"].tolist())
    if not scaled:
        return None
    rows["method"] = [", ".join(f"{k}={v}" for k, v in p.items() if k not in scaled) or "all" for p in parts]
    none = pd.Series([None] * len(rows), index=rows.index)
    if "env.step_flops" in rows:  # the results frame flattens a run's env into columns
        step_flops = pd.to_numeric(rows["env.step_flops"], errors="coerce")
    else:
        step_flops = pd.Series([e.get("step_flops") if isinstance(e, dict) else None
                                for e in rows.get("env", none)], index=rows.index, dtype=float)  # fmt: skip
    steps = pd.to_numeric(rows["steps"], errors="coerce") if "steps" in rows else none.astype(float)
    rows["flops"] = (step_flops * steps).where(step_flops > 0)
    method_of = dict(zip(rows["arm"], rows["method"], strict=True))
    base_methods = list(dict.fromkeys(method_of[a] for a in baselines if a in method_of))
    if not base_methods:
        return None
    baseline = base_methods[0]
    found = scaling.speedups(rows[["method", "size", "tokens", "seed", "value", "arm", "flops"]], baseline)
    by_arm = {a["arm"]: a for a in arms}
    out: dict[str, Any] = {
        "baseline": baseline,
        "scale_axes": scaled,
        "methods": list(dict.fromkeys([baseline, *rows["method"]])),
        "method": speedup_method(found),
        "fits": [fit_findings(f, baseline, by_arm) for f in found["sizes"]],
        "cells": [cell_findings(c, by_arm) for c in found["cells"]],
        "entries": [entry_findings(e, found, baseline, by_arm) for e in found["entries"]],
        "trends": [trend_findings(t, baseline) for t in found["trends"]],
        "rank_stability": [rank_findings(r) for r in found["rank_stability"]],
    }
    out["text"] = speedup_text(out)
    out["cautions"] = speedup_cautions(out, by_arm)
    return out


def speedup_method(found: dict[str, Any]) -> dict[str, Any]:
    from bench.scaling import BETA_RANGE

    return {
        "fit": "L(D) = E + B * (D / d_ref)^-beta by weighted least squares over the baseline's budgets (weights: "
        f"seeds), E >= 0, B >= 0, beta in [{BETA_RANGE[0]}, {BETA_RANGE[1]}]; d_ref the budgets' geometric mean",
        "fallback": "two budgets: a pure power law L = B * D^-beta through both (no floor); one budget: no fit",
        "speedup": "D_base(L_X) / D_X: the budget at which the baseline's fit reaches the arm's mean loss, over "
        "the tokens the arm trained on",
        "interval": "parametric bootstrap: per draw, the seed variance from its scaled inverse chi-square "
        "distribution, every cell's mean normal around the observed one, the baseline refit; the 2.5% and 97.5% "
        "points of the draws",
        "draws": found["draws"],
        "min_noise_df": MIN_NOISE_DF,
        "seed": found["seed"],
        "confidence": found["confidence"],
        "trend": "log speedup against log parameters by least squares over the sizes, per arm and budget rank; "
        "its interval from refitting every draw",
        "rank": "Kendall's tau (scipy.stats.kendalltau) between the arms' mean losses at two sizes, per budget "
        "rank; its interval over the draws",
    }


def fit_findings(f: dict[str, Any], baseline: str, by_arm: dict[str, Any]) -> dict[str, Any]:
    out = {
        "size": f["size"], "form": f["form"], "E": num(f["E"]), "B": num(f["B"]), "beta": num(f["beta"]),
        "d_ref": num(f["d_ref"]), "at_bound": f["at_bound"], "draws_at_bound": num(f["draws_at_bound"]),
        "budgets": [num(t) for t in f["budgets"]],
        "points": [{"tokens": num(p["tokens"]), "mean": num(p["mean"]), "n": p["n"], "arm": p["arm"],
                    "tuned_setting": by_arm.get(p["arm"], {}).get("tuned_setting")} for p in f["points"]],
        "left_out": f["left_out"], "noise_sd": num(f["noise_sd"]), "noise_df": f["noise_df"],
        "noise_model": f["noise_model"],
        "noise_by_method": {m: {"sd": num(math.sqrt(v)) if math.isfinite(v) else None, "df": df}
                            for m, (v, df) in f["noise_by_method"].items()},
        "unequal_noise": None,
    }  # fmt: skip
    from bench.scaling import unequal_noise

    uneven = unequal_noise(f["noise_by_method"])
    if uneven is not None and uneven["p"] < ALPHA:
        out["unequal_noise"] = {k: num(v) if isinstance(v, float) else v for k, v in uneven.items()}
    k, size = len(f["points"]), f"{f['size']:,} parameters"
    if f["form"] == "none":
        out["text"] = (f"At {size}: {baseline} has {k} budget{'s' * (k != 1)} with a finite mean: no fit, and no "
                       "speedup at this size.")  # fmt: skip
    else:
        curve = (f"L(D) = {f['E']:.4f} + {f['B']:.4f} (D / {tokens_text(f['d_ref'])})^-{f['beta']:.3f}"
                 if f["form"] == "saturating" else
                 f"L(D) = {f['B']:.4f} (D / {tokens_text(f['d_ref'])})^-{f['beta']:.3f}")  # fmt: skip
        how = " (three budgets, three parameters: the curve passes through their means)" if k == 3 and not f[
            "at_bound"] else ""  # fmt: skip
        if f["form"] == "power":
            how = (" (two budgets fix no floor: a pure power law through both; a loss that saturates lies above it "
                   "beyond them, so speedups extrapolated past the largest budget read low)")  # fmt: skip
        out["text"] = f"At {size}: {baseline}'s final loss fits {curve} over {k} budgets{how}."
        if f["at_bound"]:
            out["text"] += (" The fit lies on a bound (a floor at 0, a flat curve, or beta at the end of its range): "
                            "the budgets do not pin the curve down.")  # fmt: skip
    if f["left_out"]:
        out["text"] += (
            " Left out (a seed diverged): " + ", ".join(tokens_text(x["tokens"]) for x in f["left_out"]) + "."
        )
    if f["noise_df"]:
        out["text"] += (f" Seed noise: sd {f['noise_sd']:.4f} over {f['noise_df']} degrees of freedom "
                        f"({f['noise_model']}).")  # fmt: skip
    else:
        out["text"] += " One seed per cell: no noise estimate, no intervals."
    return out


def cell_findings(c: dict[str, Any], by_arm: dict[str, Any]) -> dict[str, Any]:
    low, high = c["ci"]
    arm = by_arm.get(c["arm"], {})
    return {"size": c["size"], "method": c["method"], "arm": c["arm"], "level": c["level"], "tokens": num(c["tokens"]),
            "tokens_per_param": num(c["tokens"] / c["size"]), "flops": num(c["flops"]), "mean": num(c["mean"]),
            "n": c["n"], "seeds": c["seeds"], "ci": [num(low), num(high)] if math.isfinite(low) else None,
            "tuned_setting": arm.get("tuned_setting"), "judged_on": arm.get("judged_on")}  # fmt: skip


# An interval is stated as a 95% interval where it rests on what the simulations validated (the saturating
# fit over three or more budgets; seed noise on 8 or more degrees of freedom there: docs/conclusions.md,
# Speedup). Refits on a bound of the curve do not count against it: such intervals covered 96% there.
MIN_NOISE_DF = 4


def entry_findings(e: dict[str, Any], found: dict[str, Any], baseline: str, by_arm: dict[str, Any]) -> dict[str, Any]:
    fit = next(f for f in found["sizes"] if f["size"] == e["size"])
    low, high = e["ci"]
    arm = by_arm.get(e["arm"], {})
    out = {
        "size": e["size"], "method": e["method"], "arm": e["arm"], "level": e["level"], "tokens": num(e["tokens"]),
        "tokens_per_param": num(e["tokens"] / e["size"]), "mean": num(e["mean"]), "n": e["n"], "seeds": e["seeds"],
        "tuned_setting": arm.get("tuned_setting"), "judged_on": arm.get("judged_on"),
        "d_base": num(e["d_base"]), "speedup": num(e["speedup"]), "status": e["status"],
        "ci": [num(low), None if math.isinf(high) else num(high)] if not math.isnan(low) else None,
        "unbounded": num(e["unbounded"]), "extrapolated": e["extrapolated"],
        "interval_extrapolates": e["interval_extrapolates"], "trusted": False, "untrusted_why": None,
    }  # fmt: skip
    where = f"{e['method']} at {e['size']:,} parameters, {tokens_text(e['tokens'])} tokens"
    if e["status"] == "diverged":
        out["text"] = f"{where}: a seed diverged: no speedup."
        return out
    if e["status"] == "no fit":
        out["text"] = f"{where}: mean loss {fmt(e['mean'])}; {baseline} has no fit at this size: no speedup."
        return out
    if e["status"] == "below floor":
        out["text"] = (f"{where}: mean loss {fmt(e['mean'])} lies below {baseline}'s fitted floor E = "
                       f"{fmt(fit['E'])}: no budget of the baseline reaches it on this fit, so no speedup is "
                       "stated.")  # fmt: skip
        return out
    text = (f"{where}: mean loss {fmt(e['mean'])}; {baseline}'s fit reaches it at {tokens_text(e['d_base'])} "
            f"tokens: speedup {times_text(e['speedup'])}")  # fmt: skip
    if out["ci"] is None:
        text += " (no interval: one seed per cell gives no noise estimate)"
    else:
        text += f", 95% interval [{times_text(low)}, {times_text(high)}]"
        why = []
        if fit["noise_df"] < MIN_NOISE_DF:
            why.append(f"the seed noise rests on {fit['noise_df']} degree(s) of freedom")
        if fit["form"] == "power":
            why.append("two budgets fix no floor")
        out["trusted"] = not why
        out["untrusted_why"] = "; ".join(why) or None
        if why:
            text += f" (not to be trusted as a 95% interval: {'; '.join(why)})"
    budgets = fit["budgets"]
    if e["extrapolated"] == "beyond":
        text += f"; extrapolated beyond {baseline}'s largest budget, {tokens_text(max(budgets))}"
    elif e["extrapolated"] == "below":
        text += f"; extrapolated below {baseline}'s smallest budget, {tokens_text(min(budgets))}"
    elif e["interval_extrapolates"]:
        text += f"; the interval reaches past {baseline}'s budgets"
    out["text"] = text + "."
    return out


def trend_findings(t: dict[str, Any], baseline: str) -> dict[str, Any]:
    low, high = t["slope_ci"]
    out = {"method": t["method"], "level": t["level"], "sizes": t["sizes"],
           "tokens_per_param": num(t["tokens_per_param"]),
           "slope": num(t["slope"]), "intercept": num(t["intercept"]),
           "slope_ci": [num(low), num(high)] if math.isfinite(low) and math.isfinite(high) else None,
           "band": [[num(v) for v in row] for row in t["band"]], "extrapolated_points": t["extrapolated_points"],
           "no_interval": t["no_interval"]}  # fmt: skip
    per = 2 ** t["slope"]
    text = (f"{t['method']} at about {t['tokens_per_param']:.0f} tokens per parameter: the speedup over {baseline} "
            f"changes by a factor of {per:.2f} per doubling of parameters over {len(t['sizes'])} sizes")  # fmt: skip
    if out["slope_ci"]:
        text += f" (95% interval {2**low:.2f} to {2**high:.2f})"
    else:
        text += f" (no interval: {t['no_interval']})"
    if t["extrapolated_points"]:
        text += f"; {t['extrapolated_points']} of its points are extrapolated"
    out["text"] = text + "."
    return out


def rank_findings(r: dict[str, Any]) -> dict[str, Any]:
    pairs = []
    for p in r["pairs"]:
        low, high = p["ci"]
        pairs.append({"sizes": list(p["sizes"]), "arms": p["arms"], "tau": num(p["tau"]),
                      "ci": [num(low), num(high)] if math.isfinite(low) else None})  # fmt: skip
    taus = ", ".join(f"{a:,} vs {b:,} parameters: tau {p['tau']:+.2f}"
                     + (f" [{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}]" if p["ci"] else " (no interval)")
                     for p in pairs for a, b in [p["sizes"]])  # fmt: skip
    same = all(p["tau"] == 1 for p in pairs)
    text = (f"Budget {r['level'] + 1} of each size: the arms' order by mean loss "
            f"{'is the same at every size' if same else 'changes between sizes'} ({taus}).")  # fmt: skip
    return {"level": r["level"], "order": {str(k): v for k, v in r["order"].items()}, "pairs": pairs, "text": text}


def speedup_text(s: dict[str, Any]) -> list[str]:
    """The section's verdict: what the speedups rest on, then per arm what they say."""
    entries = s["entries"]
    judged = sorted({e["judged_on"] for e in entries if e["judged_on"]})
    lines = [f"Speedup over {s['baseline']} in tokens: the budget {s['baseline']} would need, on its fitted loss "
             "curve, to reach each arm's mean final loss, over the tokens the arm trained on (above 1: the arm "
             "needs fewer tokens). Budget and size are read from each run's recorded tokens and parameters "
             f"(axes {', '.join(s['scale_axes'])})"
             + (f"; arms judged on {' and '.join(j + ' seeds' for j in judged)}." if judged else ".")]  # fmt: skip
    for method in s["methods"][1:]:
        mine = [e for e in entries if e["method"] == method]
        stated = [e for e in mine if e["speedup"] is not None]
        if not stated:
            lines.append(f"{method}: no speedup can be stated ({len(mine)} cell(s); see the table).")
            continue
        inside = [e for e in stated if e["extrapolated"] is None]
        above = [e for e in stated if e["ci"] and e["ci"][0] > 1]
        below = [e for e in stated if e["ci"] and e["ci"][1] is not None and e["ci"][1] < 1]
        values = [e["speedup"] for e in inside] or [e["speedup"] for e in stated]
        span = (f"from {min(values):.2f}x to {max(values):.2f}x over the {len(inside)} within the baseline's budgets"
                if inside else f"{min(values):.2f}x to {max(values):.2f}x, every one extrapolated")  # fmt: skip
        line = (f"{method}: speedups {span} ({len(stated)} of {len(mine)} stated); the interval lies wholly above 1 in "
                f"{len(above)}, wholly below 1 in {len(below)}")  # fmt: skip
        untrusted = [e for e in stated if e["ci"] and not e["trusted"]]
        if untrusted:
            line += f"; {len(untrusted)} interval(s) not to be trusted (see the table)"
        lines.append(line + ".")
    lines += [t["text"] for t in s["trends"]]
    lines += [r["text"] for r in s["rank_stability"]]
    return lines


def speedup_cautions(s: dict[str, Any], by_arm: dict[str, Any]) -> list[str]:
    out = []
    arms = {c["arm"] for c in s["cells"]}
    flagged = sorted(a for a in arms if by_arm.get(a, {}).get("edge_flags"))
    if flagged:
        out.append(f"{len(flagged)} of the {len(arms)} arms compared have their tuned rate at the edge of the grid "
                   "they ran (leaderboard: Flags): an under-tuned baseline overstates every speedup against it, an "
                   "under-tuned arm understates its own.")  # fmt: skip
    curse = sorted(a for a in arms if by_arm.get(a, {}).get("judged_on") == "tuning")
    if curse:
        out.append(f"{len(curse)} arm(s) are judged on the seeds that chose their setting: their means, and the "
                   "speedups read from them, flatter them (the winner's curse).")  # fmt: skip
    for f in s["fits"]:
        u = f["unequal_noise"]
        if u:
            out.append(f"At {f['size']:,} parameters the seeds of {u['high']} spread more than those of {u['low']} "
                       f"(seed sd {u['sd_high']:.3f} against {u['sd_low']:.3f}; F test p = {u['p']:.2g}): the "
                       "intervals pool one seed noise over every arm, so there they overstate the uncertainty of "
                       "the quieter arms and understate that of the noisier one.")  # fmt: skip
    beyond = [e for e in s["entries"] if e["extrapolated"]]
    if beyond:
        out.append(f"{len(beyond)} of {len(s['entries'])} speedups extrapolate the baseline's fit past the budgets it "
                   "ran: the fit's form, not the runs, decides them.")  # fmt: skip
    return out


# -- learning-rate sensitivity ---------------------------------------------------------------------------

LR_KEY = "optimizer.lr"


def lr_findings(suite: Any, frame: pd.DataFrame, runs_of: dict[str, Any]) -> dict[str, Any] | None:
    """Mean loss against learning rate per arm (the arm without its rate), over the seeds that tuned it (the
    confirming seeds ran one rate only), with the leaderboard's Student-t interval; and how wide a contiguous
    range of rates around the best lies within bench.scaling.LR_TOLERANCE of the best mean. None unless some
    arm ran two or more rates."""
    from bench.scaling import LR_TOLERANCE, robust_range

    rows = frame[frame["status"].isin(FINISHED) & frame["run_hash"].isin(runs_of)]
    if rows.empty:
        return None
    tune = tuple(dict.fromkeys([*suite.tune, LR_KEY]))
    lines: dict[str, dict[float, list[float]]] = {}
    for h, value in zip(rows["run_hash"], rows["value"], strict=True):
        run = runs_of[h]
        lr = run.config.optimizer.params.get("lr") if hasattr(run.config.optimizer, "params") else None
        if lr is None:
            continue
        line = ", ".join(f"{k}={v}" for k, v in suite.untuned_parts(run, tune).items()) or "all"
        lines.setdefault(line, {}).setdefault(float(lr), []).append(float(value))
    lines = {k: v for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return None
    arms = []
    for line, by_rate in lines.items():
        rates = sorted(by_rate)
        means = [float(np.mean(by_rate[r])) for r in rates]
        robust = robust_range(rates, means, LR_TOLERANCE)
        points = []
        for r, m, inside in zip(rates, means, robust["within"], strict=True):
            low, high = mean_ci(by_rate[r])
            points.append({"lr": r, "mean": num(m), "n": len(by_rate[r]), "within": inside,
                           "ci": [num(low), num(high)] if math.isfinite(low) else None})  # fmt: skip
        entry = {"arm": line, "points": points, "best_lr": robust["best"], "low": robust["low"],
                 "high": robust["high"], "width_decades": num(robust["width"]), "open_low": robust["open_low"],
                 "open_high": robust["open_high"], "limit": num(robust.get("limit"))}  # fmt: skip
        entry["best_mean"] = num(min((m for m in means if math.isfinite(m)), default=math.nan))
        entry["text"] = robust_text(entry, LR_TOLERANCE)
        arms.append(entry)
    return {
        "setting": LR_KEY,
        "tolerance": LR_TOLERANCE,
        "tolerance_kind": "relative: mean loss at most (1 + tolerance) x the arm's best mean",
        "seeds": "the seeds that tuned each arm (its confirming seeds ran one rate only)",
        "arms": arms,
        "text": (f"How forgiving each arm is of its learning rate: the width, in decades, of the contiguous run of "
                 f"rates around its best whose mean {suite.metric} lies within {LR_TOLERANCE:.0%} of the best mean. "
                 "A width that reaches an end of the rates tried is a lower bound (marked at least)."),
    }  # fmt: skip


def robust_text(e: dict[str, Any], tolerance: float) -> str:
    if e["best_lr"] is None:
        return f"{e['arm']}: no rate has a finite mean."
    text = f"{e['arm']}: best rate {label(e['best_lr'])} (mean {fmt(e['best_mean'])}); "
    if e["low"] == e["high"]:
        text += f"no other rate tried lies within {tolerance:.0%} of it: width 0 decades at this grid's resolution"
    else:
        least = "at least " if e["open_low"] or e["open_high"] else ""
        ends = [side for side, hit in (("smallest", e["open_low"]), ("largest", e["open_high"])) if hit]
        text += (f"rates {label(e['low'])} to {label(e['high'])} lie within {tolerance:.0%}: {least}"
                 f"{e['width_decades']:.2f} decades")  # fmt: skip
        if ends:
            text += f" (the range reaches the {' and '.join(ends)} rate tried)"
    return text + "."


def dumps(conclusions: dict[str, Any]) -> str:
    """The conclusions as JSON text: stable key order, no NaN (invalid JSON) anywhere."""
    return json.dumps(conclusions, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
