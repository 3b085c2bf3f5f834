"""The report's "Why residual nets train" section and its figures, from :class:`why.Why`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import plotting  # noqa: E402
from .numbers import pm  # noqa: E402
from .why import COLUMNS, WHEN, Why  # noqa: E402

CAPTIONS = {
    "lesions": "Block lesions (Veit et al. 2016): validation accuracy with block i deleted, blocks in network order "
    "(line: mean over seeds; band: min-max; dashed: plain).",
    "landscape": "Training loss along filter-normalised random lines w + alpha d through the initial (left) and the "
    "final weights (right), Li et al. 2018 (line: mean over seeds and directions; band: min-max).",
    "contours": "Training loss in the plane of two filter-normalised directions, the first seed of the deepest plain "
    "net and its residual twin, at init and at the end (log scale, shared by all panels).",
}


def figures(w: Why | None, runs: pd.DataFrame, colours: dict, out_dir: Path) -> dict[str, str]:
    if w is None:
        return {}
    made = {"lesions": _lesions(w, runs, colours, out_dir / "lesions.png"),
            "landscape": _landscape(w, runs, colours, out_dir / "landscape.png"),
            "contours": _contours(w, out_dir / "contours.png") if w.contours else None}  # fmt: skip
    return {k: v for k, v in made.items() if v}


def _lesions(w: Why, runs, colours, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    plotting.mean_bands(ax, w.lesions, "position", runs, colours)
    ax.set_xlabel("deleted block (network order)")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plotting.save(fig, path)


def _landscape(w: Why, runs, colours, path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (when, label) in zip(axes, WHEN.items()):
        plotting.mean_bands(ax, w.lines[w.lines["when"] == when], "alpha", runs, colours)
        ax.set_title(f"at {label}")
        ax.set_xlabel("alpha")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=8)
    return plotting.save(fig, path)


def _contours(w: Why, path: Path) -> str:
    n = len(w.contours)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    values = np.concatenate([np.ravel(c["loss"]) for c in w.contours])
    levels = np.geomspace(max(values.min(), 1e-3), values.max(), 15)
    for ax, c in zip(axes[0], w.contours):
        a = np.array(c["alpha"])
        ax.contour(a, a, np.array(c["loss"]).T, levels=levels, norm=matplotlib.colors.LogNorm(), cmap="viridis")
        ax.set_title(f"{c['model']} seed {c['seed']}, {WHEN[c['when']]}", fontsize=9)
        ax.set_xlabel("alpha (direction 1)")
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("alpha (direction 2)")
    return plotting.save(fig, path)


def section(w: Why | None, verdicts: list) -> list[str]:
    """The section's lines; none when no run used was analysed (the report command says so),
    so a report over runs of earlier versions reads as it did."""
    if w is None:
        return []
    L = [
        "## Why residual nets train: lesions, landscapes, curvature",
        "",
        "Measured on each run's stored net (`resnet-bench analyse`; definitions and the predictions made before "
        "the runs: docs/methods.md). *Lesions*: validation accuracy with one block deleted at test time, its "
        "drop averaged over the blocks that keep the shape, and as a fraction of the accuracy above chance. "
        "*Sharpness*: mean training-loss rise at |alpha| = 0.2 along filter-normalised random lines. "
        "*Curvature*: the dominant eigenvalue of the training-loss Hessian. Init: the net the run started "
        "from, rebuilt from its seed. Mean ± std over seeds.",
        "",
    ]
    if w.analysed < w.total:
        L += [f"{w.total - w.analysed} of the {w.total} runs used have no analysis and are left out here.", ""]
    cols = list(COLUMNS)
    L += ["| variant | n | " + " | ".join(COLUMNS[c][1] for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in w.table:
        L.append(f"| {r['model']} | {r['n']} | " + " | ".join(pm(r[c], ".3g") for c in cols) + " |")
    L += [
        "",
        f"Rule: as for every claim above. The analyses took {w.seconds:.0f} s, summed over the runs (each "
        "run's measurement from loading its net to writing its record; runs measured side by side overlap).",
        "",
    ]
    L += [f"- {v.sentence}" for v in verdicts if v.figure == "why"]
    L += [f"- {note}" for note in w.notes]
    return L + [""]
