"""``resnet-bench``: parse arguments, call the library, turn user mistakes into exit code 2.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, at import, so it is set here, where the
process starts, before any module that imports TensorFlow: oneDNN kernels made CIFAR ResNet
training 1.5-1.8x faster on AVX2-only CPUs where TensorFlow leaves them off (reports/perf.md).
``--no-onednn`` or an explicit ``TF_ENABLE_ONEDNN_OPTS=0`` turns them off.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback

from . import inputs, quiet
from .errors import Terminated, UserError
from .spec import FAMILIES, FLAVOURS, SHORTCUTS

# Commands that need TensorFlow from the start load it first, quietly (see quiet.py); `run`
# and `data` load it only once their input has been checked, so a mistake is told at once.
TENSORFLOW_COMMANDS = {"models", "perf", "gpu-check"}


def _setup_env(argv: list[str]) -> None:
    if "--no-onednn" in argv:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The store's calls wait out an outage themselves, quietly and for one configurable time
    # ($RESNET_BENCH_TRACKING_PATIENCE, tracking._retry); MLflow's own HTTP retries would add
    # minutes of backoff and a warning per attempt on top.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def _cmd_run(args) -> int:
    from . import config, driver

    cfg = config.load(args.experiment, args.set, args.data)
    uri = inputs.tracking_uri(args.tracking_uri)
    if not args.dry_run:
        config.check_data_path(cfg)
        quiet.load_tensorflow()
    models = [m for group in args.models for m in group] if args.models else None
    return driver.run_sweep(
        cfg,
        uri,
        seeds=args.seeds,
        models=models,
        force=args.force,
        dry_run=args.dry_run,
        executor=args.executor,
        jobs=args.jobs,
        address=args.address,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
    )


def _cmd_report(args) -> int:
    from .report import cli_report

    return cli_report(args)


def _cmd_models(args) -> int:
    from .models import ModelSpec, describe, parse_model_name, registry

    options = {"family": args.family, "shortcut": args.shortcut, "flavour": args.flavour}
    try:
        if args.model:
            specs = []
            for name in args.model:
                spec = parse_model_name(name, **{k: v for k, v in options.items() if v})
                specs += [spec, spec.twin()] if spec.residual else [spec]
        else:
            specs = registry(args.flavour or "paper")
            if args.shortcut and args.shortcut != "none":
                specs = [ModelSpec(**{**s.__dict__, "shortcut": args.shortcut}) if s.residual else s for s in specs]
        binary = args.classes == 2 and (args.flavour == "article" or args.binary)
        shape = (args.image_size, args.image_size, 3)
        rows = [describe(s, shape, args.classes, binary) for s in dict.fromkeys(specs)]
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'name':<18}{'depth':>6}{'shortcut':>9}{'flavour':>9}{'params':>13}{'trainable':>13}{'GMACs':>9}")
        for r in rows:
            print(
                f"{r['name']:<18}{r['depth']:>6}{r['shortcut']:>9}{r['flavour']:>9}"
                f"{r['params_total']:>13,}{r['params_trainable']:>13,}{r['macs'] / 1e9:>9.3f}"
            )
    return 0


def _cmd_data(args) -> int:
    from . import config

    raw = {
        "name": "data",
        "data": {
            "source": config.guess_source(args.source) if args.source != "synthetic" else "synthetic",
            "image_size": args.image_size,
        },
    }
    if args.source != "synthetic":
        raw["data"]["path"] = args.source
    cfg = config.apply_overrides(raw, args.set, "data")
    cfg = config.from_dict(cfg, "command line")
    config.check_data_path(cfg)
    if args.data_command == "preview":
        inputs.output_path(args.out, "--out")
    quiet.load_tensorflow()
    from . import data

    arrays = data.load(cfg.data)
    if args.data_command == "preview":
        data.preview(arrays, args.out)
        print(f"wrote {args.out}")
        return 0
    info = data.describe(arrays)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"source {info['source']}  image size {info['image_size']}  hash {info['hash']}")
    note = data.files_note(arrays)
    if note:
        print(note)
    print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    for split, counts in info["counts"].items():
        print(f"{split:<6} {sum(counts.values()):>7} images: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    if info["ignored"]:
        print(f"ignored {info['ignored']} non-image file(s)")
    summary = data.skipped_summary(arrays)
    if summary:
        print(summary)
    return 0


def _cmd_gpu_check(args) -> int:
    from .gpu_check import cli_gpu_check

    return cli_gpu_check(args)


def _cmd_perf(args) -> int:
    from .perf import cli_perf

    return cli_perf(args)


def build_parser() -> argparse.ArgumentParser:
    p = inputs.ArgumentParser(prog="resnet-bench", description="Do shortcut connections let deeper nets train better?")
    p.add_argument("--no-onednn", action="store_true", help="turn TensorFlow's oneDNN CPU kernels off")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train every pending (variant, seed) of an experiment and track it in MLflow")
    r.add_argument("experiment", help="experiment file, e.g. experiments/shortcut_ablation.toml")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config field")
    r.add_argument("--data", help="data path (photo folder, CIFAR-10 folder or archive, .npz/.h5 file)")
    r.add_argument("--seeds", type=inputs.seed_list, help="comma-separated seeds (default: the file's)")
    r.add_argument("--models", type=inputs.name_list, action="append", help="variant names, e.g. resnet56,plain56")
    r.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    r.add_argument("--force", action="store_true", help="train again even runs that already finished")
    r.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")
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
    r.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="write reports/<experiment>.md from the tracked runs")
    rep.add_argument("experiment", help="experiment name or file")
    rep.add_argument("--tracking-uri")
    rep.add_argument("--out", help="Markdown file (default reports/<experiment>.md)")
    rep.add_argument("--seeds", type=inputs.seed_list, help="only these seeds")
    rep.add_argument("--config-hash", help="runs of this configuration (default: the newest run's)")
    rep.add_argument("--csv", help="also write the tidy per-epoch frame as CSV")
    rep.add_argument("--parquet", help="also write the tidy per-epoch frame as Parquet")
    rep.set_defaults(func=_cmd_report)

    m = sub.add_parser("models", help="list architectures with parameter counts and MACs")
    m.add_argument("--model", action="append", help="e.g. resnet50, plain56 (repeatable)")
    m.add_argument("--image-size", type=inputs.positive_int, default=224)
    m.add_argument("--classes", type=inputs.positive_int, default=1000)
    m.add_argument("--shortcut", choices=SHORTCUTS)
    m.add_argument("--flavour", choices=FLAVOURS)
    m.add_argument("--family", choices=FAMILIES)
    m.add_argument("--binary", action="store_true", help="one sigmoid unit for 2 classes")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_models)

    d = sub.add_parser("data", help="describe or preview a data source")
    dsub = d.add_subparsers(dest="data_command", required=True)
    for name in ("describe", "preview"):
        x = dsub.add_parser(name)
        x.add_argument("source", help="synthetic, a photo folder, a CIFAR-10 folder/archive or an .npz/.h5 file")
        x.add_argument("--image-size", type=inputs.positive_int, default=32)
        x.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE")
        if name == "describe":
            x.add_argument("--json", action="store_true")
        else:
            x.add_argument("--out", required=True, help="PNG file")
    d.set_defaults(func=_cmd_data)

    pf = sub.add_parser("perf", help="training/inference throughput against keras.applications and matmul peak")
    pf.add_argument("--model", action="append", help="e.g. resnet50 (repeatable; default resnet50)")
    pf.add_argument("--image-size", type=inputs.positive_int, default=64)
    pf.add_argument("--batch-size", type=inputs.positive_int, default=32)
    pf.add_argument("--classes", type=inputs.positive_int, default=10)
    pf.add_argument("--baseline", choices=("keras", "none"), default="keras")
    pf.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    pf.add_argument("--mixed-precision", choices=("off", "float16", "bfloat16"), default="off")
    pf.add_argument("--windows", type=inputs.positive_int, default=5, help="timed windows")
    pf.add_argument("--steps", type=inputs.positive_int, default=10, help="steps per timed window")
    pf.add_argument("--pipeline", action="store_true", help="also measure the input pipeline and logging overhead")
    pf.add_argument("--data", help="photo folder for the pipeline measurement")
    pf.add_argument("--sweep", metavar="EXPERIMENT", help="also time a whole sweep of this experiment file")
    pf.add_argument("--jobs", type=inputs.jobs, default="auto", help="--jobs of that sweep")
    pf.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for that sweep")
    pf.add_argument("--json", action="store_true")
    pf.add_argument("--out", help="write a Markdown report (reports/perf.md)")
    pf.set_defaults(func=_cmd_perf)

    g = sub.add_parser("gpu-check", help="prove the GPU path: correctness, throughput, the paper's recipe")
    g.add_argument("--out", default="reports/gpu.md", help="Markdown report (a JSON is written beside it)")
    g.add_argument("--cpu-sizes", action="store_true", help="toy sizes even on a GPU (a quick smoke run)")
    g.set_defaults(func=_cmd_gpu_check)
    return p


BUG_HINT = (
    "resnet-bench: the error above is a bug, not a problem with your input; rerun with -v for TensorFlow's "
    "and MLflow's logs too, and report it with the traceback and the command (README, 'Reporting a bug')"
)


def _check_environment(args) -> None:
    """Inputs that come from the environment or name an output, checked before any work.

    (``$RESNET_BENCH_CACHE`` is checked where the cache is used, ``data.sources.cache_dir``.)
    """
    inputs.env_float("RESNET_BENCH_STALE_SECONDS", 0.0)
    inputs.env_float("RESNET_BENCH_TRACKING_PATIENCE", 0.0)
    if args.command in ("perf", "gpu-check") and args.out:
        inputs.output_path(args.out, "--out")


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """The command line; a SIGTERM anywhere in it is the one 'terminated' line and exit 143."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        _setup_env(argv)
        args = build_parser().parse_args(argv)
        quiet.set_verbose(args.verbose)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        for noisy in ("mlflow", "alembic", "absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
        _check_environment(args)
        if args.command in TENSORFLOW_COMMANDS:
            quiet.load_tensorflow()
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the current run is marked KILLED; run the same command again to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: the current run is marked KILLED; run again to resume", file=sys.stderr)
        return 143
    except Exception:  # a bug: keep the whole traceback, then say what to do with it
        traceback.print_exc()
        print(BUG_HINT, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
