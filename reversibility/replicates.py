"""Replicates: every grid point run once per seed of `seeds`, and summaries over the seeds.

A table's rows carry their `seed`; its keys (`tables.Table.keys`) name a grid point's row
without it. Over the seeds of one key, a number is summarised by its mean, standard deviation and
95% Student-t interval of the mean (`over_seeds`), and a category (a regime, a verdict) by the
value most seeds give and how many give it (`agreement`: "reversible 3/3"). Figures draw a table
collapsed to one row per key (`collapse`), with the interval as `<measure>_low`/`_high`.
"""

from __future__ import annotations

import math
from collections import Counter
from statistics import fmean, stdev
from typing import Iterable, Sequence

LEVEL = 0.95
OVER_SEEDS_COLUMNS = ["measure", "mean", "sd", "low", "high", "seeds"]
AGREEMENT_COLUMNS = ["measure", "value", "agreeing", "seeds", "label"]


def t_quantile(level: float, dof: int) -> float:
    """The two-sided Student-t quantile of `level` with `dof` degrees of freedom."""
    from scipy.stats import t  # only the tables job summarises; every job imports this module

    return float(t.ppf(0.5 + level / 2, dof))


def summarise(values: Iterable[float | None], level: float = LEVEL) -> dict:
    """Mean, standard deviation (n - 1) and the t interval of the mean over the finite values;
    sd and interval are None for fewer than two, and `seeds` counts the values used."""
    finite = [v for v in map(_number, values) if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "sd": None, "low": None, "high": None, "seeds": 0}
    mean = fmean(finite)
    if len(finite) < 2:
        return {"mean": mean, "sd": None, "low": None, "high": None, "seeds": 1}
    sd = stdev(finite)
    half = t_quantile(level, len(finite) - 1) * sd / math.sqrt(len(finite))
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "seeds": len(finite)}


def seeds_of(rows: Iterable[dict]) -> list[int]:
    return sorted({int(row["seed"]) for row in rows if row.get("seed") not in (None, "")})


def replicate_groups(rows: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """The rows of each key, in the order the keys first appear."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def measures_of(rows: Sequence[dict], keys: Sequence[str]) -> list[str]:
    """The columns besides the keys and the seed whose every value is a number (and one is)."""
    if not rows:
        return []
    skip = {*keys, "seed"}
    columns = [c for c in rows[0] if c not in skip]
    measures = []
    for column in columns:
        values = [row[column] for row in rows if row[column] not in (None, "")]
        if values and all(_is_number(v) for v in values):
            measures.append(column)
    return measures


def over_seeds(rows: Sequence[dict], keys: Sequence[str], level: float = LEVEL) -> list[dict]:
    """One row per key and measure: the measure summarised over the key's seeds (`summarise`)."""
    measures = measures_of(rows, keys)
    return [
        {**dict(zip(keys, key)), "measure": measure, **summarise((row[measure] for row in group), level)}
        for key, group in replicate_groups(rows, keys).items()
        for measure in measures
    ]


def agreement(rows: Sequence[dict], keys: Sequence[str], columns: Sequence[str]) -> list[dict]:
    """One row per key and categorical column: the value most of the key's seeds give (ties: the
    lowest seed's), how many give it, of how many, and the label "<value> <agreeing>/<seeds>"."""
    result = []
    for key, group in replicate_groups(rows, keys).items():
        for column in columns:
            value, agreeing = majority([row[column] for row in group])
            result.append(
                {
                    **dict(zip(keys, key)),
                    "measure": column,
                    "value": value,
                    "agreeing": agreeing,
                    "seeds": len(group),
                    "label": agreement_label(value, agreeing, len(group)),
                }
            )
    return result


def majority(values: Sequence) -> tuple:
    """The most common value (ties: the first given) and its count."""
    return Counter(str(v) for v in values).most_common(1)[0]


def agreement_label(value, agreeing: int, seeds: int) -> str:
    return f"{value} {agreeing}/{seeds}"


def collapse(rows: Sequence[dict], keys: Sequence[str], level: float = LEVEL) -> list[dict]:
    """One row per key: each measure's mean over the seeds with its interval as `<measure>_low`
    and `<measure>_high` (empty with one seed), each other column's majority value with
    `<column>_agreeing`, and `seeds` (the seed column itself is dropped)."""
    if not rows:
        return []
    measures = set(measures_of(rows, keys))
    others = [c for c in rows[0] if c not in measures and c not in keys and c != "seed"]
    collapsed = []
    for key, group in replicate_groups(rows, keys).items():
        row = {**dict(zip(keys, key)), "seeds": len(group)}
        for measure in measures:
            summary = summarise((r[measure] for r in group), level)
            row[measure] = "" if summary["mean"] is None else summary["mean"]
            row[f"{measure}_low"] = "" if summary["low"] is None else summary["low"]
            row[f"{measure}_high"] = "" if summary["high"] is None else summary["high"]
        for column in others:
            row[column], row[f"{column}_agreeing"] = majority([r[column] for r in group])
        collapsed.append(row)
    return collapsed


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _number(value) -> float | None:
    return None if value is None or value == "" else float(value)
