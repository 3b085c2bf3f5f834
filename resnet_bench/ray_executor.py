"""``--executor ray``: each pending (variant, seed) becomes a Ray task.

Ray schedules and retries; MLflow (a shared tracking server for several machines) holds the
results. Tasks claim runs exactly as local sweeps do (create, then check for an older live
run with the same key; see :mod:`resnet_bench.tracking`), so two sweeps, or a sweep and a
retry, never train the same run at once. When a worker dies, Ray retries its task
(``max_retries``); the retry finds the earlier attempt RUNNING under the same invocation with
a dead owner and marks it KILLED before training again.
"""

from __future__ import annotations

import os
import time

MAX_RETRIES = 2


def _task(cfg, spec, seed, uri, force, invocation, label):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .driver import execute_run
    from .train import configure_threads

    configure_threads(cfg.train.intra_op_threads)
    return execute_run(cfg, spec, seed, uri, force, invocation, label)


def run_with_ray(cfg, uri, todo, force, invocation, echo, address=None, gpus_per_run=0, cpus_per_run=1) -> list[str]:
    try:
        import ray
    except ImportError:
        from .errors import UserError

        raise UserError("--executor ray needs Ray: pip install 'resnet_bench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=True, include_dashboard=False)
    remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=cpus_per_run, num_gpus=gpus_per_run)(_task)
    refs = {}
    for i, p in enumerate(todo, start=1):
        ref = remote.remote(cfg, p.spec, p.seed, uri, force, invocation, f"[ray {i}/{len(todo)}]")
        refs[ref] = p
    echo(f"submitted {len(refs)} runs to Ray ({ray.cluster_resources().get('CPU', 0):.0f} CPUs in the cluster)")
    statuses, pending, start = [], list(refs), time.time()
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        p = refs[done[0]]
        try:
            status = ray.get(done[0])
        except Exception as e:  # retries exhausted
            status = "FAILED"
            echo(f"{p.spec.name} seed {p.seed}: task failed after retries ({type(e).__name__})")
        statuses.append(status)
        n = len(statuses)
        eta = (time.time() - start) / n * (len(refs) - n) / 60
        echo(f"[sweep {n}/{len(refs)}] {p.spec.name} seed {p.seed}: {status} (ETA {eta:.1f} min)")
    if started_here:
        ray.shutdown()
    return statuses
