"""The report's Markdown: aggregated data -> sections of text and tables (the figures are in
:mod:`.figures`), and the lines ``--against`` prints.

Output is deterministic (sorted rows, fixed float formats), so a report regenerated from the
same store is byte-identical and diffs cleanly.
"""

from __future__ import annotations

import json

import pandas as pd

from ..schema import FINISHED, RUNNING
from . import claims, render_why, verdicts
from .context import ReportContext
from .numbers import pm, seed_text


def _row(c: claims.Comparison) -> str:
    cells = verdicts.estimate_cells
    return f"{c.loss.a} − {c.loss.b} | {c.loss.n} | " + " | ".join(cells(c.loss)) + " | " + " | ".join(cells(c.acc))


def _unique(frame: pd.DataFrame, col: str) -> str:
    vals = sorted({str(v) for v in frame[col].dropna()})
    return ", ".join(vals) if vals else "unknown"


def _trend_section(ctx: ReportContext) -> list[str]:
    trends = ctx.trends
    if not trends:
        return []
    L = [
        "## Depth trends",
        "",
        "Slope of the final training loss on depth (per layer), fitted per seed by least squares over "
        "every depth, then tested over seeds with the report's rule. Degradation grows with depth "
        "when the plain nets' slope is positive; residual nets improve with depth when theirs is negative.",
        "",
        "| nets | depths | n | slope per layer | 95% CI | p |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in trends.items():
        mean, ci, p = verdicts.estimate_cells(t, 4)
        L.append(f"| {label} | {', '.join(map(str, t.depths))} | {t.n} | {mean} | {ci} | {p} |")
    return L + [""]


def _crossing_section(ctx: ReportContext) -> list[str]:
    rows = ctx.crossings
    if not rows:
        return []
    L = [
        "## Where depth starts to pay",
        "",
        "For each deeper and shallower residual net: the first epoch from which the deeper net's "
        "training loss stays below the shallower one's to the last epoch, in every seed, and in "
        "the mean over seeds. With batch norm a deep residual net trains like a shallow one early on "
        "(De & Smith 2020), so a short budget can show the deep net catching up, not yet ahead.",
        "",
        "| deeper | shallower | n | epochs | below for good in every seed from epoch | in the mean from epoch |",
        "|---|---|---|---|---|---|",
    ]
    for c in rows:
        every = str(c.epoch) if c.epoch else f"not within {c.epochs} epochs"
        mean = str(c.mean_epoch) if c.mean_epoch else f"not within {c.epochs} epochs"
        L.append(f"| {c.deep} | {c.shallow} | {c.n} | {c.epochs} | {every} | {mean} |")
    return L + [""]


def _claims_section(ctx: ReportContext) -> list[str]:
    """The report's answer first: Fig. 6's three claims on training loss with the paper's
    initialisation, and where depth starts to pay; the tables below hold the rest."""
    wanted = [name for name, _, _ in (claims.DEGRADATION, claims.SHORTCUT, claims.RESIDUAL_DEPTH)]
    by_claim = {v.claim: v for v in ctx.verdicts}
    L = ["## The three claims", ""]
    for name in wanted:
        v = by_claim.get(name)
        if v is None:
            L.append(f"- **{name}**: not decided (the grid lacks the nets it compares)")
            continue
        d = v.estimate
        L.append(f"- **{name}**: {v.outcome}. {d.a} − {d.b}, {v.metric} {verdicts.estimate_text(d, signed=True)}")
    if (c := ctx.headline) is not None:
        every = f"from epoch {c.epoch} in every seed" if c.epoch else f"in no seed within {c.epochs} epochs"
        mean = f"from epoch {c.mean_epoch}" if c.mean_epoch else "never"
        L.append(f"- **Where depth starts to pay**: {c.deep} stays below {c.shallow} {every} (in the mean: {mean}), "
                 f"of {c.epochs} epochs")  # fmt: skip
    return L + [""] + _held_out_lines(ctx, wanted) + [
        "Rule, validation accuracy and every other claim: section Verdict below.", ""]  # fmt: skip


def _held_out_lines(ctx: ReportContext, wanted: list[str]) -> list[str]:
    """Which seeds chose the design, and the three claims beside it on seeds that did not."""
    seeds = sorted(ctx.runs["seed"].unique())
    L = []
    in_sample = bool(ctx.design_seeds) and set(seeds) <= set(ctx.design_seeds)
    if ctx.design_seeds:
        L += [f"This design was chosen on seeds {seed_text(ctx.design_seeds)}"
              + (", so the verdicts above are in-sample." if in_sample else "."), ""]  # fmt: skip
    h = ctx.held_out
    if h is None:
        return L
    d = h.declared
    if h.missing:
        return L + [f"Held-out check: not shown here, {h.missing}.", ""]
    L += [
        f"Held out: the same claims on seeds {seed_text(h.seeds)} of `{d.experiment}`, whose runs "
        "train the same nets on the same data the same way (the same training fingerprint) and played no part "
        "in choosing the design:",
        "",
        f"| claim | seeds {seed_text(seeds)}{' (in-sample)' if in_sample else ''} | "
        f"seeds {seed_text(h.seeds)} of {d.experiment} (held out) |",
        "|---|---|---|",
    ]
    by_claim = {v.claim: v for v in ctx.verdicts}
    for name in wanted:
        cells = [by_claim.get(name), h.verdict(name)]
        text = [f"{v.outcome}, {verdicts.estimate_text(v.estimate, signed=True)}" if v else "not decided"
                for v in cells]  # fmt: skip
        L.append(f"| {name} | {text[0]} | {text[1]} |")
    return L + [""]


def _zero_init_section(ctx: ReportContext) -> list[str]:
    costs = ctx.zero_init
    if not costs:
        return []
    L = [
        "## Zero-init: a departure and its cost",
        "",
        "The zero-init nets (last BN scale of every residual branch starts at 0; Goyal et al. 2017) are not "
        "the paper's nets, and their verdicts are never the paper's claim. Paired over seeds: zero-init "
        "net minus the paper's residual net of the same depth. A positive loss difference means zero-init "
        "trained *less* far.",
        "",
        "| comparison | n | Δ final train loss | 95% CI | p | Δ final val acc | 95% CI | p |",
        "|" + "---|" * 8,
    ]
    for c in costs:
        L.append(f"| {_row(c)} |")
    return L + [""]


def _response_section(ctx: ReportContext) -> list[str]:
    rows = ctx.responses or []
    if not rows:
        return []
    L = [
        "## Layer responses (He et al. Fig. 7)",
        "",
        "Why shortcuts help, measured once per run after its last epoch, on the fixed probe batch (the first "
        "training images, un-augmented, the same for every variant and seed) in inference mode. *Response std*: "
        "for every 3x3 layer, the standard deviation of its BN output before the ReLU or addition, per channel "
        "and averaged over channels, as in He et al.'s Fig. 7. *Branch ratio*: for every residual block, "
        "||F(x)|| / ||s(x)|| over the batch, where F(x) is the residual branch's output and s(x) the "
        "shortcut's (the block's input, or its downsampled version where the shape changes): how much the block "
        "changes the signal. Per run, the median over its layers "
        "(blocks); below, mean ± std of that median over seeds. Right after BN a channel's std is close to its "
        "BN scale |γ|, so these numbers largely read the learned scales.",
        "",
        "| variant | n | median response std | median branch ratio |",
        "|---|---|---|---|",
    ]
    for r in rows:
        L.append(f"| {r['model']} | {r['n']} | {pm(r['median_response_std'])} | {pm(r['median_branch_ratio'])} |")
    L += [""]
    fig7 = [v for v in ctx.verdicts if v.figure == "fig7"]
    L += [f"- {v.sentence}" for v in fig7] or [
        "No Fig. 7 claim can be decided: the runs lack a plain/residual "
        "pair or two residual depths with the paper's initialisation."
    ]
    if any(r["zero_init"] for r in rows):
        L += [
            "",
            "Zero-init nets (-zi) are shown but carry no verdict: their residual branches start at exactly 0, "
            "so a small response or branch ratio there is where they began, not something training found.",
        ]
    return L + [""]


def _files(first: pd.DataFrame) -> str:
    files = _unique(first, "data_files") if "data_files" in first else "unknown"
    return "" if files in ("unknown", "") else f" ({files.replace(',', ' + ')})"


def _classes(first: pd.DataFrame) -> str:
    """Class names from the logged counts (one data set per configuration: the newest run's)."""
    counts = first.sort_values("start_time")["data_counts"].dropna()
    if counts.empty:
        return ""
    names = list(json.loads(counts.iloc[-1])["train"])
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f" ({shown})"


def _header(ctx: ReportContext) -> list[str]:
    """Title, how to regenerate, and the provenance of the runs used."""
    frame, runs = ctx.frame, ctx.runs
    first = frame.drop_duplicates("run_id")
    L = [f"# Report: {ctx.experiment}", ""]
    L += [
        "_Generated from the MLflow tracking store by `resnet_bench`; numbers, tables, figures and "
        "verdicts are computed, not written by hand._",
        "",
        f"- **Regenerate**: `{ctx.command}`",
        f"- **Runs**: {len(runs)} finished runs used ({runs['seed'].nunique() if len(runs) else 0} seeds: "
        f"{', '.join(map(str, sorted(runs['seed'].unique())))}), {ctx.pending} pending "
        f"({ctx.running} running now), "
        f"{ctx.excluded} failed/killed excluded; configuration `{ctx.config_hash}`"
        + (f" ({ctx.other_configs} runs of other configurations ignored)" if ctx.other_configs else ""),
        f"- **Dates** (UTC): {first['start_time'].min():%Y-%m-%d %H:%M} to {first['start_time'].max():%Y-%m-%d %H:%M}",
        f"- **Data**: source `{_unique(first, 'data_source')}`{_files(first)}, hash `{_unique(first, 'data_hash')}`, "
        f"{_unique(first, 'data_train_count')} train / {_unique(first, 'data_test_count')} test images, "
        f"{_unique(first, 'data_classes')} classes{_classes(first)}, {_unique(first, 'data.image_size')} px",
        f"- **Training**: {_unique(first, 'train.epochs')} epochs, batch {_unique(first, 'train.batch_size')}, "
        f"{_unique(first, 'train.optimizer')} lr {_unique(first, 'train.learning_rate')}, "
        f"BN momentum {_unique(first, 'model.bn_momentum')}, zero-init residual branches: "
        f"{_unique(first, 'zero_init')} (variants named -zi)",
        f"- **Hardware**: {_unique(first, 'cpu_model')} ({_unique(first, 'cpu_count')} CPUs, vector ISA "
        f"{_unique(first, 'cpu_isa')}), GPU: "
        f"{_unique(first, 'gpu')}, device: {_unique(first, 'device')}",
        f"- **Software**: TensorFlow {_unique(first, 'tensorflow_version')}, Keras {_unique(first, 'keras_version')}, "
        f"MLflow {_unique(first, 'mlflow_version')}, Python {_unique(first, 'python_version')}",
        f"- **Code**: git {_unique(first, 'git_commit')} (dirty: {_unique(first, 'git_dirty')})",
        "",
    ]
    if ctx.description:
        L += [ctx.description, ""]
    return L


def _summary_section(ctx: ReportContext) -> list[str]:
    L = [
        "## Summary",
        "",
        "Mean ± standard deviation over seeds (n seeds). Step time and throughput are medians "
        "over runs of each run's median over epochs 2+.",
        "",
        "| variant | depth | shortcut | params | MACs/image | n | final train loss | final train acc | "
        "best val acc | final val acc | step (ms) | images/s |",
        "|" + "---|" * 12,
    ]
    for r in ctx.summary:
        L.append(
            f"| {r['model']} | {r['depth']} | {r['shortcut']} | {r['params']:,} | {r['macs'] / 1e6:.1f}M | {r['n']} | "
            f"{pm(r['final_train_loss'])} | {pm(r['final_train_accuracy'])} | {pm(r['best_val_accuracy'])} | "
            f"{pm(r['final_val_accuracy'])} | {r['step_ms']:.1f} | {r['images_per_second']:.0f} |"
        )
    return L + [""]


def _shortcut_section(ctx: ReportContext) -> list[str]:
    L = [
        "## Shortcut effect",
        "",
        "Paired over seeds: plain minus residual at the same depth and seed. A positive "
        "loss difference means the residual net trained further; a negative accuracy difference means it "
        "validates better.",
        "",
        "| depth | comparison | n | Δ final train loss | 95% CI | p | Δ final val acc | 95% CI | p |",
        "|" + "---|" * 9,
    ]
    L += [f"| {depth} | {_row(c)} |" for depth, c in ctx.shortcut]
    return L + [""]


def _degradation_section(ctx: ReportContext) -> list[str]:
    """The pairwise deep-vs-shallow table, then every verdict but Fig. 7's."""
    L = [
        "## Degradation check",
        "",
        "Paired over seeds: deepest minus shallowest net of each kind. Degradation means the deeper "
        "plain net ends with a *higher* training loss (and a lower validation accuracy); with "
        "shortcuts the paper's deeper net ends *lower* (and validates better).",
        "",
        "| nets | comparison | n | Δ final train loss | 95% CI | p | Δ final val acc | 95% CI | p |",
        "|" + "---|" * 9,
    ]
    L += [f"| {label} | {_row(c)} |" for label, c in ctx.depth.items()]
    L += ["", "### Verdict", "", f"Rule: {verdicts.VERDICT_RULE}", ""]
    if not ctx.verdicts:
        L.append("No claim can be decided: the runs lack a shallow/deep or plain/residual pair.")
    if ctx.runs["seed"].nunique() < 2:
        L.append("Statistics are not available: fewer than 2 seeds finished.")
        L.append("")
    # Fig. 7's and the why's have their own sections
    L += [f"- {v.sentence}" for v in ctx.verdicts if v.figure in ("fig6", "held_out")]
    return L + [""]


CAPTIONS = {
    "train_loss": "Training loss per epoch (line: mean over seeds; band: min-max; dashed: plain, solid: residual).",
    "accuracy": "Training and validation accuracy per epoch.",
    "grad_norms": "Gradient norm per stage on a fixed probe batch at the start of each epoch, plain versus "
    "residual at the deepest depth: how well the loss signal reaches each stage.",
    "step_time": "Median training step time per variant.",
    "fig6": "He et al.'s Fig. 6 layout: training loss per epoch, plain nets (left) and residual nets (right, "
    "the paper's initialisation), one line per depth (mean over seeds; band: min-max).",
    "fig7": "He et al.'s Fig. 7 layout: response std of each 3x3 layer in layer order (left) and sorted in "
    "descending order per run (middle); right: each residual block's branch ratio ||F(x)||/||s(x)||. Line: mean "
    "over seeds; band: min-max; dashed: plain.",
}


def _why_section(ctx: ReportContext) -> list[str]:
    return render_why.section(ctx.why, ctx.verdicts)


def _figures_section(ctx: ReportContext) -> list[str]:
    L = ["## Figures", ""]
    captions = {**CAPTIONS, **render_why.CAPTIONS}
    for name, file in ctx.figures.items():
        L += [f"![{name}]({ctx.figure_dir}/{file})", "", captions[name], ""]
    return L


def _published_section(ctx: ReportContext) -> list[str]:
    if not ctx.published:
        return []
    L = [
        "## Comparison with published numbers",
        "",
        "CIFAR-10 test error (%), ours (mean over seeds) against He et al. 2015, Table 6.",
        "",
        "| variant | n | ours | paper | difference |",
        "|---|---|---|---|---|",
    ]
    for p in ctx.published:
        L.append(f"| {p['model']} | {p['n']} | {p['ours']:.2f} | {p['paper']:.2f} | {p['difference']:+.2f} |")
    return L + [""]


def _run_index_section(ctx: ReportContext) -> list[str]:
    L = ["## Run index", "", "| variant | seed | run id | status | note |", "|---|---|---|---|---|"]
    used = set(ctx.runs["run_id"])
    for r in ctx.index.itertuples():
        note = "used" if r.run_id in used else (r.failure_reason or "superseded by a later run")
        if r.status != FINISHED and not r.failure_reason:
            note = "in progress" if r.status == RUNNING else r.status.lower()
        L.append(f"| {r.model} | {r.seed} | `{r.run_id}` | {r.status} | {str(note).replace('|', '/')[:120]} |")
    return L + [""]


SECTIONS = (
    _header,
    _claims_section,
    _summary_section,
    _shortcut_section,
    _degradation_section,
    _trend_section,
    _crossing_section,
    _zero_init_section,
    _response_section,
    _why_section,
    _figures_section,
    _published_section,
    _run_index_section,
)


def markdown(ctx: ReportContext) -> str:
    """The report text from an aggregated context (see ``report.build_context``): its sections
    in order, each rendered by its own function."""
    return "\n".join(line for section in SECTIONS for line in section(ctx))
