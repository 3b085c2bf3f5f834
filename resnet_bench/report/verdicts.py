"""Verdicts as records: the rule, one record per claim, its sentence, its JSON, and ``--against``.

Every claim a report decides (Fig. 6's, Fig. 7's, the analyses') is a :class:`Verdict`: the
claim, the comparison it rests on, the metric, the estimate with its interval, p and n, the
claimed sign and the outcome :func:`outcome` gives. The report's sentences are written from
the records by :func:`sentence`, and the records themselves are written as data beside the
Markdown (``reports/NAME.json``, :func:`to_json`). ``--against`` reads that data back
(:mod:`.against`), never the prose, so rewording a sentence changes no comparison.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from .estimates import ALPHA

VERDICT_RULE = (
    "A claim is *reproduced* when the paired difference over seeds has the claimed sign, its "
    "95% t-interval excludes 0 and the paired t-test gives p < 0.05; *not reproduced* when "
    "the interval excludes 0 on the other side (p < 0.05 against the claim); *inconclusive* "
    "otherwise, and always when fewer than 2 seeds are paired."
)

FORMAT = 1  # of the JSON records; a reader refuses another


def outcome(estimate, claimed_sign: int) -> str:
    """Apply :data:`VERDICT_RULE` to an estimate (a paired difference or a slope over seeds):
    ``reproduced`` / ``not reproduced`` / ``inconclusive``."""
    if not estimate.has_stats:
        return "inconclusive"
    significant = estimate.p < ALPHA and (estimate.low > 0 or estimate.high < 0)
    if significant and np.sign(estimate.mean) == claimed_sign:
        return "reproduced"
    if significant:
        return "not reproduced"
    return "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """One decided claim. ``estimate`` is the paired difference or the slope it rests on (an
    ``Estimate`` of :mod:`.estimates`); ``kind`` says which (``difference`` or ``slope``, per layer);
    ``comparison`` names what was compared and how ``a - b`` reads."""

    claim: str
    outcome: str
    comparison: str
    metric: str
    sign: int  # the claimed sign of the estimate
    estimate: object
    kind: str = "difference"
    figure: str = "fig6"  # which section decides it: fig6 (training), fig7 (responses), why (analyses)

    @property
    def key(self) -> str:
        """A name for the claim where a sentence will not do (MLflow parameter keys)."""
        return claim_key(self.claim)

    @property
    def sentence(self) -> str:
        return sentence(self)

    def record(self) -> dict:
        e = self.estimate
        return {
            "key": self.key,
            "claim": self.claim,
            "outcome": self.outcome,
            "comparison": self.comparison,
            "metric": self.metric,
            "kind": self.kind,
            "estimate": _number(e.mean),
            "interval": [_number(e.low), _number(e.high)] if e.has_stats else None,
            "p": _number(e.p) if e.has_stats else None,
            "n": int(e.n),
            "seeds": list(e.seeds),
            "claimed_sign": self.sign,
            "figure": self.figure,
        }


def _number(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def claim_key(claim: str) -> str:
    """``Shortcut effect (validation)`` -> ``shortcut_effect/validation``."""
    head, *rest = claim.replace(")", "").split(" (")
    return "/".join(re.sub(r"[^a-z0-9]+", "_", part.lower()).strip("_") for part in [head, *rest])


def estimate_text(e, kind: str = "difference", digits: int = 3, signed: bool = False) -> str:
    """An estimate as every page writes it: the value, its 95% interval, p and n (the one
    formatter of an estimate; the sentences, the lead section and ``--against`` use it)."""
    f = f"{'+' if signed else ''}.{digits}f"
    unit = " per layer" if kind == "slope" else ""
    if not e.has_stats:
        return f"{e.mean:{f}}{unit}, n = {e.n} (statistics not available with fewer than 2 seeds)"
    return f"{e.mean:{f}} [{e.low:{f}}, {e.high:{f}}]{unit}, p = {e.p:.3g}, n = {e.n}"


def estimate_cells(e, digits: int = 3) -> tuple[str, str, str]:
    """An estimate as a table's three cells: the signed value, its 95% interval, p ("n/a"
    without statistics)."""
    f = f"+.{digits}f"
    if not e.has_stats:
        return f"{e.mean:{f}}", "n/a", "n/a"
    return f"{e.mean:{f}}", f"[{e.low:{f}}, {e.high:{f}}]", f"{e.p:.3g}"


def sentence(v: Verdict) -> str:
    """The record as the report's one line."""
    return (f"{v.claim}: {v.outcome}. {v.comparison}, {v.metric} {v.kind} "
            f"{estimate_text(v.estimate, v.kind, 4 if v.kind == 'slope' else 3)}; "
            f"claimed: {'>' if v.sign > 0 else '<'} 0.")  # fmt: skip


def decide(title: str, d, reading: str, metric: str, sign: int, *, where="", figure="fig6") -> Verdict:
    """A paired difference ``d`` (``a - b``) decided by :data:`VERDICT_RULE`."""
    return Verdict(title, outcome(d, sign), f"{d.a} vs {d.b}{where} ({reading})", metric, sign, d, figure=figure)


def decide_trend(trend, title: str, sign: int, *, quantity: str, figure="fig6") -> Verdict:
    """A slope on depth, fitted per seed (``trend``), decided by :data:`VERDICT_RULE`."""
    comparison = f"{', '.join(trend.models)} (slope on depth, fitted per seed)"
    return Verdict(title, outcome(trend, sign), comparison, quantity, sign, trend, kind="slope", figure=figure)


def to_json(verdicts: list[Verdict], **about) -> str:
    """The records of a report, with what they are about (experiment, configuration, commit)."""
    doc = {"format": FORMAT, **about, "rule": VERDICT_RULE, "verdicts": [v.record() for v in verdicts]}
    return json.dumps(doc, indent=1) + "\n"
