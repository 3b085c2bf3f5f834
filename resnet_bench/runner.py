"""One (variant, seed) from claim to final status: the unit every executor runs.

Every pool (:mod:`resnet_bench.pools`: this process, local worker processes, Ray tasks) calls
:func:`execute_run` through :class:`Training`, so a run is claimed, tracked, and ended
FINISHED / FAILED / KILLED the same way wherever it trains.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import schema
from .errors import StoreUnavailable
from .scheduler import SweepContext
from .schema import FAILED, FINISHED, SKIPPED
from .spec import ModelSpec
from .tracking.store import Store


def run_params(cfg, spec: ModelSpec, seed: int, data_info: dict) -> dict:
    """Every param logged with a run: the resolved config, the variant, the data set."""
    params = config_mod.flatten(cfg)
    params.update(
        {
            "model": spec.name,
            "seed": seed,
            "depth": spec.depth,
            "shortcut": spec.shortcut,
            "flavour": spec.flavour,
            "zero_init": spec.zero_init,
            "family": spec.family,
            "data_source": data_info["source"],
            "data_hash": data_info["hash"],
            "data_classes": len(data_info["classes"]),
            "data_train_count": sum(data_info["counts"]["train"].values()),
            "data_test_count": sum(data_info["counts"]["test"].values()),
            "data_counts": json.dumps(data_info["counts"], sort_keys=True),
            "data_skipped": data_info["skipped"],
            "data_ignored": data_info["ignored"],
            "data_files": ",".join(data_info.get("files", [])),
        }
    )
    missing = [k for k in schema.RUN_PARAMS if k not in params and k not in schema.MODEL_PARAMS]
    assert not missing, f"run_params misses schema params {missing}"  # a bug here, not the user's
    return params


def _history_csv(history: list[dict]) -> str:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def run_tags(cfg, spec: ModelSpec, seed: int, invocation: str, data_info: dict) -> dict:
    from . import provenance

    return {
        "bench_experiment": cfg.name,
        "config_hash": cfg.config_hash(),
        "model": spec.name,
        "seed": seed,
        "invocation": invocation,
        "run_name": f"{spec.name}-seed{seed}",
        "description": cfg.description,
        "data_skipped": data_info["skipped"],
        **provenance.tags(),
    }


def log_dataset(run, cfg, data_info: dict, arrays) -> None:
    """The data set as an MLflow dataset input: digest = the project's content hash."""
    d = cfg.data
    generated = d.source == "synthetic"
    source = (
        {
            "generator": "resnet_bench.data.synthetic",
            "seed": d.generator_seed,
            "classes": d.classes,
            "noise": d.noise,
            "clutter": d.clutter,
            "image_size": d.image_size,
        }  # fmt: skip
        if generated
        else {"uri": str(Path(d.path).resolve())}
    )
    if len(arrays.files) > 1:  # a train/test pair of array files: both are the data set
        source = {"uri": str(Path(arrays.files[0]).resolve()), "test_uri": str(Path(arrays.files[1]).resolve())}
    shape = [-1, *arrays.x_train.shape[1:]]
    spec = lambda dtype, shape: json.dumps([{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape}}])  # noqa: E731
    schema = {"mlflow_tensorspec": {"features": spec("uint8", shape), "targets": spec("int64", [-1])}}
    profile = {"classes": data_info["classes"], "image_size": data_info["image_size"],
               "train": sum(data_info["counts"]["train"].values()), "test": sum(data_info["counts"]["test"].values()),
               "counts": data_info["counts"], "skipped_files": data_info["skipped"]}  # fmt: skip
    name = f"{d.source}-{d.image_size}px" if generated else Path(d.path).name
    if len(arrays.files) > 1:
        name = " + ".join(Path(f).name for f in arrays.files)
    run.log_dataset(name, data_info["hash"], "code" if generated else "local", source, schema, profile)


