"""Why residual nets train, from the runs' analysis records: per-run numbers, claims, profiles.

``resnet-bench analyse`` writes one record per run (:data:`resnet_bench.schema.
ANALYSIS_ARTIFACT`): block lesions, loss lines at the initial and final weights, and the
Hessian's dominant eigenvalue. This module turns the records into per-run columns, decides the
claims of docs/methods.md with the report's verdict rule, and aggregates the profiles the
figures draw. Pure: records and frames in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import estimates, selection, verdicts

# Per-run column -> (where it is in a record, what the report calls it).
COLUMNS = {
    "lesion_mean_drop": (("lesions", "mean_drop"), "accuracy drop on deleting one block"),
    "lesion_relative_drop": (("lesions", "relative_drop"), "fraction of above-chance accuracy lost"),
    "lesion_downsampling_drop": (("lesions", "downsampling_drop"), "drop on deleting a shape-changing block"),
    "sharpness_init": (("landscape_init", "sharpness"), "sharpness at init"),
    "sharpness_final": (("landscape_final", "sharpness"), "sharpness at the end"),
    "curvature_init": (("curvature_init", "eigenvalue"), "top Hessian eigenvalue at init"),
    "curvature_final": (("curvature_final", "eigenvalue"), "top Hessian eigenvalue at the end"),
}
WHEN = {"init": "init", "final": "end"}


@dataclass
class Why:
    """The section's data: which runs were analysed, per-variant means, verdicts and the
    claims that could not be decided (with why), and what the figures draw."""

    analysed: int
    total: int
    table: list[dict]
    verdicts: list
    notes: list[str]
    lesions: pd.DataFrame  # model, position, mean, min, max: accuracy after deleting block `position`
    lines: pd.DataFrame  # model, when, alpha, mean, min, max: training loss along the lines
    contours: list[dict] = field(default_factory=list)  # model, seed, when, alpha, loss (2-D)
    seconds: float = 0.0  # summed over the runs' measurements (worker processes overlap in time)


def with_records(runs: pd.DataFrame, records: dict[str, dict]) -> pd.DataFrame:
    """``runs`` plus the :data:`COLUMNS` of each run's record (NaN for a run without one)."""
    out = runs.copy()
    out["analysed"] = out["run_id"].isin(records)
    for col, ((part, key), _) in COLUMNS.items():
        values = {rid: rec[part][key] for rid, rec in records.items()}
        out[col] = out["run_id"].map(lambda rid, v=values: np.nan if v.get(rid) is None else v[rid]).astype(float)
    return out


def _near_chance_note(runs: pd.DataFrame, title: str, models: tuple[str, ...]) -> str:
    parts = []
    for m in models:
        g = runs[(runs["model"] == m) & runs["analysed"]]
        k = int(g["lesion_relative_drop"].isna().sum())
        if k:
            parts.append(f"{m} is within the margin of chance in {k} of its {len(g)} analysed seeds")
    if not parts:
        return f"{title}: not decided: fewer than 2 seeds of both nets were analysed."
    return f"{title}: not applicable: {', '.join(parts)}, so fewer than 2 seeds compare (the rule in docs/methods.md)."


def claims(runs: pd.DataFrame) -> tuple[list, list[str]]:
    """The verdicts of docs/methods.md's claims, and a note for each claim the runs leave
    undecided. ``runs`` carries the :data:`COLUMNS`."""
    variants = selection.Variants.of(runs)
    out, notes = [], []
    if not variants.twins():
        notes.append("No variant here has its twin (a plain net and a residual net of one depth): "
                     "the plain-against-residual claims are not made.")  # fmt: skip
    for depth, plain, res in variants.twins():
        title = f"Deleting a block costs a plain net more at depth {depth}"
        d = estimates.paired(runs, plain, res, "lesion_relative_drop")
        if d.n >= 2:
            out.append(verdicts.decide(title, d, "plain minus residual", COLUMNS["lesion_relative_drop"][1], +1,
                                     figure="why"))  # fmt: skip
        else:
            notes.append(_near_chance_note(runs, title, (plain, res)))
    if pair := variants.extremes(residual=True):
        deep, shallow = pair
        title = "The deeper residual net is more robust to one deletion"
        d = estimates.paired(runs, deep, shallow, "lesion_relative_drop")
        if d.n >= 2:
            out.append(verdicts.decide(title, d, "deep minus shallow residual net", COLUMNS["lesion_relative_drop"][1],
                                     -1, figure="why"))  # fmt: skip
        else:
            notes.append(_near_chance_note(runs, title, (deep, shallow)))
    for quantity, noun in (("sharpness", "Plain landscapes are sharper"), ("curvature", "Plain curvature is higher")):
        for when, label in WHEN.items():
            col = f"{quantity}_{when}"
            for depth, plain, res in variants.twins():
                d = estimates.paired(runs, plain, res, col)
                if d.n:
                    out.append(verdicts.decide(f"{noun} at depth {depth} ({label})", d, "plain minus residual",
                                             COLUMNS[col][1], +1, figure="why"))  # fmt: skip
    return out + _trend_claims(runs, variants), notes


