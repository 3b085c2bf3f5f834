"""The report's figures: training curves, He et al.'s Fig. 6 and Fig. 7 layouts, step times,
and the analyses' figures (:mod:`.render_why`), drawn from the aggregated data as PNGs without a
date stamp, so a figure regenerated from the same store is byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import pandas as pd  # noqa: E402

from .. import schema  # noqa: E402
from . import plotting, render_why, selection  # noqa: E402


def _band_plot(ax, frame, runs, metric, colours, ylabel):
    plotting.mean_bands(ax, selection.curves(frame, metric), "epoch", runs, colours)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def draw(
    frame: pd.DataFrame, runs: pd.DataFrame, out_dir: Path, profiles: pd.DataFrame | None = None, why=None
) -> dict[str, str]:
    """Draw the report's figures into ``out_dir``; returns {figure name: file name}, in the
    order the report shows them (a figure whose data the runs lack is left out).

    ``profiles`` are the layer responses as :func:`fig7.layer_profiles` aggregates them;
    ``why`` the analyses as :func:`why.build` gathers them (None: no analysed run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = plotting.colours(runs)
    drawn = {
        "train_loss": lambda path: _train_loss_figure(frame, runs, colours, path),
        "accuracy": lambda path: _accuracy_figure(frame, runs, colours, path),
        "grad_norms": lambda path: _grad_norm_figure(frame, runs, colours, path),
        "fig6": lambda path: _fig6(frame, runs, path) and path.name,
        "fig7": lambda path: _fig7(profiles, runs, colours, path) if profiles is not None and len(profiles) else None,
        "step_time": lambda path: _step_time_figure(runs, colours, path),
    }
    made = {name: draw(out_dir / f"{name}.png") for name, draw in drawn.items()}
    made.update(render_why.figures(why, runs, colours, out_dir))
    return {name: file for name, file in made.items() if file}


def _train_loss_figure(frame, runs, colours, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _band_plot(ax, frame, runs, "train_loss", colours, "training loss (mean, band = min-max over seeds)")
    ax.set_yscale("log")
    ax.legend()
    return plotting.save(fig, path)


def _accuracy_figure(frame, runs, colours, path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    _band_plot(axes[0], frame, runs, "train_accuracy", colours, "accuracy")
    axes[0].set_title("training accuracy")
    _band_plot(axes[1], frame, runs, "val_accuracy", colours, "accuracy")
    axes[1].set_title("validation accuracy")
    axes[1].legend()
    return plotting.save(fig, path)


def _grad_norm_figure(frame, runs, colours, path: Path) -> str | None:
    """Per-stage gradient norms of the deepest residual net and its plain twin (None without them)."""
    variants = selection.Variants.of(runs)
    deepest = max(variants.depths(), default=None)
    pair = [variants.residual(deepest) or variants.residual(deepest, zero_init=True), variants.plain(deepest)]
    stem, head = f"{schema.GRAD_NORM_PREFIX}stem", f"{schema.GRAD_NORM_PREFIX}head"
    order = lambda c: (c != stem, c == head, c)  # noqa: E731  stem, stages, head
    grad_cols = sorted((c for c in frame.columns if c.startswith(schema.GRAD_NORM_PREFIX)), key=order)
    if not (all(pair) and grad_cols):
        return None
    sub = frame[frame["model"].isin(pair)]
    groups = [c for c in grad_cols if sub[c].notna().any()]
    fig, axes = plt.subplots(1, len(groups), figsize=(2.6 * len(groups), 3.4), squeeze=False)
    for ax, col in zip(axes[0], groups):
        plotting.mean_bands(ax, selection.curves(sub, col), "epoch", runs, {m: colours[m] for m in pair})
        ax.set_yscale("log")
        ax.set_title(col.split("/", 1)[1])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("gradient L2 norm (probe batch)")
    axes[0][-1].legend(fontsize=8)
    return plotting.save(fig, path)


def _step_time_figure(runs, colours, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    rows = selection.summary(runs)
    ax.bar([r["model"] for r in rows], [r["step_ms"] for r in rows], color=[colours[r["model"]] for r in rows])
    ax.set_ylabel("median step time (ms)")
    ax.grid(axis="y", alpha=0.3)
    return plotting.save(fig, path)


def _fig6(frame: pd.DataFrame, runs: pd.DataFrame, path: Path) -> bool:
    """He et al.'s Fig. 6 layout: training loss per epoch, plain nets left, residual nets
    (the paper's initialisation) right, one line per depth (mean over seeds, band min-max),
    one colour per depth in both panels. Drawn when a kind has two depths or more."""
    variants = selection.Variants.of(runs)
    panels = [(label, variants.of_kind(residual)) for residual, label in ((False, "plain"), (True, "residual"))]
    if max(len(models) for _, models in panels) < 2:
        return False
    depths = sorted({d for _, models in panels for d in models})
    cmap = plt.get_cmap("viridis")
    colour = {d: cmap(i / max(1, len(depths) - 1) * 0.85) for i, d in enumerate(depths)}
    cur = selection.curves(frame, "train_loss")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (label, models) in zip(axes, panels):
        for depth, model in sorted(models.items()):
            c = cur[cur["model"] == model]
            ax.plot(c["epoch"], c["mean"], color=colour[depth], label=model)
            ax.fill_between(c["epoch"], c["min"], c["max"], color=colour[depth], alpha=0.15, linewidth=0)
        ax.set_title(f"{label} nets")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (mean, band = min-max over seeds)")
    plotting.save(fig, path)
    return True


def _fig7(profiles: pd.DataFrame, runs: pd.DataFrame, colours: dict, path: Path) -> str:
    """He et al.'s Fig. 7 (response std of each 3x3 layer in layer order, then each net's
    values sorted in descending order) and a third panel the paper does not have: each residual
    block's branch ratio in block order. One line per variant (mean over seeds; band: min-max)."""
    panels = [("response_std", "layer", "layer index (original)", "std of layer response"),
              ("response_std", "sorted", "layer index (sorted by magnitude)", "std of layer response"),
              ("branch_ratio", "layer", "residual block index", "||F(x)|| / ||s(x)||")]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (kind, order, xlabel, ylabel) in zip(axes, panels):
        sub = profiles[(profiles["kind"] == kind) & (profiles["order"] == order)]
        plotting.mean_bands(ax, sub, "position", runs, colours)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_title("layer order")
    axes[1].set_title("sorted")
    axes[2].set_title("residual branches")
    axes[0].legend(fontsize=8)
    return plotting.save(fig, path)
