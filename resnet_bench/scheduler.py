"""The sweep's one loop, and the contracts it shares with the pools and the runs.

A sweep hands its planned runs to a *pool* (:mod:`resnet_bench.pools`: in this process, in
local worker processes, or as Ray tasks), which runs a :class:`Task` for each, somewhere.
:func:`schedule` is the loop every pool shares: hand pending runs to free slots, collect
statuses, print progress with an ETA. Everything a run needs besides its (variant, seed)
travels as one :class:`SweepContext`. Runs claim themselves in the tracking store (see
:mod:`resnet_bench.tracking`), so pools need no locks, and two sweeps on one store never
train the same run. The task is part of the context, not an import, so this module and the
pools need neither TensorFlow nor MLflow, and their tests drive every pool with fake runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import signals
from .spec import ModelSpec


class Task(Protocol):
    """What a pool runs. An instance of a module-level class, so that a worker process or a
    Ray task can rebuild it from its pickle (:class:`resnet_bench.runner.Training` in a sweep)."""

    def prepare(self, cfg: Any) -> None:
        """Called once in each process that runs tasks, before the first (a sweep loads
        TensorFlow and sizes its thread pools there)."""

    def run(self, ctx: SweepContext, spec: ModelSpec, seed: int, *, label: str) -> str:
        """Claim, run and track one (variant, seed); its final status (schema.FINISHED ...).
        ``label`` is the run's progress tag (``[3/24]``) for the lines it prints through
        ``ctx.echo``."""


@dataclass(frozen=True)
class SweepContext:
    """What every run of one sweep shares, built once by the driver and passed whole: to the
    pool, and from it to each run, in this process, a worker process or a Ray task.

    Picklable as a whole; a pool that runs tasks elsewhere replaces ``echo`` there with what
    carries a line back (a worker's pipe, a Ray task's stdout)."""

    cfg: Any  # the resnet_bench.config.ExperimentConfig
    uri: str  # the tracking store's address
    task: Task
    force: bool = False  # train runs again that already finished
    invocation: str = ""  # this sweep's id: a retried Ray task recognises its own earlier attempt
    echo: Callable[[str], None] = print


class Pool(Protocol):
    def start_next(self, pending: list, label) -> object | None:
        """Start one of ``pending`` if a slot is free; return it (or None when full).

        ``label(run)`` gives the run's progress tag (``[3/24]``) for the lines it prints."""

    def wait(self) -> list[tuple[object, str]]:
        """Block until at least one run ends (or a short timeout); return (run, status) pairs."""

    def busy(self) -> bool:
        """Whether any started run has not been returned by :meth:`wait` yet."""

    def close(self, interrupted: bool = False) -> None:
        """Release workers; on an interrupt, end every run in flight as KILLED first."""


class Progress:
    """Runs done out of all, and an ETA from the cost of what is left.

    A run's cost is its depth (MACs per image, and so time, grow about linearly with depth
    within a family), so a deep net counts for more than a shallow one; the rate is the wall
    time so far per unit of finished cost, which holds for one worker or many once the first
    runs are done.
    """

    def __init__(self, todo: list, echo, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.total = len(todo)
        self.cost = {id(p): float(p.spec.depth) for p in todo}
        self.left = sum(self.cost.values())
        self.done_cost = 0.0
        self.done = 0
        self.start = clock()
        self.echo = echo
        self.started = 0

    def label(self, p) -> str:
        self.started += 1
        return f"[{self.started}/{self.total}]"

    def finished(self, p, status: str) -> None:
        self.done += 1
        c = self.cost[id(p)]
        self.done_cost += c
        self.left -= c
        elapsed = self.clock() - self.start
        eta = f", ETA {elapsed / self.done_cost * self.left / 60:.1f} min" if self.done_cost and self.left else ""
        self.echo(
            f"[sweep {self.done}/{self.total} done] {p.spec.name} seed {p.seed}: {status} "
            f"({elapsed / 60:.1f} min elapsed{eta})"
        )


def schedule(pool: Pool, todo: list, echo, progress: Progress | None = None) -> list[str]:
    """Run every planned run of ``todo`` on ``pool``; returns their statuses in finishing order.

    An interrupt (SIGINT or SIGTERM) closes the pool, which ends the runs in flight as KILLED,
    and propagates.
    """
    progress = progress or Progress(todo, echo)
    pending = list(todo)
    statuses: list[str] = []
    interrupted = True
    with signals.raising():
        try:
            while pending or pool.busy():
                while pending:
                    started = pool.start_next(pending, progress.label)
                    if started is None:
                        break
                    pending.remove(started)
                for p, status in pool.wait():
                    statuses.append(status)
                    progress.finished(p, status)
            interrupted = False
        finally:
            pool.close(interrupted)
    return statuses
