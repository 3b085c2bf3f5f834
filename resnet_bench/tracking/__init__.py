"""The small MLflow layer: where the store is, how runs are found, claimed and reaped.

Runs are grouped by tags rather than parent runs: a resumed sweep, or one spread over Ray
workers, produces runs in several processes and invocations, and a parent run per invocation
would scatter one experiment's (variant, seed) grid over many parents. Tags
(``bench_experiment``, ``config_hash``, ``run_key``, ``invocation``) let the report select
exactly the runs it needs whatever produced them.

A run is *claimed* by creating it and deciding among the live runs with the same key by
tickets, as in Lamport's bakery: one wins and the others delete their fresh run and move on,
with no lock, over a tracking server too. What the lease decides (who owns a run, when an
owner is dead, what status an ending becomes) is in :mod:`resnet_bench.lease`, as pure
functions; :class:`Store` fetches the records and carries the decisions out. A live owner
refreshes its ``heartbeat`` tag every ``HEARTBEAT_SECONDS``; from another host, a run whose
heartbeat is older than ``STALE_SECONDS`` has a dead owner.
"""

from __future__ import annotations

from .patience import PATIENCE_SECONDS, patiently
from .run import TrackedRun
from .store import CLAIM_WAIT_SECONDS, HEARTBEAT_SECONDS, STALE_SECONDS, Store, observer, search_runs

__all__ = ["CLAIM_WAIT_SECONDS", "HEARTBEAT_SECONDS", "PATIENCE_SECONDS", "STALE_SECONDS", "Store", "TrackedRun",
           "observer", "patiently", "runs_address", "search_runs"]  # fmt: skip


def runs_address(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI address of an experiment's runs in the model-training view.

    MLflow 3 can open an experiment on its GenAI overview instead (a choice it remembers per
    browser); ``workflowType=machine_learning`` always lands on the runs table.
    """
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"
