"""``resnet-bench analyse``: lesions, loss landscapes and curvature of an experiment's stored nets."""

from __future__ import annotations

from .. import inputs

NAME = "analyse"
LOADS_TENSORFLOW = False  # loaded once the experiment and the store are checked
STOPPED = "the runs measured so far keep their results"  # what an interrupt leaves (the CLI's one line)


def add_parser(sub) -> None:
    a = sub.add_parser(
        NAME, help="measure why residual nets train (block lesions, loss landscapes, curvature) on the stored nets"
    )
    a.add_argument("experiment", help="experiment file, e.g. experiments/shortcut_ablation.toml")
    a.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config field")
    a.add_argument("--data", help="data path, as given to run")
    a.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    a.add_argument("--force", action="store_true", help="measure again runs already analysed with these settings")
    a.add_argument(
        "--jobs", type=inputs.jobs, default="auto", help="runs measured side by side (auto: cores / intra-op threads)"
    )
    a.set_defaults(command_main=main)


def main(args) -> int:
    from .. import config

    cfg = config.load(args.experiment, args.set, args.data)
    uri = inputs.tracking_uri(args.tracking_uri, must_exist=True)
    config.check_data_path(cfg)
    return measure(cfg, uri, args.jobs, force=args.force)


def measure(cfg, uri: str, jobs, *, force: bool = False) -> int:
    """Analyse ``cfg``'s stored nets in ``jobs`` processes ("auto": cores / intra-op threads)
    and print one line of counts; also what ``run --analyse`` does after training."""
    from .. import analysis
    from ..pools import auto_jobs

    jobs = auto_jobs(cfg.train.intra_op_threads, 1 << 30) if jobs == "auto" else jobs
    settings = analysis.Settings(contour_points=cfg.analysis.contours)
    counts = analysis.analyse(cfg, uri, settings=settings, force=force, jobs=jobs)
    print(f"analysed {counts['analysed']} runs in {counts['seconds']:.0f}s ({counts['already']} already analysed, "
          f"{counts['no_model']} without a stored model)")  # fmt: skip
    return 0
