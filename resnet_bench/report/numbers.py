"""How the report writes a mean over seeds, and a list of seeds, in every table."""

from __future__ import annotations

import math


def pm(ms: tuple[float, float] | None, fmt: str = ".3f") -> str:
    """``mean ± std`` (the mean alone when one seed gives no std; a dash for no value)."""
    if ms is None:
        return "—"
    mean, std = ms
    return f"{mean:{fmt}}" if math.isnan(std) else f"{mean:{fmt}} ± {std:{fmt}}"


def seed_text(seeds) -> str:
    """``4, 5, 6, 7`` as ``4-7``; other lists as they are."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))
