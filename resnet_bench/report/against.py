"""``--against``: a written report's verdict records read back and compared, claim by claim,
with the same claims decided afresh.

A faithful rerun on another machine gives other numbers; what should hold is the verdict, and
the written estimate inside the fresh 95% interval. Only the records are read
(:func:`resnet_bench.report.verdicts.to_json`), never the prose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .verdicts import FORMAT, Verdict


def read_records(text: str, source: str) -> dict[str, tuple[str, float | None]]:
    """claim -> (outcome, estimate) from a report's JSON records; a file that is not such
    records is a ValueError whose message names ``source`` (the command's one line)."""
    try:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, this version reads {FORMAT}")
        return {r["claim"]: (r["outcome"], r["estimate"]) for r in doc["verdicts"]}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{source}: not a report's verdict records ({e})") from None


@dataclass(frozen=True)
class Agreement:
    """One claim of a written report checked against the same claim decided afresh.

    ``inside`` is whether the written estimate lies in the fresh 95% interval (None without
    one): on another machine numbers differ, but a faithful rerun should bracket them.
    """

    claim: str
    written: str | None  # outcome in the written report (None: a claim it does not decide)
    fresh: str | None  # outcome from the fresh runs (None: they do not decide it)
    written_estimate: float | None = None
    fresh_estimate: object | None = None

    @property
    def same_verdict(self) -> bool:
        return self.written == self.fresh

    @property
    def inside(self) -> bool | None:
        e = self.fresh_estimate
        if self.written_estimate is None or e is None or not e.has_stats:
            return None
        return bool(e.low <= self.written_estimate <= e.high)


def compare(fresh: list[Verdict], written: dict[str, tuple[str, float | None]]) -> list[Agreement]:
    """Claim by claim: the written report's verdicts (in its order), then claims only the
    fresh runs decide."""
    by_claim = {v.claim: v for v in fresh}
    out = []
    for claim, (outcome_, estimate) in written.items():
        v = by_claim.get(claim)
        out.append(Agreement(claim, outcome_, v and v.outcome, estimate, v and v.estimate))
    out += [Agreement(v.claim, None, v.outcome, None, v.estimate) for v in fresh if v.claim not in written]
    return out


def lines(agreements: list[Agreement], source: str, undecided: dict[str, str] | None = None) -> list[str]:
    """The comparison of fresh verdicts with a written report's, one line per claim and a
    last line that says whether every verdict agrees. ``undecided`` says, by claim, why the
    fresh runs leave a claim undecided, where the report knows (held-out runs not in the store)."""
    lines, said = [f"against {source}:"], set()
    for a in agreements:
        if a.written is None:
            lines.append(f"  {a.claim}: {a.fresh} (not in {source})")
            continue
        if a.fresh is None:
            why = (undecided or {}).get(a.claim)
            note = " (as above)" if why in said else f": {why}" if why else ""
            said.add(why)
            lines.append(f"  {a.claim}: not decided by these runs ({a.written} in {source}){note}")
            continue
        head = f"same verdict, {a.fresh}" if a.same_verdict else f"VERDICT DIFFERS: {a.written} there, {a.fresh} here"
        if a.inside is None:
            where = "no fresh interval"
        else:
            e = a.fresh_estimate
            where = (
                f"written {a.written_estimate:+.4g} {'inside' if a.inside else 'OUTSIDE'} the fresh 95% interval "
                f"[{e.low:+.4g}, {e.high:+.4g}] (fresh {e.mean:+.4g})"
            )
        lines.append(f"  {a.claim}: {head}; {where}")
    compared = [a for a in agreements if a.written is not None and a.fresh is not None]
    differ = [a.claim for a in compared if not a.same_verdict]
    inside = sum(bool(a.inside) for a in compared)
    if differ:
        lines.append(f"verdicts differ on {len(differ)} of {len(compared)} claims: {', '.join(differ)}")
    else:
        lines.append(
            f"same verdicts on all {len(compared)} claims; written estimates inside the fresh intervals: "
            f"{inside} of {len(compared)}"
        )
    return lines
