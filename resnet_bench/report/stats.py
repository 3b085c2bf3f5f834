"""Pure aggregation: tidy frame -> summary rows, paired differences, verdicts.

Nothing here reads a store or draws; every function takes a DataFrame (or rows) and returns
plain data, so tests can feed hand-built frames with known answers.

Statistics: a *paired t-test* (``scipy.stats.ttest_rel``) with a t-based 95% interval on
the per-seed differences. Pairing is by seed: a plain net and its residual twin with seed k
share initial-weight draws, data order and augmentation. The t-test rather than an exact
permutation test because with the few seeds a CPU budget affords, the permutation test
cannot reach significance at all (with n = 3 pairs its smallest two-sided p-value is
2 / 2**3 = 0.25), whereas the t-test uses the size of the differences, at the price of assuming
they are roughly normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import UserError
from ..schema import FINISHED
from .verdicts import ALPHA, Verdict, decide, decide_trend


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


def _mean_std(x: pd.Series) -> tuple[float, float]:
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
            row[col] = _mean_std(g[col])
        row["step_ms"] = float(g["step_ms"].median())
        row["images_per_second"] = float(g["images_per_second"].median())
        out.append(row)
    return out


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95% t-interval and the one-sample t-test p against 0."""

    n: int
    mean: float
    low: float
    high: float
    p: float
    seeds: tuple[int, ...]

    @property
    def has_stats(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low)


def _t_estimate(d: np.ndarray, seeds) -> dict:
    """The :class:`Estimate` fields of per-seed values ``d``.

    A paired t-test is this test on the per-seed differences (``ttest_rel`` equals
    ``ttest_1samp`` of ``a - b``); a trend is this test on the per-seed slopes.
    """
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    low = high = p = float("nan")
    if n >= 2:
        se = d.std(ddof=1) / math.sqrt(n)
        if se == 0:
            low = high = mean
            p = 0.0 if mean != 0 else 1.0
        else:
            half = sps.t.ppf(1 - ALPHA / 2, n - 1) * se
            low, high = mean - half, mean + half
            p = float(sps.ttest_1samp(d, 0.0).pvalue)
    return {"n": n, "mean": mean, "low": float(low), "high": float(high), "p": p,
            "seeds": tuple(int(s) for s in seeds)}  # fmt: skip


@dataclass(frozen=True)
class Paired(Estimate):
    """Paired difference ``a - b`` over the seeds both variants share."""

    a: str
    b: str
    metric: str


def paired(runs: pd.DataFrame, a: str, b: str, metric: str) -> Paired:
    """Mean of ``a - b`` with a 95% t-interval and the paired t-test p-value (NaN if n < 2)."""
    va = runs[runs["model"] == a].set_index("seed")[metric]
    vb = runs[runs["model"] == b].set_index("seed")[metric]
    seeds = sorted(set(va.dropna().index) & set(vb.dropna().index))
    d = np.array([va[s] - vb[s] for s in seeds], dtype=float)
    return Paired(a=a, b=b, metric=metric, **_t_estimate(d, seeds))


@dataclass(frozen=True)
class Trend(Estimate):
    """Slope of a final metric on depth (per layer), fitted per seed, then tested over seeds.

    The slope is fitted within each seed across the depths that seed finished at every one
    of (least squares), so each seed contributes one number and the test over seeds keeps
    the pairing the pairwise comparisons use.
    """

    label: str  # "plain" or "residual"
    metric: str
    depths: tuple[int, ...]
    models: tuple[str, ...]


def seed_slopes(runs: pd.DataFrame, models: list[str], metric: str) -> tuple[pd.Series, tuple[int, ...]]:
    """Least-squares slope of ``metric`` on depth over ``models``, one per seed that has every
    depth (index: seed), and the depths."""
    sub = runs[runs["model"].isin(models)]
    table = sub.pivot_table(index="seed", columns="depth", values=metric, aggfunc="first").dropna()
    depths = np.array(table.columns, dtype=float)
    slopes = [np.polyfit(depths, row.to_numpy(float), 1)[0] for _, row in table.iterrows()]
    return pd.Series(slopes, index=table.index, dtype=float), tuple(int(d) for d in depths)


def depth_trend(runs: pd.DataFrame, models: list[str], label: str, metric: str = "final_train_loss") -> Trend:
    """Per-seed least-squares slope of ``metric`` on depth over ``models``, tested over seeds."""
    slopes, depths = seed_slopes(runs, models, metric)
    return Trend(
        label=label, metric=metric, depths=depths, models=tuple(models), **_t_estimate(slopes.to_numpy(), slopes.index)
    )


