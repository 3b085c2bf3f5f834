"""Report: tracking store -> tidy frame -> aggregation -> Markdown + figures.

Reads the store only (no TensorFlow, no model code), so a report regenerates in seconds from
any store, one filled by someone else included.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..schema import ENDED_BADLY, FINISHED, RUNNING
from ..sections import GridConfig
from . import claims, crossings, fig7, figures, held_out, render, selection, verdicts, why
from .context import ReportContext
from .frame import load_analyses, load_frames

__all__ = ["ReportContext", "build_context", "write_report", "records_path", "load_frames", "log_report_run"]


def _expected_runs(first) -> int:
    """Size of the grid the runs were planned with: their logged grid.* params, expanded by
    the config's own rule (:meth:`~resnet_bench.sections.GridConfig.cells`)."""
    newest = first.sort_values("start_time").iloc[-1]
    listed = lambda key: str(newest.get(key) or "").split(",")  # noqa: E731
    grid = GridConfig(depths=tuple(listed("grid.depths")), shortcuts=tuple(listed("grid.shortcuts")),
                      zero_init=tuple(z == "True" for z in listed("grid.zero_init") if z) or (False,))  # fmt: skip
    return len(grid.cells()) * len(listed("grid.seeds"))


def build_context(
    frame, experiment: str, config_hash=None, seeds=None, figure_dir="figures", command="", layers=None, analyses=None,
    held_out_frame=None, held_out_missing="",
) -> ReportContext:  # fmt: skip
    """Everything the renderers need, computed from the tidy frames (pure, no I/O).

    ``layers`` is the layer-measurement frame of :func:`frame.load_frames` (None: no Fig. 7);
    ``analyses`` the runs' analysis records, by run id (:func:`frame.load_analyses`); ``held_out_frame``
    the runs of the ``[report]`` table's held-out check (None: not there; ``held_out_missing`` says why)."""
    sel, config_hash = selection.select_runs(frame, config_hash, seeds)
    if sel.empty:
        raise UserError(f"no runs of {experiment!r} match configuration {config_hash} and seeds {seeds}")
    used = selection.finished_latest(sel)
    selection.check_schema(used)
    runs = selection.per_run(used)
    if layers is not None and not runs.empty:
        runs = fig7.with_layer_medians(runs, layers)
    if runs.empty:
        raise UserError(f"experiment {experiment!r} has no FINISHED runs yet (configuration {config_hash})")
    first = sel.drop_duplicates("run_id")
    done_pairs = set(zip(runs["model"], runs["seed"]))
    expected = _expected_runs(first) if not seeds else len(runs["model"].unique()) * len(seeds)
    described = first.sort_values("start_time")["description"].dropna()
    analysed = why.build(runs, analyses or {})
    declared = held_out.Declared.of(first)
    checked = held_out.check(declared, used, held_out_frame, held_out_missing)
    return ReportContext(
        experiment=experiment,
        frame=used,
        runs=runs,
        config_hash=config_hash,
        other_configs=int(frame.drop_duplicates("run_id")["config_hash"].ne(config_hash).sum()),
        pending=max(0, expected - len(done_pairs)),
        running=int((first["status"] == RUNNING).sum()),
        excluded=int(first["status"].isin(ENDED_BADLY).sum()),
        index=first.sort_values(["model", "seed", "start_time"])[
            ["model", "seed", "run_id", "status", "failure_reason"]
        ],
        summary=selection.summary(runs),
        shortcut=claims.shortcut_effects(runs),
        depth=claims.depth_effects(runs),
        verdicts=[
            *claims.verdicts(runs),
            *(checked.verdicts if checked else []),
            *(analysed.verdicts if analysed else []),
        ],
        trends=claims.depth_trends(runs),
        crossings=(found := crossings.crossings(used, runs)),
        headline=crossings.headline(found, runs),
        zero_init=claims.zero_init_costs(runs),
        responses=fig7.response_table(runs),
        profiles=fig7.layer_profiles(layers, runs) if layers is not None else None,
        why=analysed,
        held_out=checked,
        design_seeds=declared.design_seeds,
        published=claims.published_comparison(runs, str(first["data_source"].iloc[0]), str(first["family"].iloc[0])),
        figure_dir=figure_dir,
        command=command,
        description=described.iloc[-1] if len(described) else "",
    )


def _held_out_frame(uri: str, frame) -> tuple[object, str]:
    """The runs of the experiment the newest run's ``[report]`` table names for its held-out
    check, from the same store: (frame, "") or (None, why there are none)."""
    declared = held_out.Declared.of(frame)
    if not declared.experiment:
        return None, ""
    try:
        return load_frames(uri, declared.experiment)[0], ""
    except UserError:
        seeds = ",".join(map(str, declared.seeds))
        depths = ",".join(str(int(d)) for d in sorted(frame["depth"].dropna().unique()))
        command = f"resnet-bench run experiments/{declared.experiment}.toml"
        return None, f"`{command} --set 'grid.seeds=[{seeds}]' --set 'grid.depths=[{depths}]'` trains them"


def records_path(report: Path) -> Path:
    """Where a report's verdict records are: ``NAME.json`` beside ``NAME.md``."""
    return Path(report).with_suffix(".json")


def write_report(uri: str, experiment: str, out: Path, config_hash=None, seeds=None, command="") -> ReportContext:
    """Write ``out``, its verdict records (:func:`records_path`) and its figures
    (``figures/<experiment>/`` beside it); returns the context."""
    frame, layers = load_frames(uri, experiment)
    out = Path(out)
    fig_rel = f"figures/{out.stem}"
    other, missing = _held_out_frame(uri, frame)
    ctx = build_context(frame, experiment, config_hash, seeds, fig_rel, command, layers, load_analyses(uri, frame),
                        other, missing)  # fmt: skip
    ctx.figures = figures.draw(ctx.frame, ctx.runs, out.parent / fig_rel, ctx.profiles, ctx.why)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render.markdown(ctx))
    records_path(out).write_text(verdicts.to_json(ctx.verdicts, experiment=experiment, config_hash=ctx.config_hash,
                                                  runs=len(ctx.runs), report=out.name))  # fmt: skip
    ctx.all_frame = frame
    return ctx


def log_report_run(uri: str, experiment: str, out: Path, ctx: ReportContext) -> str:
    """The report's Markdown and figures as artifacts of a small run in the experiment.

    Tagged ``bench_report`` and without a ``run_key``, so neither a sweep nor a report ever
    takes it for a training run; its params say which runs it summarises.
    """
    from ..tracking.store import Store

    store = Store(uri)
    exp_id = store.experiment_id(experiment, create=False)
    outcomes = {f"verdict/{v.key}": v.outcome for v in ctx.verdicts}
    tags = {"bench_report": "true", "config_hash": ctx.config_hash, "mlflow.runName": f"report-{out.stem}"}
    run_id = store.create_run(exp_id, tags)
    store.log_params(run_id, {"runs_used": len(ctx.runs), "report_file": str(out), **outcomes})
    store.log_artifact(run_id, str(out))
    store.log_artifact(run_id, str(records_path(out)))
    for name in ctx.figures.values():
        store.log_artifact(run_id, str(out.parent / ctx.figure_dir / name), artifact_path="figures")
    store.end(run_id, FINISHED)
    return run_id
