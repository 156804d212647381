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
    paired_comparisons,
    performance_profile,
    summarize,
)

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


def baseline_arm(suite: Any, frame: pd.DataFrame, design: str | None = None) -> str:
    """The suite's `baseline` arm if it names one, else the first combination's (each axis's first value);
    an ablation's base."""
    arms = list(dict.fromkeys(frame["arm"]))
    if suite.baseline in arms:
        return suite.baseline
    if (design or suite.design) == "ablation":
        return "base" if "base" in arms else arms[0]
    runs = suite.runs()
    candidate = suite.arm_label_of(runs[0]) if runs else None
    return candidate if candidate in arms else arms[0]


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


def judged_runs(suite: Any, frame: pd.DataFrame, confirming: pd.Series) -> tuple[pd.DataFrame, dict[str, dict]]:
    """A tuned suite's runs as the leaderboard ranks them: per arm (the arm without its tuned settings), the
    setting with the lowest mean over the tuning seeds, judged on its confirming runs where it has any,
    else on the tuning runs. Where the confirming runs of an arm are of one setting alone, that setting is
    the one chosen (the tuning protocol chose it when it trained them). Returns those runs (`arm` the
    untuned arm, `tuned_arm` the setting's arm) and per arm: tuned setting and values, edge flags on the grid
    as the protocol extended it, what the protocol added and why, tuning and confirming seeds."""
    settled = {h: (s, v) for h, s, v in zip(frame["run_hash"], frame["status"], frame["value"], strict=True)}
    protocol = stages(suite, settled)
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
    baseline = baseline_arm(suite, judged if len(judged) else frame, design)
    comparisons = paired_comparisons(judged, baseline) if design != "search" else None
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
        "comparisons": comparison_findings(comparisons, baseline, design),
        "ablation": ablation_findings(comparisons, baseline, arms, judged) if design == "ablation" else None,
        "timing": timing_findings(judged, suite) if suite.target is not None and len(judged) else None,
        "search": [search_findings(study) for study in studies],
    }
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
            "arm": r["arm"], "pairs": int(r["pairs"]), "mean_diff": num(r["mean_diff"]),
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
    baseline = c["baseline"]
    if best["arm"] == baseline:
        text += " " + baseline_is_best_text(c, out)
    else:
        paired = rows.get(best["arm"])
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


def baseline_is_best_text(c: dict[str, Any], out: dict[str, Any]) -> str:
    """The best arm is the baseline: the paired table tells how every other arm stands against it."""
    rows = c["comparisons"]["rows"]
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
                   "tokens to target compare at equal loss; `tokens` in [base] fixes the budget.")  # fmt: skip
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


def dumps(conclusions: dict[str, Any]) -> str:
    """The conclusions as JSON text: stable key order, no NaN (invalid JSON) anywhere."""
    return json.dumps(conclusions, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