def depth_trends(runs: pd.DataFrame) -> dict[str, Trend]:
    """The slope on depth for plain and for residual nets (He et al.'s initialisation), when
    at least three depths are there: with two, the slope is the pairwise comparison again."""
    names = variant_names(runs)
    out = {}
    for residual, label in ((False, "plain"), (True, "residual")):
        depths = sorted(d for d, r, z in names if r == residual and not z)
        if len(depths) >= 3:
            out[label] = depth_trend(runs, [names[(d, residual, False)] for d in depths], label)
    return out


def variant_names(runs: pd.DataFrame) -> dict[tuple[int, bool, bool], str]:
    """(depth, residual?, zero-init?) -> model name for the variants present."""
    zi = runs["zero_init"] if "zero_init" in runs else pd.Series(False, index=runs.index)
    out = {}
    for r, z in zip(runs.itertuples(), zi):
        out.setdefault((int(r.depth), r.shortcut != "none", bool(z)), r.model)
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
    names = variant_names(runs)
    out = []
    for depth in sorted({d for d, _, _ in names}):
        plain = names.get((depth, False, False))
        for zi, suffix in INITS:
            res = names.get((depth, True, zi))
            if plain and res:
                out.append((depth, _compare(runs, f"plain{suffix}", plain, res)))
    return out


def depth_effects(runs: pd.DataFrame) -> dict[str, Comparison]:
    """Deepest minus shallowest net of each kind: plain, residual, residual with zero-init."""
    names = variant_names(runs)
    out = {}
    kinds = ((False, False, "plain"), (True, False, "residual"), (True, True, "residual (zero-init)"))
    for residual, zi, label in kinds:
        depths = sorted(d for d, r, z in names if r == residual and z == zi)
        if len(depths) >= 2:
            deep, shallow = names[(depths[-1], residual, zi)], names[(depths[0], residual, zi)]
            out[label] = _compare(runs, label, deep, shallow)
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


# ----------------------------------------------------------------------------------------
# Layer responses (He et al. Fig. 7): why residual nets train

# Per-run summaries of the layer frame (frame.load_frames), as columns of the per-run table.
LAYER_SUMMARIES = {"response_std": "median_response_std", "branch_ratio": "median_branch_ratio"}
# The two claims of Fig. 7, as (name, how a - b reads, metric, sign of a - b).
RESPONSES = ("Residual responses are smaller", "plain minus residual", "median response std", +1)
BRANCHES = ("Deeper residual nets modify the signal less", "deep minus shallow residual net",
            "median branch ratio ||F(x)||/||s(x)||", -1)  # fmt: skip


