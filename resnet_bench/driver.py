"""Experiment config -> tracked training runs: planning, resume, failure handling, progress.

One MLflow run per (variant, seed). The run's identity is ``ExperimentConfig.run_key``: a
hash of everything that shapes its numbers plus the seed, so a re-run skips what FINISHED,
re-trains what FAILED or was KILLED, and ``--force`` trains again (the report then takes the
latest finished run of each variant and seed, so nothing is double-counted and nothing is
deleted).
"""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import config as config_mod
from .errors import DivergedError, UserError
from .models import ModelSpec
from .tracking import Store, check_reachable


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the current run ends as KILLED (exit 143)."""


def _on_sigterm(signum, frame):
    raise Terminated()


@dataclass
class PlannedRun:
    spec: ModelSpec
    seed: int
    key: str
    state: str  # "done" | "pending" | "running"


def select(cfg, seeds=None, models=None) -> list[tuple[ModelSpec, int]]:
    """The (variant, seed) pairs to run, seed-major so each repeat's variants run together."""
    variants = cfg.variants()
    if models:
        known = {s.name for s in variants}
        unknown = [m for m in models if m not in known]
        if unknown:
            raise UserError(
                f"unknown model {unknown[0]!r} for {cfg.name}; this experiment has: {', '.join(sorted(known))}"
            )
        variants = [s for s in variants if s.name in models]
    seeds = list(seeds) if seeds else list(cfg.grid.seeds)
    if any(s < 0 for s in seeds):
        raise UserError(f"--seeds must be non-negative integers, got {seeds}")
    return [(spec, seed) for seed in seeds for spec in variants]


def plan(cfg, store: Store, pairs, force=False) -> list[PlannedRun]:
    exp_id = store.experiment_id(cfg.name, create=False)
    out = []
    for spec, seed in pairs:
        key = cfg.run_key(spec, seed)
        runs = store.runs_with_key(exp_id, key) if exp_id else []
        statuses = {r.info.status for r in runs if r.info.status != "RUNNING" or store.owner_alive(r)}
        state = "done" if "FINISHED" in statuses and not force else "running" if "RUNNING" in statuses else "pending"
        out.append(PlannedRun(spec, seed, key, state))
    return out


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
            "family": spec.family,
            "data_source": data_info["source"],
            "data_hash": data_info["hash"],
            "data_classes": len(data_info["classes"]),
            "data_train_count": sum(data_info["counts"]["train"].values()),
            "data_test_count": sum(data_info["counts"]["test"].values()),
            "data_counts": json.dumps(data_info["counts"], sort_keys=True),
            "data_skipped": data_info["skipped"],
            "data_ignored": data_info["ignored"],
        }
    )
    return params


def _history_csv(history: list[dict]) -> str:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def execute_run(
    cfg,
    spec: ModelSpec,
    seed: int,
    uri: str,
    force: bool = False,
    invocation: str = "",
    label: str = "",
    echo=print,
) -> str:
    """Claim, train and track one (variant, seed); returns its final status.

    ``SKIPPED`` when it is finished or another process holds it. A diverging run or any
    exception ends as FAILED (the sweep goes on); an interrupt ends it as KILLED and
    propagates. Epoch metrics are logged as they come, so nothing done is lost.
    """
    from . import data as data_mod
    from . import provenance
    from .train import train_run

    store = Store(uri)
    exp_id = store.experiment_id(cfg.name)
    arrays = data_mod.load(cfg.data)
    data_info = data_mod.describe(arrays)
    tags = {
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
    run_id = store.claim(exp_id, cfg.run_key(spec, seed), tags, force=force)
    if run_id is None:
        echo(f"{label} {spec.name} seed {seed}: finished or taken by another process, skipped")
        return "SKIPPED"
    store.log_params(run_id, run_params(cfg, spec, seed, data_info))
    if data_info["skipped_files"]:
        store.call("log_text", run_id, "\n".join(data_info["skipped_files"]) + "\n", "skipped_files.txt")
    history: list[dict] = []
    status, reason = "FAILED", None
    t0 = time.time()
    beating = threading.Event()
    threading.Thread(target=store.heartbeat, args=(run_id, beating), daemon=True).start()

    def on_model(model, info):
        store.log_params(run_id, info)

    def on_epoch(row):
        history.append(row)
        store.log_epoch(run_id, row)
        echo(
            f"{label} {spec.name} seed {seed} epoch {row['epoch']}/{cfg.train.epochs}: "
            f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} "
            f"val_acc {row['val_accuracy']:.3f} ({row['epoch_seconds']:.1f}s, "
            f"{row['images_per_second']:.0f} img/s)"
        )

    try:
        result = train_run(cfg, spec, seed, arrays, on_epoch=on_epoch, on_model=on_model)
        store.call("log_text", run_id, result.summary, "model_summary.txt")
        if cfg.train.save_weights:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.weights.h5"
                result.model.save_weights(path)
                store.call("log_artifact", run_id, str(path))
        status = "FINISHED"
    except DivergedError as e:
        reason = f"diverged: {e}"
    except (KeyboardInterrupt, Terminated):
        status, reason = "KILLED", "interrupted (SIGINT/SIGTERM)"
        raise
    except Exception as e:  # one broken run must not end the sweep
        reason = f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
    finally:
        beating.set()
        if history:
            store.call("log_text", run_id, _history_csv(history), "history.csv")
        store.call("log_text", run_id, config_mod.to_toml(cfg), "config.toml")
        store.end(run_id, status, reason)
        took = time.time() - t0
        echo(f"{label} {spec.name} seed {seed}: {status} in {took:.0f}s" + (f" ({reason})" if reason else ""))
    return status


