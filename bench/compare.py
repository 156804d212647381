"""The same suite from two sides, arm by arm: two stores, two commits, or two settings of one field.

`compare(suite, side, against_suite, against)` reads each side's runs of the suite (bench.results.suite_results,
with the side's own `--set` overrides), judges tuned arms as the conclusions do (each side at its own chosen setting,
on its confirming seeds where it has them: bench.conclusions.judged_runs) and tests each arm's difference,
side minus against, with bench.stats.between: paired by seed where both sides finished three or more seeds
in common, Welch's t-test otherwise, Holm-adjusted over the arms tested, verdicts in the conclusions' words.
The result is one JSON-ready dict, documented in docs/compare.md (COMPARE_SCHEMA_VERSION).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.codec import STATUSES
from bench.conclusions import ABLATION_WORDS, confirming_mask, fmt, judged_runs, num, seeds_text
from bench.registry import ConfigError
from bench.results import suite_results
from bench.stats import ALPHA, CONFIDENCE, MIN_SEEDS_FOR_CI, between

COMPARE_SCHEMA_VERSION = 1
ENV_KEYS = ("commit", "optbench", "torch", "device_name")  # what a side's runs say about where they came from


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a store and the `--set` overrides its runs were made with."""

    storage: str | None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    flag: str = "--storage"  # how the command line named it, for messages


def side_frame(suite: Any, side: Side) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """(every run of the suite the side holds, the runs its arms are judged on, tuned arms' choices).
    A store without the suite's runs is bad input naming it."""
    frame = suite_results(suite, side.storage, with_curves=False)
    if frame.empty:
        from bench.store import default_storage_url

        where = side.storage or default_storage_url()
        settings = f" with {', '.join(f'{k}={v}' for k, v in side.overrides.items())}" if side.overrides else ""
        other = frame.attrs.get("left_out", 0)
        hint = ""
        if other:  # the suite's runs are there, made with other settings or by another version of the file
            flag = "--set" if side.flag == "--storage" else "--against-set"
            hint = (f" ({other} stored run{'s' * (other != 1)} of it differ: made with other settings? name them "
                    f"with {flag})")  # fmt: skip
        raise ConfigError(side.flag, f"{where} holds no runs of suite '{suite.name}'{settings}{hint}")
    frame = frame.copy()
    frame["value"] = frame["value"].astype(float)
    if not suite.tune:
        return frame, frame, {}
    judged, info = judged_runs(suite, frame, confirming_mask(frame, None))
    return frame, judged, info


