"""Stand-ins for a sweep's task (``scheduler.Task``): importable by spawned workers,
free of TensorFlow and MLflow, so the pools' logic is tested in milliseconds.

What a fake run does is read from its seed: 0-99 finish, 100-199 fail, 200-299 kill their
own worker process outright (as the OOM killer would), 300-399 run until interrupted, 400-499
are stopped by a SIGTERM that surfaces as another exception (as one landing inside TensorFlow
can).
"""

import os
import signal
import time

from resnet_bench.errors import Terminated
from resnet_bench.schema import FAILED, FINISHED


def run(ctx, spec, seed, *, label) -> str:
    ctx.echo(f"{label} {spec.name} seed {seed}: fake run in pid {os.getpid()}")
    if seed >= 400:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:  # what a C extension may turn the interrupt it sees into
            raise SystemError("Objects/listobject.c:338: bad argument to internal function") from None
        return FINISHED
    if seed >= 300:
        while True:  # until SIGINT/SIGTERM raises in this thread
            time.sleep(0.05)
    if seed >= 200:
        os._exit(9)
    return FAILED if seed >= 100 else FINISHED


PREPARED = 0  # times prepare() ran in this process


def prepare(cfg) -> None:
    global PREPARED
    PREPARED += 1


def report_prepared(ctx, spec, seed, *, label) -> str:
    ctx.echo(f"prepared {PREPARED} time(s)")
    return FINISHED


class Fake:
    """Each run as :func:`run` reads its seed; :func:`prepare` once per process."""

    def prepare(self, cfg) -> None:
        prepare(cfg)

    def run(self, ctx, spec, seed, *, label) -> str:
        return run(ctx, spec, seed, label=label)


class ReportsPrepared(Fake):
    """Each run says how many times its process was prepared."""

    def run(self, ctx, spec, seed, *, label) -> str:
        return report_prepared(ctx, spec, seed, label=label)


def sweep_then_wait(jobs: int) -> None:
    """A sweep of runs that never end on ``jobs`` local workers; prints the workers' pids once
    their runs are handed out, then waits to be killed (``python -m tests.fake_runs``)."""
    import sys
    from types import SimpleNamespace

    from resnet_bench.driver import PlannedRun
    from resnet_bench.pools.local import LocalPool
    from resnet_bench.scheduler import SweepContext
    from resnet_bench.spec import ModelSpec

    cfg = SimpleNamespace(name="fake", train=SimpleNamespace(intra_op_threads=1))
    pool = LocalPool(SweepContext(cfg, "uri", Fake(), echo=lambda text: None), jobs, store=None)  # no run dies
    pending = [PlannedRun(ModelSpec(20, family="cifar"), 300 + i, f"k{i}", "pending") for i in range(jobs)]
    while pending:
        pending.remove(pool.start_next(pending, lambda p: ""))
    print(" ".join(str(w.process.pid) for w in pool.workers), flush=True)
    sys.stdin.read()  # until killed


if __name__ == "__main__":
    sweep_then_wait(2)
