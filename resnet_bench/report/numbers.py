"""How the report writes a mean over seeds, in every table."""

from __future__ import annotations

import math


def pm(ms: tuple[float, float] | None, fmt: str = ".3f") -> str:
    """``mean ± std`` (the mean alone when one seed gives no std; a dash for no value)."""
    if ms is None:
        return "—"
    mean, std = ms
    return f"{mean:{fmt}}" if math.isnan(std) else f"{mean:{fmt}} ± {std:{fmt}}"
