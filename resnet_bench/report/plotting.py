"""What every figure of a report shares: colours and line styles per variant, mean-and-band
lines over seeds, and saving without a date stamp (so a regenerated PNG is byte-identical)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PNG_META = {"Software": None}
plt.rcParams.update({"figure.dpi": 100})


def style(model: str, shortcut: str, colours: dict) -> dict:
    return {"color": colours[model], "linestyle": "--" if shortcut == "none" else "-"}


def colours(runs: pd.DataFrame) -> dict:
    cmap = plt.get_cmap("tab10")
    models = runs.assign(plain=runs["shortcut"] == "none").sort_values(["depth", "plain"])["model"].unique()
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def mean_bands(ax, table: pd.DataFrame, x: str, runs: pd.DataFrame, colours: dict) -> None:
    """One line per variant of ``table`` (columns model, ``x``, mean, min, max): the mean, with
    the min-max band over seeds; dashed for plain nets."""
    shortcut = runs.drop_duplicates("model").set_index("model")["shortcut"]
    for model in colours:
        c = table[table["model"] == model]
        if c.empty:
            continue
        ax.plot(c[x], c["mean"], label=model, **style(model, shortcut[model], colours))
        ax.fill_between(c[x], c["min"], c["max"], color=colours[model], alpha=0.15, linewidth=0)


def save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, metadata=PNG_META)
    plt.close(fig)
    return path.name
