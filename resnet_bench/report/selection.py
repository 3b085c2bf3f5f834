"""Which runs a report is about, and the per-run table it aggregates.

One configuration, the newest FINISHED run of each (variant, seed); the schema checked; one row
per run with its final numbers; per-variant summaries and per-epoch curves. Pure: frames in,
frames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..errors import UserError
from ..schema import FINISHED


def select_runs(frame: pd.DataFrame, config_hash: str | None = None, seeds=None) -> tuple[pd.DataFrame, str]:
    """The runs a report is about: one configuration, the latest attempt per (model, seed).

    Returns the frame restricted to those runs (all statuses) and the configuration hash used:
    the given one, or that of the most recently started run.
    """
    if config_hash is None:
        config_hash = frame.sort_values("start_time")["config_hash"].iloc[-1]
    sel = frame[frame["config_hash"] == config_hash]
    if seeds:
        sel = sel[sel["seed"].isin(list(seeds))]
    return sel, config_hash


def finished_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """FINISHED runs only, the newest per (model, seed) (a ``--force`` re-run supersedes)."""
    done = frame[frame["status"] == FINISHED]
    latest = done.sort_values("start_time").groupby(["model", "seed"])["run_id"].last()
    return done[done["run_id"].isin(latest)]


def check_schema(frame: pd.DataFrame) -> None:
    """Every run a report uses must hold the params of :mod:`resnet_bench.schema`; a run that
    lacks one was written by another version, and its numbers would silently become gaps."""
    if "schema_missing" not in frame:
        return
    bad = frame[frame["schema_missing"].fillna("") != ""].drop_duplicates("run_id")
    if len(bad):
        r = bad.iloc[0]
        missing = r["schema_missing"].replace(",", ", ")
        raise UserError(
            f"run {r['run_id']} ({r['model']} seed {r['seed']}) lacks the params {missing}; "
            "it was written by another version of resnet_bench (see resnet_bench/schema.py)"
        )


def per_run(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final-epoch metrics, best validation accuracy, median step time."""
    rows = []
    for run_id, g in frame.dropna(subset=["epoch"]).groupby("run_id", sort=True):
        g = g.sort_values("epoch")
        last = g.iloc[-1]
        later = g[g["epoch"] > 1] if len(g) > 1 else g  # epoch 1 includes tracing
        rows.append(
            {
                "run_id": run_id,
                "model": last["model"],
                "seed": int(last["seed"]),
                "depth": int(last["depth"]),
                "shortcut": last["shortcut"],
                "zero_init": bool(last.get("zero_init")),
                "params_total": last["params_total"],
                "macs": last["macs"],
                "epochs": int(last["epoch"]),
                "final_train_loss": last["train_loss"],
                "final_train_accuracy": last["train_accuracy"],
                "final_val_accuracy": last["val_accuracy"],
                "best_val_accuracy": g["val_accuracy"].max(),
                "step_ms": later["step_ms_median"].median(),
                "images_per_second": later["images_per_second"].median(),
            }
        )
    return pd.DataFrame(rows)


def mean_std(x: pd.Series) -> tuple[float, float]:
    x = x.dropna()
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def summary(runs: pd.DataFrame) -> list[dict]:
    """One row per variant (sorted by depth, residual first): mean, std and n over seeds."""
    out = []
    order = runs.assign(plain=runs["shortcut"] == "none").sort_values(["depth", "plain", "model"])
    for model, g in order.groupby("model", sort=False):
        row = {
            "model": model,
            "depth": int(g["depth"].iloc[0]),
            "shortcut": g["shortcut"].iloc[0],
            "params": int(g["params_total"].iloc[0]),
            "macs": int(g["macs"].iloc[0]),
            "n": len(g),
        }
        for col in ("final_train_loss", "final_train_accuracy", "best_val_accuracy", "final_val_accuracy"):
            row[col] = mean_std(g[col])
        row["step_ms"] = float(g["step_ms"].median())
        row["images_per_second"] = float(g["images_per_second"].median())
        out.append(row)
    return out


@dataclass(frozen=True)
class Variants:
    """The variants of a report's runs, looked up by what they are rather than by name: the
    plain net or the residual net (He et al.'s initialisation, or zero-init) of a depth."""

    names: dict  # (depth, residual, zero_init) -> model name

    @classmethod
    def of(cls, runs: pd.DataFrame) -> Variants:
        zi = runs["zero_init"] if "zero_init" in runs else pd.Series(False, index=runs.index)
        names: dict = {}
        for r, z in zip(runs.itertuples(), zi):
            names.setdefault((int(r.depth), r.shortcut != "none", bool(z)), r.model)
        return cls(names)

    def get(self, depth: int, residual: bool, zero_init: bool = False) -> str | None:
        return self.names.get((depth, residual, zero_init))

    def plain(self, depth: int) -> str | None:
        return self.get(depth, False)

    def residual(self, depth: int, zero_init: bool = False) -> str | None:
        return self.get(depth, True, zero_init)

    def depths(self, residual: bool | None = None, zero_init: bool = False) -> list[int]:
        """The depths with a variant of that kind (every depth when ``residual`` is None)."""
        return sorted({d for d, r, z in self.names if residual is None or (r == residual and z == zero_init)})

    def of_kind(self, residual: bool, zero_init: bool = False) -> dict[int, str]:
        """depth -> model name for one kind."""
        return {d: self.get(d, residual, zero_init) for d in self.depths(residual, zero_init)}

    def twins(self) -> list[tuple[int, str, str]]:
        """(depth, plain, residual) for each depth with both twins (He et al.'s initialisation)."""
        return [(d, self.plain(d), self.residual(d)) for d in self.depths() if self.plain(d) and self.residual(d)]

    def extremes(self, residual: bool, zero_init: bool = False) -> tuple[str, str] | None:
        """(deepest, shallowest) of one kind, when it has two depths or more."""
        depths = self.depths(residual, zero_init)
        if len(depths) < 2:
            return None
        return self.get(depths[-1], residual, zero_init), self.get(depths[0], residual, zero_init)


def curves(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (model, epoch): mean, std, min and max of ``metric`` over seeds."""
    g = frame.dropna(subset=["epoch", metric]).groupby(["model", "epoch"])[metric]
    return g.agg(["mean", "std", "min", "max", "count"]).reset_index()
