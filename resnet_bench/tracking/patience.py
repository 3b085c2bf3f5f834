"""Waiting out a tracking store that is away: which errors mean "away", and for how long."""

from __future__ import annotations

import os
import time

from ..errors import StoreUnavailable, UserError

PATIENCE_SECONDS = 120.0  # default of $RESNET_BENCH_TRACKING_PATIENCE: a server restart fits
# What a store says when it is away for a while rather than refusing a request: a server that
# restarts (connection refused or reset, a response cut off mid-way, 502-504 from a proxy in
# front of it), a SQLite file another sweep holds locked. A call retried after its response was
# cut may have been applied once already; the calls a run makes are safe to repeat (MLflow
# drops a metric row identical to one it holds; params, tags and artifacts are set again).
_TRANSIENT = ("max retries exceeded", "connection refused", "connection reset", "connection aborted",
              "connection broken", "remotedisconnected", "read timed out", "temporarily unavailable",
              "bad gateway", "service unavailable", "gateway timeout", "locked")  # fmt: skip


def _transient(e: Exception) -> bool:
    return any(k in str(e).lower() for k in _TRANSIENT)


def patience_seconds() -> float:
    """``$RESNET_BENCH_TRACKING_PATIENCE``, or :data:`PATIENCE_SECONDS` when it is not set."""
    text = os.environ.get("RESNET_BENCH_TRACKING_PATIENCE")
    try:
        return PATIENCE_SECONDS if text is None else float(text)
    except ValueError:
        raise UserError(f"$RESNET_BENCH_TRACKING_PATIENCE: expected a number, got {text!r}") from None


def patiently(fn, *args, **kwargs):
    """Retry a store call while the store is away, with backoff, for the configured patience.

    A tracking server restarting or a SQLite file locked by another sweep is an ordinary event
    of a long sweep: the call waits (at most ``$RESNET_BENCH_TRACKING_PATIENCE`` seconds,
    counted from the first failure) instead of failing the run. MLflow's own HTTP retries are
    turned off by the CLI (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` unless set), so this is the
    one knob, and its waiting is quiet. Past the limit: :class:`StoreUnavailable`, one line.
    """
    deadline, delay = None, 0.2
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not _transient(e):
                raise
            now = time.time()
            patience = patience_seconds()
            deadline = deadline or now + patience
            if now >= deadline:
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise StoreUnavailable(
                    f"the tracking store did not answer for {patience:.0f} s ($RESNET_BENCH_TRACKING_PATIENCE): {first}"
                ) from None
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 5.0)
