"""Estimates over seeds: paired differences and slopes on depth, with t-intervals and p.

Statistics: a *paired t-test* (``scipy.stats.ttest_rel``) with a t-based 95% interval on
the per-seed differences. Pairing is by seed: a plain net and its residual twin with seed k
share initial-weight draws, data order and augmentation. The t-test rather than an exact
permutation test because with the few seeds a CPU budget affords, the permutation test
cannot reach significance at all (with n = 3 pairs its smallest two-sided p-value is
2 / 2**3 = 0.25), whereas the t-test uses the size of the differences, at the price of assuming
they are roughly normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05  # the level of every interval and test (the rule: resnet_bench.report.verdicts)


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95% t-interval and the one-sample t-test p against 0."""

    n: int
    mean: float
    low: float
    high: float
    p: float
    seeds: tuple[int, ...]

    @property
    def has_stats(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low)


def t_estimate(d: np.ndarray, seeds) -> dict:
    """The :class:`Estimate` fields of per-seed values ``d``.

    A paired t-test is this test on the per-seed differences (``ttest_rel`` equals
    ``ttest_1samp`` of ``a - b``); a trend is this test on the per-seed slopes.
    """
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    low = high = p = float("nan")
    if n >= 2:
        se = d.std(ddof=1) / math.sqrt(n)
        if se == 0:
            low = high = mean
            p = 0.0 if mean != 0 else 1.0
        else:
            half = sps.t.ppf(1 - ALPHA / 2, n - 1) * se
            low, high = mean - half, mean + half
            p = float(sps.ttest_1samp(d, 0.0).pvalue)
    return {"n": n, "mean": mean, "low": float(low), "high": float(high), "p": p,
            "seeds": tuple(int(s) for s in seeds)}  # fmt: skip


@dataclass(frozen=True)
class Paired(Estimate):
    """Paired difference ``a - b`` over the seeds both variants share."""

    a: str
    b: str
    metric: str


def paired(runs: pd.DataFrame, a: str, b: str, metric: str) -> Paired:
    """Mean of ``a - b`` with a 95% t-interval and the paired t-test p-value (NaN if n < 2)."""
    va = runs[runs["model"] == a].set_index("seed")[metric]
    vb = runs[runs["model"] == b].set_index("seed")[metric]
    seeds = sorted(set(va.dropna().index) & set(vb.dropna().index))
    d = np.array([va[s] - vb[s] for s in seeds], dtype=float)
    return Paired(a=a, b=b, metric=metric, **t_estimate(d, seeds))


@dataclass(frozen=True)
class Trend(Estimate):
    """Slope of a final metric on depth (per layer), fitted per seed, then tested over seeds.

    The slope is fitted within each seed across the depths that seed finished at every one
    of (least squares), so each seed contributes one number and the test over seeds keeps
    the pairing the pairwise comparisons use.
    """

    label: str  # "plain" or "residual"
    metric: str
    depths: tuple[int, ...]
    models: tuple[str, ...]


def seed_slopes(runs: pd.DataFrame, models: list[str], metric: str) -> tuple[pd.Series, tuple[int, ...]]:
    """Least-squares slope of ``metric`` on depth over ``models``, one per seed that has every
    depth (index: seed), and the depths."""
    sub = runs[runs["model"].isin(models)]
    table = sub.pivot_table(index="seed", columns="depth", values=metric, aggfunc="first").dropna()
    depths = np.array(table.columns, dtype=float)
    slopes = [np.polyfit(depths, row.to_numpy(float), 1)[0] for _, row in table.iterrows()]
    return pd.Series(slopes, index=table.index, dtype=float), tuple(int(d) for d in depths)


def depth_trend(runs: pd.DataFrame, models: list[str], label: str, metric: str = "final_train_loss") -> Trend:
    """Per-seed least-squares slope of ``metric`` on depth over ``models``, tested over seeds."""
    slopes, depths = seed_slopes(runs, models, metric)
    return Trend(
        label=label, metric=metric, depths=depths, models=tuple(models), **t_estimate(slopes.to_numpy(), slopes.index)
    )