@dataclass(frozen=True)
class Training:
    """The task of a sweep (:class:`resnet_bench.scheduler.Task`): each run trained and
    tracked by :func:`execute_run`, in a process prepared by
    :func:`resnet_bench.device.prepare_process`.

    ``analysis`` (``run --analyse``: a :class:`resnet_bench.analysis.AfterTraining`): each run
    that finishes is then measured in the same process, from the net in memory, while the
    other workers train: no process of its own to start, no stored net to read back."""

    analysis: Any = None

    def prepare(self, cfg) -> None:
        from .device import prepare_process

        prepare_process(cfg)

    def run(self, ctx: SweepContext, spec: ModelSpec, seed: int, *, label: str = "") -> str:
        return execute_run(ctx, spec, seed, label=label, analysis=self.analysis)


def execute_run(ctx: SweepContext, spec: ModelSpec, seed: int, *, label: str = "", analysis=None) -> str:
    """Claim, train and track one (variant, seed) of the sweep ``ctx``; returns its final status.

    ``SKIPPED`` when it is finished or another process holds it; otherwise FINISHED, FAILED
    or KILLED as :meth:`~resnet_bench.tracking.Store.tracked_run` decides. Epoch metrics are
    logged as they come (by a writer thread that waits out a store's outage), so nothing done
    is lost; a store away for longer than its patience makes the run FAILED, told in one line.
    A FINISHED run is then measured by ``analysis``, if given; that cannot change its status
    (:class:`resnet_bench.analysis.AfterTraining`)."""
    from . import data as data_mod
    from .train import train_run
    from .trained import log_net

    cfg, echo = ctx.cfg, ctx.echo
    store = Store(ctx.uri)
    arrays = data_mod.load(cfg.data)
    info = data_mod.describe(arrays)
    name = f"{label} {spec.name} seed {seed}"
    key, tags = cfg.run_key(spec, seed), run_tags(cfg, spec, seed, ctx.invocation, info)
    try:
        exp_id = store.experiment_id(cfg.name)
        with store.tracked_run(exp_id, key, tags, ctx.force) as run:
            if run is None:
                echo(f"{name}: finished or taken by another process, skipped")
                return SKIPPED
            history: list[dict] = []
            run.finishers += [
                lambda: history and run.log_text(_history_csv(history), "history.csv"),
                lambda: run.log_text(config_mod.to_toml(cfg), "config.toml"),
                lambda: echo(
                    f"{name}: {run.status} in {run.seconds:.0f}s" + (f" ({run.reason})" if run.reason else "")
                ),
            ]
            run.log_params(run_params(cfg, spec, seed, info))
            log_dataset(run, cfg, info, arrays)
            if info["skipped_files"]:
                run.log_text("\n".join(info["skipped_files"]) + "\n", "skipped_files.txt")

            def on_epoch(row):
                history.append(row)
                run.log_epoch(row)
                echo(f"{name} epoch {row['epoch']}/{cfg.train.epochs}: " + _epoch_summary(row))

            result = train_run(cfg, spec, seed, arrays, on_epoch=on_epoch, on_model=lambda _, i: run.log_params(i))
            if result.responses:  # measured after the last epoch
                run.log_layers(result.responses)
            run.log_text(result.summary, "model_summary.txt")
            mean, std = result.normalisation
            store.retry(log_net, store.uri, exp_id, run.run_id, result.model, mean=mean, std=std,
                        classes=arrays.classes, step=len(result.history))  # fmt: skip
            if cfg.train.save_weights:
                run.log_weights(result.model)
        if analysis is not None and run.status == FINISHED:
            analysis(ctx, spec, seed, run.run_id, result.model, result.normalisation, name)
        return run.status
    except StoreUnavailable as e:  # past the patience; what was written stays, a resume retrains
        echo(f"{name}: FAILED: {e}")
        return FAILED


def _epoch_summary(row: dict) -> str:
    return (
        f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} val_acc {row['val_accuracy']:.3f} "
        f"({row['epoch_seconds']:.1f}s, {row['images_per_second']:.0f} img/s)"
    )
