"""He et al.'s Fig. 6 claims decided from the per-run table: degradation, the shortcut
effect, residual depth, their depth trends, and what the zero-init departure costs.

Each claim is a paired comparison (:mod:`.estimates`) decided by the rule of :mod:`.verdicts`;
Fig. 7's claims (:mod:`.fig7`) follow them in :func:`verdicts`. Pure: tables in, records out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .estimates import Paired, Trend, depth_trend, paired
from .fig7 import response_verdicts
from .selection import Variants
from .verdicts import Verdict, decide, decide_trend


def depth_trends(runs: pd.DataFrame) -> dict[str, Trend]:
    """The slope on depth for plain and for residual nets (He et al.'s initialisation), when
    at least three depths are there: with two, the slope is the pairwise comparison again."""
    variants = Variants.of(runs)
    out = {}
    for residual, label in ((False, "plain"), (True, "residual")):
        models = variants.of_kind(residual)
        if len(models) >= 3:
            out[label] = depth_trend(runs, list(models.values()), label)
    return out


INITS = ((False, ""), (True, " (zero-init)"))  # He et al.'s initialisation, then Goyal et al.'s


@dataclass(frozen=True)
class Comparison:
    """One paired comparison ``a - b`` on both panels of He et al.'s Fig. 6."""

    label: str
    loss: Paired  # final training loss
    acc: Paired  # final validation accuracy


def shortcut_effects(runs: pd.DataFrame) -> list[tuple[int, Comparison]]:
    """Per depth (and residual initialisation): plain minus residual, loss and validation accuracy."""
    variants = Variants.of(runs)
    out = []
    for depth in variants.depths():
        plain = variants.plain(depth)
        for zi, suffix in INITS:
            res = variants.residual(depth, zi)
            if plain and res:
                out.append((depth, _compare(runs, f"plain{suffix}", plain, res)))
    return out


def depth_effects(runs: pd.DataFrame) -> dict[str, Comparison]:
    """Deepest minus shallowest net of each kind: plain, residual, residual with zero-init."""
    variants = Variants.of(runs)
    out = {}
    kinds = ((False, False, "plain"), (True, False, "residual"), (True, True, "residual (zero-init)"))
    for residual, zi, label in kinds:
        if pair := variants.extremes(residual, zi):
            out[label] = _compare(runs, label, *pair)
    return out


def _compare(runs, label, a, b) -> Comparison:
    return Comparison(label, paired(runs, a, b, "final_train_loss"), paired(runs, a, b, "final_val_accuracy"))


# The claims of He et al.'s Fig. 6, as (name, how a - b reads, sign of a - b in training loss).
# On validation accuracy every sign flips: lower loss should come with higher accuracy.
DEGRADATION = ("Degradation", "deep minus shallow plain net", +1)


SHORTCUT = ("Shortcut effect", "plain minus residual", +1)


RESIDUAL_DEPTH = ("Residual depth", "deep minus shallow residual net", -1)


# The same two depth claims over every depth of the grid, as the sign of the slope on depth.
TRENDS = {
    "plain": ("Degradation grows with depth", +1),
    "residual": ("Residual nets improve with depth", -1),
}


def _verdict(claim, comparison: Comparison, validation: bool, where: str = "") -> Verdict:
    name, reading, sign = claim
    d = comparison.acc if validation else comparison.loss
    sign = -sign if validation else sign
    metric = "final validation accuracy" if validation else "final training loss"
    init = " (zero-init departure)" if "zero-init" in comparison.label else ""
    return decide(f"{name}{init}{' (validation)' if validation else ''}", d, reading, metric, sign, where=where)


def trend_verdict(trend: Trend) -> Verdict:
    """A Fig. 6 depth trend (:data:`TRENDS`, by the trend's label) decided on the per-seed slopes."""
    title, sign = TRENDS[trend.label]
    return decide_trend(trend, title, sign, quantity="final training loss")


def verdicts(runs: pd.DataFrame) -> list[Verdict]:
    """Every claim of Fig. 6, on training loss and then on validation accuracy, then the
    depth trends (three depths or more) on training loss.

    Degradation compares the plain nets; the shortcut effect is at the deepest depth, for each
    residual initialisation present; residual depth is decided once per initialisation, so a
    departure from the paper (zero-init) is reported beside the paper's own nets, never
    instead of them, and its title says it is a departure.
    """
    depth = depth_effects(runs)
    effects = shortcut_effects(runs)
    deepest = max((d for d, _ in effects), default=None)
    out = []
    for validation in (False, True):
        if "plain" in depth:
            out.append(_verdict(DEGRADATION, depth["plain"], validation))
        for d, comparison in effects:
            if d == deepest:
                out.append(_verdict(SHORTCUT, comparison, validation, f" at depth {d}"))
        for label in ("residual", "residual (zero-init)"):
            if label in depth:
                out.append(_verdict(RESIDUAL_DEPTH, depth[label], validation))
    out += [trend_verdict(t) for t in depth_trends(runs).values()]
    return out + response_verdicts(runs)


def zero_init_costs(runs: pd.DataFrame) -> list[Comparison]:
    """Each zero-init residual net minus the paper's residual net of the same depth: what
    the departure costs (or gains) on its own, so it never silently stands in for the paper."""
    variants = Variants.of(runs)
    out = []
    for depth, name in variants.of_kind(residual=True, zero_init=True).items():
        if paper := variants.residual(depth):
            out.append(_compare(runs, f"zero-init cost at depth {depth}", name, paper))
    return out


# He et al. 2015, Table 6: CIFAR-10 test error (%) of the residual nets (option A).
PUBLISHED_CIFAR10_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97, "resnet110": 6.43}


def published_comparison(runs: pd.DataFrame, data_source: str, family: str) -> list[dict]:
    """Our test error next to He et al.'s for CIFAR-10 runs of the CIFAR family."""
    if data_source != "cifar10" or family != "cifar":
        return []
    out = []
    for model, g in runs.groupby("model"):
        if model in PUBLISHED_CIFAR10_ERROR:
            ours = 100 * (1 - g["final_val_accuracy"].mean())
            paper = PUBLISHED_CIFAR10_ERROR[model]
            out.append({"model": model, "n": len(g), "ours": ours, "paper": paper, "difference": ours - paper})
    return out
