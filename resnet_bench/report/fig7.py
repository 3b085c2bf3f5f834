"""Layer responses (He et al. Fig. 7): why residual nets train, from each run's last epoch.

Per-run medians of the response std and the branch ratio, the per-layer profiles the figure
draws, the per-variant table and Fig. 7's two claims. Pure: frames in, data out.
"""

from __future__ import annotations

import pandas as pd

from .estimates import paired
from .selection import Variants, mean_std, summary
from .verdicts import Verdict, decide

# Per-run summaries of the layer frame (frame.load_frames), as columns of the per-run table.
LAYER_SUMMARIES = {"response_std": "median_response_std", "branch_ratio": "median_branch_ratio"}


# The two claims of Fig. 7, as (name, how a - b reads, metric, sign of a - b).
RESPONSES = ("Residual responses are smaller", "plain minus residual", "median response std", +1)


BRANCHES = ("Deeper residual nets modify the signal less", "deep minus shallow residual net",
            "median branch ratio ||F(x)||/||s(x)||", -1)  # fmt: skip


def with_layer_medians(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus each run's median response std over its 3x3 layers and median branch
    ratio over its residual blocks (NaN where a run logged none: plain nets have no branches,
    runs of earlier versions no responses).

    The median, not the mean, so a few layers with large responses (a stage's first block,
    where the shortcut changes shape) do not decide the comparison.
    """
    out = runs.copy()
    for kind, col in LAYER_SUMMARIES.items():
        sub = layers[layers["kind"] == kind] if len(layers) else layers
        medians = sub.groupby("run_id")["value"].median() if len(sub) else pd.Series(dtype=float)
        out[col] = out["run_id"].map(medians).astype(float)
    return out


def layer_profiles(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Fig. 7's two panels as data: per (model, kind, order, position), the mean, min and max
    over seeds. ``order`` is ``layer`` (position = the layer's index in the net) or ``sorted``
    (position = rank after sorting each run's values in descending order, as the paper's
    bottom panel does)."""
    cols = ["model", "kind", "order", "position", "mean", "min", "max", "count"]
    if layers.empty:
        return pd.DataFrame(columns=cols)
    used = layers.merge(runs[["run_id", "model"]], on="run_id")
    ranked = used.sort_values("value", ascending=False, kind="stable")
    ranked = ranked.assign(position=ranked.groupby(["run_id", "kind"]).cumcount() + 1, order="sorted")
    both = pd.concat([used.assign(position=used["index"], order="layer"), ranked])
    g = both.groupby(["model", "kind", "order", "position"])["value"]
    return g.agg(["mean", "min", "max", "count"]).reset_index()[cols]


def response_table(runs: pd.DataFrame) -> list[dict]:
    """Per variant (summary order): mean and std over seeds of the two layer summaries."""
    if not set(LAYER_SUMMARIES.values()) <= set(runs.columns):
        return []
    order = [row["model"] for row in summary(runs)]
    out = []
    for model in order:
        g = runs[runs["model"] == model]
        if g["median_response_std"].notna().any():
            row = {"model": model, "n": int(g["median_response_std"].notna().sum()),
                   "zero_init": bool(g["zero_init"].iloc[0])}  # fmt: skip
            for col in LAYER_SUMMARIES.values():
                row[col] = mean_std(g[col]) if g[col].notna().any() else None
            out.append(row)
    return out


def response_verdicts(runs: pd.DataFrame) -> list[Verdict]:
    """Fig. 7's claims with the paper's initialisation, decided by :data:`.verdicts.VERDICT_RULE`.

    *Residual responses are smaller* at every depth with both twins; *deeper residual nets
    modify the signal less* for the deepest against the shallowest residual net. Zero-init
    nets get none: their branches start at exactly zero, so a small response there is the
    initialisation speaking, not something training found.
    """
    if not set(LAYER_SUMMARIES.values()) <= set(runs.columns):
        return []
    variants = Variants.of(runs)
    out = []
    name, reading, metric, sign = RESPONSES
    col = LAYER_SUMMARIES["response_std"]
    for depth, plain, res in variants.twins():
        d = paired(runs, plain, res, col)
        if d.n:
            out.append(decide(f"{name} at depth {depth}", d, reading, metric, sign, figure="fig7"))
    if pair := variants.extremes(residual=True):
        name, reading, metric, sign = BRANCHES
        d = paired(runs, *pair, LAYER_SUMMARIES["branch_ratio"])
        if d.n:
            out.append(decide(name, d, reading, metric, sign, figure="fig7"))
    return out
