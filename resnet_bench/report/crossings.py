"""Where depth starts to pay: the epoch from which a deeper residual net's training loss
stays below a shallower one's, in every seed and in the mean. Pure: frames in, rows out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .selection import variant_names


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
    names = variant_names(runs)
    used = frame[frame["run_id"].isin(runs["run_id"])]
    loss = used.pivot_table(index=["model", "seed"], columns="epoch", values="train_loss", aggfunc="first")
    out = []
    for zi in (False, True):
        depths = sorted(d for d, r, z in names if r and z == zi)
        for i, shallow_d in enumerate(depths):
            for deep_d in depths[i + 1 :]:
                deep, shallow = names[(deep_d, True, zi)], names[(shallow_d, True, zi)]
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