def with_layer_medians(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus each run's median response std over its 3x3 layers and median branch
    ratio over its residual blocks (NaN where a run logged none: plain nets have no branches,
    runs of earlier versions no responses).

    The median, not the mean, so a few layers with large responses (a stage's first block,
    where the shortcut changes shape) do not decide the comparison.
    """
    out = runs.copy()
    for kind, col in LAYER_SUMMARIES.items():
        sub = layers[layers["kind"] == kind] if len(layers) else layers
        medians = sub.groupby("run_id")["value"].median() if len(sub) else pd.Series(dtype=float)
        out[col] = out["run_id"].map(medians).astype(float)
    return out


def layer_profiles(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Fig. 7's two panels as data: per (model, kind, order, position), the mean, min and max
    over seeds. ``order`` is ``layer`` (position = the layer's index in the net) or ``sorted``
    (position = rank after sorting each run's values in descending order, as the paper's
    bottom panel does)."""
    cols = ["model", "kind", "order", "position", "mean", "min", "max", "count"]
    if layers.empty:
        return pd.DataFrame(columns=cols)
    used = layers.merge(runs[["run_id", "model"]], on="run_id")
    ranked = used.sort_values("value", ascending=False, kind="stable")
    ranked = ranked.assign(position=ranked.groupby(["run_id", "kind"]).cumcount() + 1, order="sorted")
    both = pd.concat([used.assign(position=used["index"], order="layer"), ranked])
    g = both.groupby(["model", "kind", "order", "position"])["value"]
    return g.agg(["mean", "min", "max", "count"]).reset_index()[cols]


def response_table(runs: pd.DataFrame) -> list[dict]:
    """Per variant (summary order): mean and std over seeds of the two layer summaries."""
    if not set(LAYER_SUMMARIES.values()) <= set(runs.columns):
        return []
    order = [row["model"] for row in summary(runs)]
    out = []
    for model in order:
        g = runs[runs["model"] == model]
        if g["median_response_std"].notna().any():
            row = {"model": model, "n": int(g["median_response_std"].notna().sum()),
                   "zero_init": bool(g["zero_init"].iloc[0])}  # fmt: skip
            for col in LAYER_SUMMARIES.values():
                row[col] = _mean_std(g[col]) if g[col].notna().any() else None
            out.append(row)
    return out


def response_verdicts(runs: pd.DataFrame) -> list[Verdict]:
    """Fig. 7's claims with the paper's initialisation, decided by :data:`.verdicts.VERDICT_RULE`.

    *Residual responses are smaller* at every depth with both twins; *deeper residual nets
    modify the signal less* for the deepest against the shallowest residual net. Zero-init
    nets get none: their branches start at exactly zero, so a small response there is the
    initialisation speaking, not something training found.
    """
    if not set(LAYER_SUMMARIES.values()) <= set(runs.columns):
        return []
    names = variant_names(runs)
    out = []
    name, reading, metric, sign = RESPONSES
    col = LAYER_SUMMARIES["response_std"]
    for depth in sorted({d for d, _, _ in names}):
        plain, res = names.get((depth, False, False)), names.get((depth, True, False))
        if plain and res:
            d = paired(runs, plain, res, col)
            if d.n:
                out.append(decide(f"{name} at depth {depth}", d, reading, metric, sign, figure="fig7"))
    depths = sorted(d for d, r, z in names if r and not z)
    if len(depths) >= 2:
        name, reading, metric, sign = BRANCHES
        d = paired(
            runs, names[(depths[-1], True, False)], names[(depths[0], True, False)], LAYER_SUMMARIES["branch_ratio"]
        )
        if d.n:
            out.append(decide(name, d, reading, metric, sign, figure="fig7"))
    return out


@dataclass(frozen=True)
class Crossing:
    """Where a deeper residual net's training loss goes below a shallower one's for good."""

    deep: str
    shallow: str
    epoch: int | None  # first epoch from which deep < shallow at every later epoch, in every seed
    epochs: int  # epochs both nets have in every seed
    n: int  # seeds
    # first epoch from which deep < shallow for good in the mean over seeds (None: never)
    mean_epoch: int | None


def _stays_below(below: np.ndarray) -> int | None:
    """First 1-based index from which ``below`` is True to the end (None when the last is False)."""
    if not len(below) or not below[-1]:
        return None
    false = np.flatnonzero(~below)
    return int(false[-1]) + 2 if len(false) else 1


def crossings(frame: pd.DataFrame, runs: pd.DataFrame) -> list[Crossing]:
    """For every deeper-vs-shallower pair of residual nets with the same initialisation:
    the first epoch from which the deeper net's training loss stays below the shallower
    one's in every seed (and in the mean over seeds).

    Only epochs that every paired seed reached count, so a run still in progress neither
    makes nor breaks a crossing.
    """
    names = variant_names(runs)
    used = frame[frame["run_id"].isin(runs["run_id"])]
    loss = used.pivot_table(index=["model", "seed"], columns="epoch", values="train_loss", aggfunc="first")
    out = []
    for zi in (False, True):
        depths = sorted(d for d, r, z in names if r and z == zi)
        for i, shallow_d in enumerate(depths):
            for deep_d in depths[i + 1 :]:
                deep, shallow = names[(deep_d, True, zi)], names[(shallow_d, True, zi)]
                seeds = sorted(
                    set(loss.loc[deep].index) & set(loss.loc[shallow].index)
                    if deep in loss.index and shallow in loss.index
                    else set()
                )
                if not seeds:
                    continue
                a = loss.loc[[(deep, s) for s in seeds]].to_numpy(float)
                b = loss.loc[[(shallow, s) for s in seeds]].to_numpy(float)
                common = ~np.isnan(a).any(axis=0) & ~np.isnan(b).any(axis=0)
                last = int(np.argmin(common)) if not common.all() else common.size  # leading full epochs
                a, b = a[:, :last], b[:, :last]
                every = _stays_below((a < b).all(axis=0))
                mean = _stays_below(a.mean(axis=0) < b.mean(axis=0))
                out.append(Crossing(deep, shallow, every, last, len(seeds), mean))
    return out


def zero_init_costs(runs: pd.DataFrame) -> list[Comparison]:
    """Each zero-init residual net minus the paper's residual net of the same depth: what
    the departure costs (or gains) on its own, so it never silently stands in for the paper."""
    names = variant_names(runs)
    out = []
    for (depth, residual, zi), name in sorted(names.items()):
        paper = names.get((depth, True, False))
        if residual and zi and paper:
            out.append(_compare(runs, f"zero-init cost at depth {depth}", name, paper))
    return out


def curves(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (model, epoch): mean, std, min and max of ``metric`` over seeds."""
    g = frame.dropna(subset=["epoch", metric]).groupby(["model", "epoch"])[metric]
    return g.agg(["mean", "std", "min", "max", "count"]).reset_index()


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
