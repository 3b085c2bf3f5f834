"""The small MLflow layer: where the store is, how runs are found, claimed and reaped.

Runs are grouped by tags rather than parent runs: a resumed sweep, or one spread over Ray
workers, produces runs in several processes and invocations, and a parent run per invocation
would scatter one experiment's (variant, seed) grid over many parents. Tags
(``bench_experiment``, ``config_hash``, ``run_key``, ``invocation``) let the report select
exactly the runs it needs whatever produced them.

A run is *claimed* by creating it (status RUNNING, tagged with its ``run_key`` and its owner's
host and pid) and then deciding among the live runs with the same key by tickets, as in
Lamport's bakery (:meth:`Store.claim`): one wins and the others delete their fresh run and
move on. It needs no lock, works over a tracking server, and never lets two processes train
the same run. A RUNNING run whose owner
is gone (same host and a dead pid, or, from another host, no heartbeat for ``STALE_SECONDS``
while a live run beats every ``HEARTBEAT_SECONDS``) is marked KILLED
before the claim, so a SIGKILLed sweep resumes cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from . import inputs
from .errors import DivergedError, StoreUnavailable, Terminated

STALE_SECONDS = 600.0  # default of $RESNET_BENCH_STALE_SECONDS
HEARTBEAT_SECONDS = 60
CLAIM_WAIT_SECONDS = 120.0  # longest wait for a rival claim to publish its ticket before giving way
_MAX_BATCH = 900  # MLflow caps a log_batch call at 1000 params + metrics + tags


def search_runs(client: MlflowClient, exp_id: str, filter_string: str = "") -> list:
    """Every run of an experiment matching ``filter_string``, page after page."""
    out, token = [], None
    while True:
        page = _retry(client.search_runs, [exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _duplicate_key(e: Exception) -> bool:
    """A database's unique-key violation, as SQLite, PostgreSQL and MySQL word it."""
    text = str(e).lower()
    return any(k in text for k in ("unique constraint", "integrityerror", "duplicate key", "duplicate entry"))


PATIENCE_SECONDS = 120.0  # default of $RESNET_BENCH_TRACKING_PATIENCE: a server restart fits
# What a store says when it is away for a while rather than refusing a request: a server that
# restarts (connection refused or reset, 502-504 from a proxy in front of it), a SQLite file
# another sweep holds locked.
_TRANSIENT = ("max retries exceeded", "connection refused", "connection reset", "connection aborted",
              "remotedisconnected", "read timed out", "temporarily unavailable", "bad gateway",
              "service unavailable", "gateway timeout", "locked")  # fmt: skip


def _transient(e: Exception) -> bool:
    return any(k in str(e).lower() for k in _TRANSIENT)


def _retry(fn, *args, **kwargs):
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
            patience = inputs.env_float("RESNET_BENCH_TRACKING_PATIENCE", PATIENCE_SECONDS)
            deadline = deadline or now + patience
            if now >= deadline:
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise StoreUnavailable(
                    f"the tracking store did not answer for {patience:.0f} s ($RESNET_BENCH_TRACKING_PATIENCE): {first}"
                ) from None
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 5.0)


@contextlib.contextmanager
def _schema_lock(uri: str):
    """An exclusive lock beside a SQLite store's file (nothing for other stores or off POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    db = inputs.sqlite_path(uri)
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ticket(run) -> int:
    """A claim's ticket; 0 for a run created by a version without tickets (it claimed first)."""
    try:
        return int(run.data.tags.get("claim_ticket", 0))
    except ValueError:
        return 0


