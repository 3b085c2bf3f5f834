"""``resnet-bench run``: train every pending (variant, seed) of an experiment, tracked in MLflow."""

from __future__ import annotations

from .. import inputs
from ..tracking.uris import tracking_uri

NAME = "run"
LOADS_TENSORFLOW = False  # only where runs train (the pool sees to it), after the input is checked


def STOPPED() -> str:  # noqa: N802  (what an interrupt leaves: the CLI's one line, as every command's STOPPED)
    from .. import driver

    return {
        "runs": "the current run is marked KILLED",
        "data": "stopped while reading the data set, before any run started (a decode in progress left nothing)",
        "analysis": "every run trained is kept; the runs measured so far keep their results",
    }.get(driver.STAGE, "stopped before any run started; nothing was written")


def add_parser(sub) -> None:
    r = sub.add_parser(NAME, help="train every pending (variant, seed) of an experiment and track it in MLflow")
    r.add_argument("experiment", help="experiment file, e.g. experiments/shortcut_ablation.toml")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config field")
    r.add_argument("--data", help="data path (photo folder, CIFAR-10 folder or archive, .npz/.h5 file)")
    r.add_argument("--seeds", type=inputs.seed_list, help="comma-separated seeds (default: the file's)")
    r.add_argument("--models", type=inputs.name_list, action="append", help="variant names, e.g. resnet56,plain56")
    r.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    r.add_argument("--force", action="store_true", help="train again even runs that already finished")
    r.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")
    r.add_argument(
        "--analyse",
        action="store_true",
        help="measure each net as it finishes (as `resnet-bench analyse`), then any finished earlier",
    )
    r.add_argument(
        "--jobs",
        type=inputs.jobs,
        default="auto",
        help="runs trained side by side in local worker processes (default auto: cores / train.intra_op_threads)",
    )
    r.add_argument("--executor", choices=("local", "ray"), default="local")
    r.add_argument("--address", default=None, help="Ray cluster address (e.g. auto)")
    r.add_argument("--gpus-per-run", type=inputs.non_negative_float, default=0)
    r.add_argument("--cpus-per-run", type=inputs.non_negative_float, default=1)
    r.set_defaults(command_main=main)


def main(args) -> int:
    from .. import config, driver
    from ..pools import PoolOptions

    cfg = config.load(args.experiment, args.set, args.data)
    uri = tracking_uri(args.tracking_uri)
    if not args.dry_run:
        config.check_data_path(cfg)
    # No TensorFlow here: the pool loads it, quietly, in the processes that train (this one
    # only for --jobs 1), so a sweep of worker processes does not pay its import twice.
    models = [m for group in args.models for m in group] if args.models else None
    pools = PoolOptions(args.executor, args.jobs, args.address, args.gpus_per_run, args.cpus_per_run)
    analysis = None
    if args.analyse:
        from ..analysis import AfterTraining, settings_of

        analysis = AfterTraining(settings_of(cfg))
    rc = driver.run_sweep(
        cfg, uri, seeds=args.seeds, models=models, force=args.force, dry_run=args.dry_run, pools=pools,
        analysis=analysis,
    )  # fmt: skip
    if args.analyse and not args.dry_run:  # what the sweep did not measure: runs finished before it
        from ..analysis import analyse_experiment

        driver.set_stage("analysis")
        from ..pools import resolve_jobs

        analyse_experiment(cfg, uri, resolve_jobs(args.jobs, cfg.train.intra_op_threads))
    return rc