def environment(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The distinct values of a side's run environments (env.commit, ...), most common first."""
    out = {}
    for key in ENV_KEYS:
        if f"env.{key}" in frame:
            values = frame[f"env.{key}"]
        elif "env" in frame:  # a frame whose env is one dict per run
            values = frame["env"].map(lambda e, k=key: e.get(k) if isinstance(e, Mapping) else None)
        else:
            continue
        out[key] = [str(v) for v, _ in Counter(v for v in values if v is not None and not pd.isna(v)).most_common()]
    return out


def compare(suite: Any, side: Side, against_suite: Any, against: Side, pair: bool = True) -> dict[str, Any]:
    """Every arm of the suite on `side` against `against` (docs/compare.md). `suite` and `against_suite`: the
    suite file loaded with each side's overrides (they imply each side's runs)."""
    frames, judged, info = {}, {}, {}
    for key, su, s in (("storage", suite, side), ("against", against_suite, against)):
        frames[key], judged[key], info[key] = side_frame(su, s)
    if side.storage == against.storage and set(frames["storage"]["run_hash"]) == set(frames["against"]["run_hash"]):
        raise ConfigError("--set", "the two sides are the same runs: these settings change no run of the suite (an "
                          "axis may set the field in every arm)")  # fmt: skip
    table = between(judged["storage"], judged["against"], pair=pair)
    hashes = {k: judged[k].groupby("arm")["run_hash"].agg(frozenset).to_dict() for k in judged}
    one_store = side.storage == against.storage
    arms = []
    for _, row in table.iterrows():
        arm = row["arm"]
        entry: dict[str, Any] = {
            "arm": arm,
            "present": {"both": "both", "a": "storage only", "b": "against only"}[row["present"]],
            "test": row["test"] if isinstance(row["test"], str) else None,  # pandas reads None as NaN
            "runs": {"storage": int(row["n_a"]), "against": int(row["n_b"])},
            "pairs": int(row["pairs"]) if row["test"] == "paired" else None,
            "mean": {"storage": num(row["mean_a"]), "against": num(row["mean_b"])},
            "difference": num(row["mean_diff"]),
            "ci": [num(row["diff_low"]), num(row["diff_high"])] if not math.isnan(row["diff_low"]) else None,
            "p": num(row["p"]),
            "p_holm": num(row["p_holm"]),
            "effect_size": num(row["effect_size"]),
            "effect_size_ci": [num(row["d_low"]), num(row["d_high"])] if not math.isnan(row["d_low"]) else None,
            "verdict": row["verdict"],
            "words": ABLATION_WORDS[row["verdict"]],
            "tuned": {k: tuned_entry(info[k].get(arm)) for k in ("storage", "against")} if suite.tune else None,
            # one store, one arm's very runs on both sides: the settings do not touch this arm
            "same_runs": one_store and hashes["storage"].get(arm, frozenset()) == hashes["against"].get(arm),
        }
        entry["text"] = arm_text(entry)
        arms.append(entry)
    tested = sum(a["p"] is not None for a in arms)
    counts = Counter(a["words"] for a in arms if a["present"] == "both" and not a["same_runs"])
    out: dict[str, Any] = {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "suite": {
            "name": suite.name,
            "description": suite.description,
            "design": suite.design,
            "metric": suite.metric,
            "tune": list(suite.tune),
            "seeds": list(suite.seeds),
        },  # fmt: skip
        "sides": {k: side_summary(s, frames[k]) for k, s in (("storage", side), ("against", against))},
        "method": {
            "difference": "storage - against: negative where the --storage side's metric is lower (better)",
            "confidence": CONFIDENCE,
            "alpha": ALPHA,
            "min_seeds": MIN_SEEDS_FOR_CI,
            "paired": "where both sides finished min_seeds or more seeds of the arm in common (and pairing is on): "
            "paired t-test over those seeds, Student-t interval of the mean per-seed difference, effect size "
            "d = mean(diff) / sd(diff) with its noncentral-t interval",
            "welch": "otherwise: Welch's t-test over each side's finished runs, Welch's interval of the "
            "difference of means; no effect size",
            "holm": "p adjusted by Holm over the arms tested; the verdict is by the adjusted p against alpha",
            "tuned": "a tuned arm is compared at each side's own chosen setting, on its confirming seeds where "
            "it has them, as the conclusions judge it",
            "lower_is_better": True,
            "pairing": "on" if pair else "off",
        },
        "tested": tested,
        "counts": {
            **{w: counts.get(w, 0) for w in ABLATION_WORDS.values()},
            "storage only": sum(a["present"] == "storage only" for a in arms),
            "against only": sum(a["present"] == "against only" for a in arms),
            "same runs": sum(a["same_runs"] for a in arms),
        },
        "arms": arms,
    }
    out["headline"] = headline(out)
    return out


def tuned_entry(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {k: info[k] for k in ("tuned_setting", "judged_on", "tuning_seeds", "confirming_seeds")}


def side_summary(side: Side, frame: pd.DataFrame) -> dict[str, Any]:
    from bench.store import default_storage_url

    return {
        "storage": side.storage or default_storage_url(),
        "overrides": {k: v if isinstance(v, str | int | float | bool) else repr(v) for k, v in side.overrides.items()},
        "runs": len(frame),
        "by_status": {s: int((frame["status"] == s).sum()) for s in STATUSES},
        "left_out": int(frame.attrs.get("left_out", 0)),
        "seeds": sorted(int(s) for s in frame["seed"].dropna().unique()),
        "environment": environment(frame),
    }


def arm_text(a: dict[str, Any]) -> str:
    """One sentence per arm, as the table's row says it."""
    if a["present"] != "both":
        n = a["runs"]["storage" if a["present"] == "storage only" else "against"]
        where = a["present"].split()[0]
        return f"{a['arm']}: in the --{where} store only ({n} finished run{'s' * (n != 1)}): not compared."
    if a["same_runs"]:
        return f"{a['arm']}: the same runs on both sides (the settings do not change this arm): not compared."
    how = (f"paired over {a['pairs']} seeds" if a["test"] == "paired"
           else f"Welch over {a['runs']['storage']} and {a['runs']['against']} runs")  # fmt: skip
    if a["ci"] is None:
        return (f"{a['arm']}: difference {fmt(a['difference'], sign=True)} ({how}): not tested (fewer than "
                f"{MIN_SEEDS_FOR_CI} finished runs on a side or seeds in common).")  # fmt: skip
    interval = f"95% CI [{fmt(a['ci'][0], sign=True)}, {fmt(a['ci'][1], sign=True)}]"
    p = f", Holm p {a['p_holm']:.2g}" if a["p_holm"] is not None else ""
    tuned = ""
    if a["tuned"] and a["tuned"]["storage"] and a["tuned"]["against"]:
        s, g = a["tuned"]["storage"], a["tuned"]["against"]
        tuned = f" at {s['tuned_setting']} against {g['tuned_setting']}"
        if "tuning" in (s["judged_on"], g["judged_on"]):
            tuned += " (judged on the seeds that chose a setting: biased low)"
    return f"{a['arm']}{tuned}: difference {fmt(a['difference'], sign=True)}, {interval} ({how}{p}): {a['words']}."


def headline(c: dict[str, Any]) -> str:
    side, against = c["sides"]["storage"], c["sides"]["against"]
    both = [a for a in c["arms"] if a["present"] == "both" and not a["same_runs"]]
    paired = sum(a["test"] == "paired" for a in both)
    counts = c["counts"]
    parts = [f"{counts['helps']} help{'s' * (counts['helps'] == 1)} (lower on --storage)",
             f"{counts['hurts']} hurt{'s' * (counts['hurts'] == 1)} (higher)",
             f"{counts['not distinguishable at these seeds']} not distinguishable at these seeds"]  # fmt: skip
    if counts["not tested"]:
        parts.append(f"{counts['not tested']} not tested")
    only = [f"{counts[k]} {k}" for k in ("storage only", "against only", "same runs") if counts[k]]
    tests = f"{paired} paired by seed, {len(both) - paired} by Welch's t-test"
    metric = c["suite"]["metric"]
    return (
        f"{c['suite']['name']}: {side['storage']}{settings_text(side)} against {against['storage']}"
        f"{settings_text(against)}, {metric} difference per arm, storage - against ({tests}; Holm over "
        f"{c['tested']} test{'s' * (c['tested'] != 1)}): of {len(both)} arm{'s' * (len(both) != 1)} on both "
        f"sides, " + ", ".join(parts) + "." + (f" Listed, not compared: {', '.join(only)}." if only else "")
    )


def settings_text(side: dict[str, Any]) -> str:
    o = side["overrides"]
    return f" ({', '.join(f'{k}={v}' for k, v in o.items())})" if o else ""


def environment_text(side: dict[str, Any]) -> str:
    env = side["environment"]
    shown = [f"{k} {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for k, v in env.items() if v]
    return f"{side['runs']} runs, seeds {seeds_text(side['seeds'])}" + (f"; {'; '.join(shown)}" if shown else "")


def table(c: dict[str, Any]) -> Any:
    """The comparison as a rich Table, one row per arm."""
    from rich.table import Table

    t = Table(title=f"{c['suite']['name']}: {c['suite']['metric']}, --storage minus --against (lower is better)")
    for name, justify in (("arm", "left"), ("--storage", "right"), ("--against", "right"), ("difference", "right"),
                          ("95% CI", "right"), ("test", "left"), ("Holm p", "right"), ("verdict", "left")):  # fmt: skip
        t.add_column(name, justify=justify, no_wrap=name != "arm", overflow="fold")  # type: ignore[arg-type]
    for a in c["arms"]:
        arm = a["arm"]
        if a["tuned"]:
            chosen = {k: (v or {}).get("tuned_setting") for k, v in a["tuned"].items()}
            arm += "".join(f"\n  {k}: {v}" for k, v in chosen.items() if v)
        test = {"paired": f"paired, {a['pairs']} seeds", "welch": "Welch"}.get(a["test"] or "", "")
        ci = f"[{fmt(a['ci'][0], sign=True)}, {fmt(a['ci'][1], sign=True)}]" if a["ci"] else "–"
        verdict = a["verdict"] if a["verdict"] == "not distinguishable" else a["words"]
        verdict = verdict if a["present"] == "both" else a["present"]
        verdict = "same runs" if a["same_runs"] else verdict
        style = {"helps": "green", "hurts": "red"}.get(verdict, "")
        t.add_row(arm, mean_text(a["mean"]["storage"], a["runs"]["storage"]),
                  mean_text(a["mean"]["against"], a["runs"]["against"]), fmt(a["difference"], sign=True), ci, test,
                  f"{a['p_holm']:.2g}" if a["p_holm"] is not None else "–", verdict, style=style)  # fmt: skip
    return t


def mean_text(mean: float | None, n: int) -> str:
    return f"{fmt(mean)} (n={n})" if n else "–"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ c.suite.name }}: comparison</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 75rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: right; vertical-align: top;
         white-space: nowrap; }
