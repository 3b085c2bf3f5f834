"""``--executor ray``: each pending (variant, seed) becomes a Ray task.

Ray schedules and retries; MLflow (a shared tracking server for several machines) holds the
results. Tasks claim runs exactly as local sweeps do (create, then check for an older live
run with the same key; see :mod:`resnet_bench.tracking`), so two sweeps, or a sweep and a
retry, never train the same run at once. When a worker dies, Ray retries its task
(``max_retries``); the retry finds the earlier attempt RUNNING under the same invocation with
a dead owner and marks it KILLED before training again. The sweep loop itself is
:func:`resnet_bench.scheduler.schedule`, shared with local runs.
"""

from __future__ import annotations

import os

from . import inputs
from .errors import UserError
from .schema import FAILED

MAX_RETRIES = 2


def _task(task, cfg, spec, seed, uri, force, invocation, label):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    task.prepare(cfg)
    return task.run(cfg, spec, seed, uri, force, invocation, label, print)


class RayPool:
    """Every pending run is submitted at once; Ray queues them on the cluster's resources."""

    def __init__(self, cfg, uri, force, invocation, echo, task, address=None, gpus_per_run=0, cpus_per_run=1):
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
        self.task, self.args = task, (cfg, uri, force, invocation)
        self.refs: dict = {}
        self.echo = echo
        echo(f"Ray cluster with {ray.cluster_resources().get('CPU', 0):.0f} CPUs")

    def start_next(self, pending, label):
        p = pending[0]
        cfg, uri, force, invocation = self.args
        ref = self.remote.remote(self.task, cfg, p.spec, p.seed, uri, force, invocation, f"[ray] {label(p)}")
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