def run_sweep(
    cfg,
    uri: str | None = None,
    seeds=None,
    models=None,
    force=False,
    dry_run=False,
    executor: str = "local",
    echo=print,
    **executor_options,
) -> int:
    """Run every pending (variant, seed) of ``cfg``; returns the process exit code.

    0 when all runs finished (or were already done), 1 when any failed. Interrupts propagate
    after the current run is marked KILLED.
    """
    store = Store(uri)
    check_reachable(store.uri)
    planned = plan(cfg, store, select(cfg, seeds, models), force)
    todo = [p for p in planned if p.state != "done"]
    echo(
        f"experiment {cfg.name}: {len(planned)} runs planned, {len(planned) - len(todo)} already finished, "
        f"store {store.uri}"
    )
    if dry_run:
        for p in planned:
            echo(f"  {p.spec.name:<20} seed {p.seed:<4} {p.state:<8} key {p.key}")
        return 0
    if not todo:
        return 0
    from . import data as data_mod
    from .train import configure_threads

    configure_threads(cfg.train.intra_op_threads)  # before TensorFlow runs its first op
    data_mod.load(cfg.data)  # bad data paths fail here, before any run is created
    invocation = uuid.uuid4().hex[:12]
    if executor == "ray":
        from .ray_executor import run_with_ray

        statuses = run_with_ray(cfg, store.uri, todo, force, invocation, echo, **executor_options)
    else:
        statuses = _run_local(cfg, store.uri, todo, force, invocation, echo)
    failed = sum(s == "FAILED" for s in statuses)
    echo(
        f"experiment {cfg.name}: {sum(s == 'FINISHED' for s in statuses)} finished, {failed} failed, "
        f"{sum(s == 'SKIPPED' for s in statuses)} skipped"
    )
    return 1 if failed else 0


def _run_local(cfg, uri, todo: list[PlannedRun], force, invocation, echo) -> list[str]:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # A shell starts background jobs with SIGINT ignored, and Python keeps that; an interrupt
    # must still end the current run as KILLED, so take SIGINT back for the sweep.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    statuses, start = [], time.time()
    cost_done, cost = 0.0, [p.spec.depth for p in todo]  # depth ~ time per run within a family
    try:
        for i, p in enumerate(todo, start=1):
            eta = ""
            if cost_done:
                rate = (time.time() - start) / cost_done
                eta = f", ETA {rate * sum(cost[i - 1 :]) / 60:.1f} min"
            echo(f"[run {i}/{len(todo)}] {p.spec.name} seed {p.seed}{eta}")
            statuses.append(execute_run(cfg, p.spec, p.seed, uri, force, invocation, f"[{i}/{len(todo)}]", echo))
            cost_done += cost[i - 1]
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return statuses
