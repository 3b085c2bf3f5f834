"""Where a sweep's runs execute: one pool per ``--executor``, built here and nowhere else.

- :class:`~resnet_bench.pools.inprocess.InProcess`: one run at a time in this process
  (``--jobs 1``), the simplest pool and the reference the others are checked against;
- :class:`~resnet_bench.pools.local.LocalPool`: local worker processes (``--jobs N``);
- :class:`~resnet_bench.pools.ray.RayPool`: Ray tasks on a cluster (``--executor ray``).

Each is built from the sweep's :class:`~resnet_bench.scheduler.SweepContext` and driven by
:func:`resnet_bench.scheduler.schedule`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UserError
from ..scheduler import Pool, SweepContext

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class PoolOptions:
    """How a sweep executes, as ``resnet-bench run`` takes it: ``--executor``, ``--jobs``
    (local), ``--address``, ``--gpus-per-run`` and ``--cpus-per-run`` (Ray). An option of the
    other executor is an error, not ignored."""

    executor: str = "local"
    jobs: int | str = "auto"  # local: a positive int, or auto (cores / train.intra_op_threads)
    address: str | None = None  # ray: the cluster (None: start one here, or $RAY_ADDRESS)
    gpus_per_run: float = 0
    cpus_per_run: float = 1

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.jobs != "auto" and (not isinstance(self.jobs, int) or self.jobs < 1):
            raise UserError(f"--jobs must be a positive integer or auto, got {self.jobs}")
        ray_only = {"--address": self.address is not None, "--gpus-per-run": self.gpus_per_run != 0,
                    "--cpus-per-run": self.cpus_per_run != 1}  # fmt: skip
        given = [flag for flag, set_ in ray_only.items() if set_]
        if self.executor == "local" and given:
            raise UserError(f"{given[0]} applies to --executor ray only")
        if self.executor == "ray" and self.jobs != "auto":
            raise UserError("--jobs applies to --executor local; Ray places runs by --cpus-per-run / --gpus-per-run")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def auto_jobs(intra_op_threads: int, runs: int) -> int:
    """``--jobs auto``: the cores divided by the threads one run uses, at most one per run.

    A run with ``train.intra_op_threads = 0`` uses TensorFlow's default, a thread per core, so
    it gets the machine to itself.
    """
    cores = available_cores()
    per_run = intra_op_threads if intra_op_threads > 0 else cores
    return max(1, min(cores // per_run, runs))


def resolve_jobs(jobs, intra_op_threads: int, runs: int = 1 << 30) -> int:
    """``--jobs``: a number as given, ``auto`` as :func:`auto_jobs` sizes it."""
    return auto_jobs(intra_op_threads, runs) if jobs == "auto" else jobs


def make_pool(ctx: SweepContext, options: PoolOptions, runs: int, store) -> Pool:
    """The pool for ``options``, for a sweep of ``runs`` pending runs on ``store`` (the
    sweep's :class:`~resnet_bench.tracking.Store`: local workers' dead runs are settled there)."""
    if options.executor == "ray":
        from .ray import RayPool

        return RayPool(
            ctx, address=options.address, gpus_per_run=options.gpus_per_run, cpus_per_run=options.cpus_per_run
        )
    jobs = resolve_jobs(options.jobs, ctx.cfg.train.intra_op_threads, runs)
    if jobs == 1:
        from .inprocess import InProcess

        return InProcess(ctx)
    from .local import LocalPool

    return LocalPool(ctx, jobs, store)
