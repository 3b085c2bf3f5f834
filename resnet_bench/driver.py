"""Experiment config -> tracked training runs: planning, resume, failure handling, progress.

One MLflow run per (variant, seed). The run's identity is ``ExperimentConfig.run_key``: a
hash of everything that shapes its numbers plus the seed, so a re-run skips what FINISHED,
re-trains what FAILED or was KILLED, and ``--force`` trains again (the report then takes the
latest finished run of each variant and seed, so nothing is double-counted and nothing is
deleted).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from . import inputs, runner, scheduler
from .errors import UserError
from .pools import PoolOptions, make_pool
from .scheduler import SweepContext
from .schema import ENDED_BADLY, FAILED, FINISHED, KILLED, SKIPPED
from .spec import ModelSpec
from .tracking.store import Store

log = logging.getLogger(__name__)

# What the sweep of this process is doing, for the one line an interrupt leaves
# (commands.run.stopped): "planning", "data" (reading or decoding the data set) or "runs".
STAGE = "planning"


def set_stage(name: str) -> None:
    global STAGE
    STAGE = name


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
    seeds = inputs.check_seeds(seeds, "--seeds") if seeds else list(cfg.grid.seeds)
    return [(spec, seed) for seed in seeds for spec in variants]


def plan(cfg, store: Store, pairs, force=False) -> list[PlannedRun]:
    exp_id = store.experiment_id(cfg.name, create=False)
    out = []
    for spec, seed in pairs:
        key = cfg.run_key(spec, seed)
        out.append(PlannedRun(spec, seed, key, store.plan_state(exp_id, key, force)))
    return out


def run_sweep(
    cfg,
    uri: str | None = None,
    *,
    seeds=None,
    models=None,
    force=False,
    dry_run=False,
    pools: PoolOptions = PoolOptions(),
    analysis=None,
    echo=print,
) -> int:
    """Run every pending (variant, seed) of ``cfg`` on the pool ``pools`` describes; returns
    the process exit code: 0 when all runs finished (or were already done), 1 when any failed
    or was killed. Interrupts propagate after the runs in flight are marked KILLED.
    ``analysis``: called with each run that finishes, where it trained (:class:`runner.Training`)."""
    set_stage("planning")
    store = Store(uri)  # the CLI has checked it (tracking.uris.tracking_uri); Store translates what MLflow refuses
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
    set_stage("data")
    _load_data(cfg, echo)  # bad data fails here, before any run exists
    set_stage("runs")
    ctx = SweepContext(cfg, store.uri, runner.Training(analysis), force, uuid.uuid4().hex[:12], echo)
    statuses = scheduler.schedule(make_pool(ctx, pools, len(todo), store), todo, echo)
    echo(
        f"experiment {cfg.name}: {statuses.count(FINISHED)} finished, {statuses.count(FAILED)} failed, "
        f"{statuses.count(KILLED)} killed, {statuses.count(SKIPPED)} skipped"
    )
    return 1 if any(s in ENDED_BADLY for s in statuses) else 0


def _load_data(cfg, echo) -> None:
    """Read the data set once here, so a bad one is told before any run exists, and say what
    was skipped or read. No TensorFlow in this process yet: the pool's task loads it where runs
    train (here for --jobs 1, only in the workers otherwise) and sizes its thread pools first."""
    from . import data as data_mod

    arrays = data_mod.load(cfg.data)
    summary = data_mod.skipped_summary(arrays)
    if summary:
        log.warning(summary)
    note = data_mod.files_note(arrays)
    if note:
        echo(note)
