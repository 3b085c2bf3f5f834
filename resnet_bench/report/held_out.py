"""The three claims on seeds that played no part in choosing the design.

An experiment whose design was chosen by looking at its own seeds decides its claims
in-sample. Its ``[report]`` table names those seeds and, where another experiment trains the
same nets the same way, that experiment and seeds of it outside the design's. The runs of
both carry the same training fingerprint (:func:`resnet_bench.schema.training_fingerprint`),
so the held-out runs are the runs this experiment would train on those seeds. Here the three
claims of the lead section are decided on them, by the same rule, as records of their own.
Pure: frames in, records out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from ..errors import UserError
from . import claims, selection
from .numbers import seed_text
from .verdicts import Verdict

HEADLINE = tuple(name for name, _, _ in (claims.DEGRADATION, claims.SHORTCUT, claims.RESIDUAL_DEPTH))
SUFFIX = " (held-out seeds)"


@dataclass(frozen=True)
class Declared:
    """The ``[report]`` fields the newest run logged (empty for runs that predate them)."""

    design_seeds: tuple[int, ...] = ()
    experiment: str = ""
    seeds: tuple[int, ...] = ()

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Declared:
        newest = frame.sort_values("start_time").iloc[-1]
        seeds = lambda key: tuple(int(s) for s in str(newest.get(key) or "").split(",") if s)  # noqa: E731
        return cls(seeds("report.design_seeds"), str(newest.get("report.held_out") or ""),
                   seeds("report.held_out_seeds"))  # fmt: skip


@dataclass(frozen=True)
class HeldOut:
    """The held-out check as the report shows it: what was asked for, the runs found, their
    verdicts (titled ``<claim> (held-out seeds)``), or why there are none."""

    declared: Declared
    runs: pd.DataFrame  # one row per held-out run used (selection.per_run); empty when none
    verdicts: list[Verdict]
    missing: str = ""  # why there is no check ("" when there is)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs["seed"].unique()) if len(self.runs) else []

    @property
    def undecided(self) -> dict[str, str]:
        """Why each held-out claim is undecided, by its title (empty when the check ran)."""
        return {title(claim): self.missing for claim in HEADLINE} if self.missing else {}

    def verdict(self, claim: str) -> Verdict | None:
        """The held-out verdict on one of :data:`HEADLINE`'s claims (None: not decided)."""
        return next((v for v in self.verdicts if v.claim == title(claim)), None)


def title(claim: str) -> str:
    return claim + SUFFIX


def check(declared: Declared, used: pd.DataFrame, other: pd.DataFrame | None, why_none: str = "") -> HeldOut | None:
    """Decide the three claims on ``declared.experiment``'s runs of ``declared.seeds`` (the
    frame ``other``, None when the store has none: ``why_none`` says why).

    ``used`` is the in-sample runs' frame: only runs with its training fingerprint and its
    variants count. None when the experiment declares no held-out check.
    """
    if not declared.experiment:
        return None
    empty = pd.DataFrame()
    where = f"{declared.experiment}'s runs of seeds {seed_text(declared.seeds)}"
    if other is None or other.empty:
        return HeldOut(declared, empty, [], f"{where} are not in this store{f' ({why_none})' if why_none else ''}")
    fingerprint = used.sort_values("start_time")["training"].iloc[-1]
    wanted = other[other["seed"].isin(declared.seeds) & other["model"].isin(set(used["model"]))]
    same = wanted[wanted["training"] == fingerprint]
    done = selection.finished_latest(same)
    if done.empty:
        differ = " (its runs train differently)" if len(wanted) and same.empty else ""
        return HeldOut(declared, empty, [], f"no finished run among {where}{differ}")
    try:
        selection.check_schema(done)
    except UserError as e:  # the other experiment's runs, written by another version: no check, said so
        return HeldOut(declared, empty, [], f"{where} cannot be read: {e}")
    runs = selection.per_run(done)
    decided = [v for v in claims.verdicts(runs) if v.claim in HEADLINE]
    return HeldOut(declared, runs, [dataclasses.replace(v, claim=title(v.claim), figure="held_out") for v in decided])
