"""Where depth starts to pay: the epoch from which a deeper residual net's training loss
stays below a shallower one's, in every seed and in the mean. Pure: frames in, rows out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .selection import Variants


@dataclass(frozen=True)
class Crossing:
    """Where a deeper residual net's training loss goes below a shallower one's for good."""

    deep: str
    shallow: str
    epoch: int | None  # first epoch from which deep < shallow at every later epoch, in every seed
    epochs: int  # epochs both nets have in every seed
    n: int  # seeds
    # first epoch from which deep < shallow for good in the mean over seeds (None: never)
    mean_epoch: int | None


def _stays_below(below: np.ndarray) -> int | None:
    """First 1-based index from which ``below`` is True to the end (None when the last is False)."""
    if not len(below) or not below[-1]:
        return None
    false = np.flatnonzero(~below)
    return int(false[-1]) + 2 if len(false) else 1


def crossings(frame: pd.DataFrame, runs: pd.DataFrame) -> list[Crossing]:
    """For every deeper-vs-shallower pair of residual nets with the same initialisation:
    the first epoch from which the deeper net's training loss stays below the shallower
    one's in every seed (and in the mean over seeds).

    Only epochs that every paired seed reached count, so a run still in progress neither
    makes nor breaks a crossing.
    """
    variants = Variants.of(runs)
    used = frame[frame["run_id"].isin(runs["run_id"])]
    loss = used.pivot_table(index=["model", "seed"], columns="epoch", values="train_loss", aggfunc="first")
    out = []
    for zi in (False, True):
        depths = variants.depths(residual=True, zero_init=zi)
        for i, shallow_d in enumerate(depths):
            for deep_d in depths[i + 1 :]:
                deep, shallow = variants.residual(deep_d, zi), variants.residual(shallow_d, zi)
                seeds = sorted(
                    set(loss.loc[deep].index) & set(loss.loc[shallow].index)
                    if deep in loss.index and shallow in loss.index
                    else set()
                )
                if not seeds:
                    continue
                a = loss.loc[[(deep, s) for s in seeds]].to_numpy(float)
                b = loss.loc[[(shallow, s) for s in seeds]].to_numpy(float)
                common = ~np.isnan(a).any(axis=0) & ~np.isnan(b).any(axis=0)
                last = int(np.argmin(common)) if not common.all() else common.size  # leading full epochs
                a, b = a[:, :last], b[:, :last]
                every = _stays_below((a < b).all(axis=0))
                mean = _stays_below(a.mean(axis=0) < b.mean(axis=0))
                out.append(Crossing(deep, shallow, every, last, len(seeds), mean))
    return out


def headline(rows: list[Crossing], runs: pd.DataFrame) -> Crossing | None:
    """The crossing the report's answer names: the deepest against the shallowest residual net
    of He et al.'s initialisation (None without one)."""
    depth = dict(zip(runs["model"], runs["depth"]))
    zero_init = dict(zip(runs["model"], runs["zero_init"])) if "zero_init" in runs else {}
    paper = [c for c in rows if not zero_init.get(c.deep, False)]
    return max(paper, key=lambda c: depth[c.deep] - depth[c.shallow], default=None)
