"""``--executor ray``: each pending (variant, seed) becomes a Ray task.

Ray schedules and retries; MLflow (a shared tracking server for several machines) holds the
results. Tasks claim runs exactly as local sweeps do (the lease of
:mod:`resnet_bench.lease`), so two sweeps, or a sweep and a retry, never train the same run at
once. When a worker dies, Ray retries its task (``max_retries``); the retry finds the earlier
attempt RUNNING under the same invocation with a dead owner and marks it KILLED before
training again.
"""

from __future__ import annotations

import dataclasses

from .. import inputs, quiet
from ..errors import UserError
from ..scheduler import SweepContext
from ..schema import FAILED

MAX_RETRIES = 2


def _task(ctx: SweepContext, spec, seed: int, label: str) -> str:
    """One run on a Ray worker, its lines on the worker's stdout (Ray forwards them)."""
    quiet.tensorflow_env()
    ctx.task.prepare(ctx.cfg)
    return ctx.task.run(ctx, spec, seed, label=label)


class RayPool:
    """Every pending run is submitted at once; Ray queues them on the cluster's resources."""

    def __init__(self, ctx: SweepContext, *, address=None, gpus_per_run: float = 0, cpus_per_run: float = 1):
        ray = inputs.require("ray", "--executor ray", "ray")
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                ray.init(address=address, log_to_driver=True, include_dashboard=False)
            except ConnectionError as e:  # the user's --address (or $RAY_ADDRESS) leads nowhere
                reason = str(e).splitlines()[0]
                raise UserError(f"--address {address}: no Ray cluster answers there ({reason})") from None
        self.remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=cpus_per_run, num_gpus=gpus_per_run)(_task)
        self.echo = ctx.echo
        self._shipped = dataclasses.replace(ctx, echo=print)  # a task's lines go to its worker's stdout
        self.refs: dict = {}
        ctx.echo(f"Ray cluster with {ray.cluster_resources().get('CPU', 0):.0f} CPUs")

    def start_next(self, pending, label):
        p = pending[0]
        ref = self.remote.remote(self._shipped, p.spec, p.seed, f"[ray] {label(p)}")
        self.refs[ref] = p
        return p

    def busy(self) -> bool:
        return bool(self.refs)

    def wait(self):
        done, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=1.0)
        out = []
        for ref in done:
            p = self.refs.pop(ref)
            try:
                status = self.ray.get(ref)
            except Exception as e:  # retries exhausted
                status = FAILED
                self.echo(f"{p.spec.name} seed {p.seed}: task failed after retries ({type(e).__name__})")
            out.append((p, status))
        return out

    def close(self, interrupted: bool = False) -> None:
        if interrupted:
            for ref in self.refs:
                self.ray.cancel(ref)
        if self.started_here:
            self.ray.shutdown()
