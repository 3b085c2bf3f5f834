"""``resnet-bench analyse``: lesions, loss landscapes and curvature of an experiment's stored nets."""

from __future__ import annotations

from .. import inputs
from ..tracking.uris import tracking_uri

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
    from .. import analysis, config

    cfg = config.load(args.experiment, args.set, args.data)
    uri = tracking_uri(args.tracking_uri, must_exist=True)
    config.check_data_path(cfg)
    from ..pools import resolve_jobs

    analysis.analyse_experiment(cfg, uri, resolve_jobs(args.jobs, cfg.train.intra_op_threads), force=args.force)
    return 0
