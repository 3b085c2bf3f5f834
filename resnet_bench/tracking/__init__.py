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

_EXPORTS = {"PATIENCE_SECONDS": "patience", "patiently": "patience", "TrackedRun": "run",
            "CLAIM_WAIT_SECONDS": "store", "HEARTBEAT_SECONDS": "store", "STALE_SECONDS": "store", "Store": "store",
            "observer": "store", "search_runs": "store"}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The store (and with it MLflow) loads on first use, not with the package: the command
    line checks a tracking URI (:mod:`.uris`) before it loads MLflow, and answers a mistake
    at once."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