def _trend_claims(runs: pd.DataFrame, variants: selection.Variants) -> list:
    """With three depths or more: plain nets' final sharpness grows with depth, and faster than
    their residual twins' (the per-seed slopes, plain minus residual)."""
    pairs = variants.twins()
    if len(pairs) < 3:
        return []
    plain, res = [p for _, p, _ in pairs], [r for _, _, r in pairs]
    quantity = COLUMNS["sharpness_final"][1]
    trend = estimates.depth_trend(runs, plain, "plain", "sharpness_final")
    out = [verdicts.decide_trend(trend, "Plain sharpness grows with depth", +1, quantity=quantity, figure="why")]
    sp, _ = estimates.seed_slopes(runs, plain, "sharpness_final")
    sr, _ = estimates.seed_slopes(runs, res, "sharpness_final")
    seeds = sorted(set(sp.index) & set(sr.index))
    d = estimates.Paired(a="plain nets", b="residual nets", metric="sharpness_final",
                     **estimates.t_estimate(np.array([sp[s] - sr[s] for s in seeds]), seeds))  # fmt: skip
    title = "Sharpness grows faster with depth without shortcuts"
    out.append(verdicts.decide(title, d, "plain minus residual slope per layer", quantity, +1, figure="why"))
    return out


def _table(runs: pd.DataFrame) -> list[dict]:
    rows = []
    for model in [r["model"] for r in selection.summary(runs)]:
        g = runs[runs["model"] == model]
        if g["sharpness_final"].notna().any():
            row = {"model": model, "n": int(g["sharpness_final"].notna().sum())}
            for col in COLUMNS:
                row[col] = selection.mean_std(g[col]) if g[col].notna().any() else None
            rows.append(row)
    return rows


def _bands(rows: list[tuple], keys: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*keys, "value"])
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "mean", "min", "max"])
    return frame.groupby(keys, sort=True)["value"].agg(["mean", "min", "max"]).reset_index()


def build(runs: pd.DataFrame, records: dict[str, dict]) -> Why | None:
    """The section's data for the runs used, or None when none of them was analysed."""
    used = {rid: records[rid] for rid in runs["run_id"] if rid in records}
    if not used:
        return None
    runs = with_records(runs, used)
    verdicts, notes = claims(runs)
    model = runs.set_index("run_id")["model"]
    lesions, lines, contours = [], [], []
    for rid, rec in used.items():
        lesions += [(model[rid], i, a) for i, a in enumerate(rec["lesions"]["accuracy"], 1)]
        for when in WHEN:
            part = rec[f"landscape_{when}"]
            lines += [(model[rid], when, a, v) for line in part["loss"] for a, v in zip(part["alpha"], line)]
            if "contour" in part:
                seed = int(runs.set_index("run_id").loc[rid, "seed"])
                contours.append({"model": model[rid], "seed": seed, "when": when, "alpha": part["contour_alpha"],
                                 "loss": part["contour"]})  # fmt: skip
    contours.sort(key=lambda c: (c["model"].startswith("resnet"), c["model"], list(WHEN).index(c["when"])))
    return Why(
        analysed=len(used),
        total=len(runs),
        table=_table(runs),
        verdicts=verdicts,
        notes=notes,
        lesions=_bands(lesions, ["model", "position"]),
        lines=_bands(lines, ["model", "when", "alpha"]),
        contours=contours,
        seconds=float(sum(rec.get("seconds", 0.0) for rec in used.values())),
    )