th:first-child, td:first-child, th:last-child, td.verdict { text-align: left; white-space: normal; }
tr.helps td.verdict { color: #176f2c; font-weight: 600; } tr.hurts td.verdict { color: #a4161a; font-weight: 600; }
.muted { color: #666; font-size: .9em; }
</style></head><body>
<h1>{{ c.suite.name }}: {{ c.suite.metric }}, --storage minus --against</h1>
<p>{{ c.headline }}</p>
<ul class="muted">{% for key, side in c.sides.items() %}<li><b>{{ key }}</b>: {{ side.storage }}{{ settings(side) }}:
{{ environment(side) }}</li>{% endfor %}</ul>
<table><thead><tr><th>arm</th><th>--storage</th><th>--against</th><th>difference</th><th>95% CI</th><th>test</th>
<th>Holm p</th><th>verdict</th></tr></thead><tbody>
{% for a in c.arms %}<tr class="{{ a.words if a.present == 'both' and not a.same_runs else '' }}">
<td>{{ a.arm }}{% if a.tuned %}{% for k, t in a.tuned.items() if t %}<br><span class="muted">{{ k }}:
{{ t.tuned_setting }} ({{ t.judged_on }} seeds)</span>{% endfor %}{% endif %}</td>
<td>{{ mean(a.mean.storage, a.runs.storage) }}</td><td>{{ mean(a.mean.against, a.runs.against) }}</td>
<td>{{ fmt(a.difference, sign=True) }}</td>
<td>{% if a.ci %}[{{ fmt(a.ci[0], sign=True) }}, {{ fmt(a.ci[1], sign=True) }}]{% else %}–{% endif %}</td>
<td>{% if a.test == 'paired' %}paired, {{ a.pairs }} seeds{% elif a.test == 'welch' %}Welch{% endif %}</td>
<td>{% if a.p_holm is not none %}{{ '%.2g' % a.p_holm }}{% else %}–{% endif %}</td>
<td class="verdict">{{ 'same runs' if a.same_runs else (a.words if a.present == 'both' else a.present) }}</td></tr>
{% endfor %}</tbody></table>
<p class="muted">Paired: {{ c.method.paired }}. Welch: {{ c.method.welch }}. Holm: {{ c.method.holm }}. Tuned
arms: {{ c.method.tuned }}.
Lower is better. The JSON of this page: docs/compare.md.</p>
</body></html>
"""


def html(c: dict[str, Any]) -> str:
    """The comparison as one self-contained HTML page (every name and label escaped as text)."""
    from jinja2 import Environment

    env = Environment(autoescape=True)
    return env.from_string(PAGE).render(c=c, fmt=fmt, mean=mean_text, settings=settings_text,
                                        environment=environment_text)  # fmt: skip