class Store:
    """An MLflow tracking store addressed by URI, with the calls the driver needs."""

    def __init__(self, uri: str | None = None):
        self.uri = inputs.resolve_uri(uri)
        self._initialise()

    def _initialise(self) -> None:
        """Open the store with one query: what MLflow refuses (a foreign file, a login) is told
        here as one line, and a new SQLite schema is created under a file lock, because two
        sweeps creating it at the same moment collide ("duplicate column")."""
        with inputs.opening_store(self.uri), _schema_lock(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)  # no patience: a wrong URI is told at once

    def call(self, name: str, *args, **kwargs):
        return _retry(getattr(self.client, name), *args, **kwargs)

    # -- experiments and lookups ---------------------------------------------------------

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.call("get_experiment_by_name", name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        artifacts = None
        db = inputs.sqlite_path(self.uri)
        if db is not None:  # MLflow 3's local layout: mlflow.db beside an mlruns/ artifact folder
            artifacts = (db.parent / "mlruns").as_uri()
        try:
            return self.call("create_experiment", name, artifact_location=artifacts)
        except Exception:  # created by a concurrent sweep a moment ago
            return self.call("get_experiment_by_name", name).experiment_id

    def runs(self, exp_id: str, filter_string: str = "") -> list:
        return search_runs(self.client, exp_id, filter_string)

    def runs_with_key(self, exp_id: str, run_key: str) -> list:
        return self.runs(exp_id, f"tags.run_key = '{run_key}'")

    # -- claiming ------------------------------------------------------------------------

    @staticmethod
    def owner_alive(run) -> bool:
        tags = run.data.tags
        if tags.get("owner_host") == socket.gethostname():
            try:
                os.kill(int(tags.get("owner_pid", -1)), 0)
                return True
            except (OSError, ValueError):
                return False
        beat = float(tags.get("heartbeat", run.info.start_time / 1000))
        return time.time() - beat < inputs.env_float("RESNET_BENCH_STALE_SECONDS", STALE_SECONDS)

    def reap(self, exp_id: str, run_key: str, invocation: str = "") -> int:
        """Mark RUNNING runs of ``run_key`` whose owner died as KILLED; returns how many.

        A RUNNING run of the same ``invocation`` is an earlier attempt of this very task (one
        sweep schedules each run once), so it is dead whatever host it ran on: that is how a
        Ray retry on another machine recognises the attempt its dead worker left behind.
        """
        n = 0
        for run in self.runs_with_key(exp_id, run_key):
            same_sweep = bool(invocation) and run.data.tags.get("invocation") == invocation
            if run.info.status == "RUNNING" and (same_sweep or not self.owner_alive(run)):
                self.call("set_tag", run.info.run_id, "failure_reason", "owner process died (found by a later sweep)")
                self.call("set_terminated", run.info.run_id, "KILLED")
                n += 1
        return n

    def claim(self, exp_id: str, run_key: str, tags: dict, force: bool = False) -> str | None:
        """Create the run for ``run_key`` unless it is finished (and not forced) or taken.

        Concurrent claims for one key are decided like Lamport's bakery, with the store as
        the shared memory: a claimant creates its run tagged ``claim=choosing``, takes the
        ticket one above every rival's, publishes it (``claim=ready``), waits while any live
        rival is still choosing, and owns the run only when no live rival holds a smaller
        (ticket, run id). Lower-ticket rivals win and late claimants draw higher tickets, so
        exactly one claim wins however the calls interleave, with no clock involved: a start
        time is taken before the insert that makes a run visible, so ordering by it let two
        claims each miss the other and both train (issue 22).
        """
        self.reap(exp_id, run_key, str(tags.get("invocation", "")))
        if not force and any(r.info.status == "FINISHED" for r in self.runs_with_key(exp_id, run_key)):
            return None
        owner = {"owner_host": socket.gethostname(), "owner_pid": str(os.getpid()), "heartbeat": f"{time.time():.0f}"}
        run = self.call(
            "create_run",
            exp_id,
            tags={**{k: str(v) for k, v in tags.items()}, **owner, "run_key": run_key, "claim": "choosing"},
            run_name=tags.get("run_name"),
        )
        me = run.info.run_id
        rivals = [r for r in self.runs_with_key(exp_id, run_key) if r.info.run_id != me]
        ticket = 1 + max((_ticket(r) for r in rivals), default=0)
        self.call("log_batch", me, tags=[RunTag("claim_ticket", str(ticket)), RunTag("claim", "ready")])
        deadline = time.time() + CLAIM_WAIT_SECONDS
        while True:
            rivals = [r for r in self.runs_with_key(exp_id, run_key) if r.info.run_id != me]
            live = [r for r in rivals if r.info.status == "RUNNING" and self.owner_alive(r)]
            choosing = any(r.data.tags.get("claim") == "choosing" for r in live)
            if choosing and time.time() < deadline:
                time.sleep(0.05)
                continue
            finished = not force and any(r.info.status == "FINISHED" for r in rivals)
            if choosing or finished or any((_ticket(r), r.info.run_id) < (ticket, me) for r in live):
                self.call("delete_run", me)
                return None
            return me

    # -- logging -------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), _MAX_BATCH):
            self.call("log_batch", run_id, params=items[i : i + _MAX_BATCH])

    def log_epoch(self, run_id: str, row: dict) -> None:
        """One call per epoch: every metric at step = epoch, plus the heartbeat tag."""
        ts = int(time.time() * 1000)
        step = int(row["epoch"])
        metrics = [Metric(k, float(v), ts, step) for k, v in row.items() if k != "epoch"]
        self.call("log_batch", run_id, metrics=metrics, tags=[RunTag("heartbeat", f"{time.time():.0f}")])

    def heartbeat(self, run_id: str, stop) -> None:
        """Refresh the run's heartbeat tag until ``stop`` (a threading.Event) is set.

        Runs in a thread beside training, so a long epoch does not look like a dead owner.
        """
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                self.call("set_tag", run_id, "heartbeat", f"{time.time():.0f}")
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    def end(self, run_id: str, status: str, reason: str | None = None) -> None:
        if reason:
            self.call("set_tag", run_id, "failure_reason", reason[:5000])
        self.call("set_terminated", run_id, status)

    @contextlib.contextmanager
    def tracked_run(self, exp_id: str, run_key: str, tags: dict, force: bool = False):
        """A run's whole life: claim, heartbeat, logging, and its final status.

        Yields a :class:`TrackedRun`, or ``None`` when the run is finished (and not forced) or
        another process holds it. Leaving the block normally ends the run FINISHED; a
        :class:`~resnet_bench.errors.DivergedError` or any other exception ends it FAILED (the
        exception is reported and swallowed, so a sweep goes on); an interrupt (Ctrl-C,
        SIGINT or SIGTERM) ends it KILLED and propagates. Whatever was logged stays, and the
        run's ``finishers`` are called at the end whatever the status.
        """
        run_id = self.claim(exp_id, run_key, tags, force=force)
        if run_id is None:
            yield None
            return
        run = TrackedRun(self, run_id)
        beating = threading.Event()
        threading.Thread(target=self.heartbeat, args=(run_id, beating), daemon=True).start()
        reason = None
        try:
            yield run
            run.status = "FINISHED"
        except DivergedError as e:
            reason = f"diverged: {e}"
        except StoreUnavailable as e:  # training went on; its epochs could not all be written
            reason = str(e)
        except (KeyboardInterrupt, Terminated):
            run.status, reason = "KILLED", "interrupted (SIGINT/SIGTERM)"
            raise
        except Exception as e:  # one broken run must not end the sweep
            reason = f"{type(e).__name__}: {e}"
            traceback.print_exc(file=sys.stderr)
        finally:
            beating.set()
            written = run.flush()  # whatever the status: nothing trained is lost
            if run.status == "FINISHED" and not written:
                run.status, reason = "FAILED", str(run.writer_error)
            run.reason, run.seconds = reason, time.time() - run.started
            try:
                for finish in run.finishers:
                    finish()
            finally:  # the status is recorded even when an artifact could not be
                self.end(run_id, run.status, reason)


class TrackedRun:
    """The logging calls of one claimed run (see :meth:`Store.tracked_run`)."""

    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id
        self.status = "FAILED"  # until the run's block completes
        self.reason: str | None = None
        self.started = time.time()
        self.seconds = 0.0
        self.finishers: list = []  # called at the end whatever the status (artifacts of what was done)
        self._epochs: queue.Queue = queue.Queue()
        self.writer_error: Exception | None = None
        self._writer = threading.Thread(target=self._write_epochs, name="epoch-writer", daemon=True)
        self._writer.start()

    def log_params(self, params: dict) -> None:
        self.store.log_params(self.run_id, params)

    def log_epoch(self, row: dict) -> None:
        """Queue an epoch for the writer thread: training goes on while the store is away, and
        the epochs are written in order once it answers. Raises the writer's error, if it gave
        up, so a run whose epochs cannot be tracked stops at the next epoch."""
        if self.writer_error is not None:
            raise self.writer_error
        self._epochs.put(row)

    def _write_epochs(self) -> None:
        while True:
            row = self._epochs.get()
            try:
                if row is not None and self.writer_error is None:
                    self.store.log_epoch(self.run_id, row)
            except Exception as e:  # StoreUnavailable past the patience, or what the store refused
                self.writer_error = e if isinstance(e, StoreUnavailable) else StoreUnavailable(f"epoch not logged: {e}")
            finally:
                self._epochs.task_done()
            if row is None:
                return

    def flush(self) -> bool:
        """Wait until every queued epoch is written (the writer's patience bounds the wait);
        False when the writer gave up."""
        self._epochs.put(None)
        self._writer.join()
        return self.writer_error is None

    def log_text(self, text: str, name: str) -> None:
        self.store.call("log_text", self.run_id, text, name)

    def log_file(self, path: str) -> None:
        self.store.call("log_artifact", self.run_id, path)

    def log_weights(self, model) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.weights.h5"
            model.save_weights(path)
            self.log_file(str(path))

    def log_dataset(self, name: str, digest: str, source_type: str, source: dict, schema: dict, profile: dict) -> None:
        """An MLflow dataset input (the run's Datasets column in the UI), context "training"."""
        dataset = Dataset(name, digest, source_type, json.dumps(source), json.dumps(schema), json.dumps(profile))
        tags = [InputTag("mlflow.data.context", "training")]
        for attempt in range(3):
            try:
                self.store.call("log_inputs", self.run_id, datasets=[DatasetInput(dataset, tags)])
                return
            except Exception as e:
                # MLflow looks a dataset up, then inserts it if absent; two runs of one sweep
                # logging the same new dataset at the same moment (on a server, where requests
                # run in threads) can both insert, and the second hits the unique key. Once it
                # exists, a retry finds it and links it to this run.
                if not _duplicate_key(e) or attempt == 2:
                    raise
