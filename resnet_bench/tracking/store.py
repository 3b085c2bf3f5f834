"""The store: opening it under a lock, finding runs, the run lease carried out, logging.

What the lease decides is in :mod:`resnet_bench.lease` (pure); :class:`Store` fetches the records
and carries the decisions out, every call waiting out a store that is briefly away
(:func:`.patience.patiently`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from .. import inputs, lease, schema, signals
from ..schema import KILLED
from . import uris
from .patience import patiently
from .run import TrackedRun

STALE_SECONDS = 600.0  # default of $RESNET_BENCH_STALE_SECONDS
HEARTBEAT_SECONDS = 60
CLAIM_WAIT_SECONDS = 120.0  # longest wait for a rival claim to publish its ticket before giving way
_MAX_BATCH = 900  # MLflow caps a log_batch call at 1000 params + metrics + tags


def search_runs(client: MlflowClient, exp_id: str, filter_string: str = "") -> list:
    """Every run of an experiment matching ``filter_string``, page after page."""
    out, token = [], None
    while True:
        page = patiently(client.search_runs, [exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


@contextlib.contextmanager
def _schema_lock(uri: str):
    """An exclusive lock beside a SQLite store's file (nothing for other stores or off POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    db = uris.sqlite_path(uri)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # it exists, and belongs to another user
        return True
    except OSError:
        return False
    return True


def observer() -> lease.Observer:
    """This process's view of the world, for the lease's decisions (:mod:`resnet_bench.lease`)."""
    stale = inputs.env_float("RESNET_BENCH_STALE_SECONDS", STALE_SECONDS)
    return lease.Observer(socket.gethostname(), time.time(), stale, _pid_alive)


# Opening a new SQLite store while another process creates its schema: tries, and what that
# collision says (SQLite's words; 5 tries wait 5 s in all).
SCHEMA_ATTEMPTS = 5
SCHEMA_COLLISIONS = ("already exists", "duplicate column")


class Store:
    """An MLflow tracking store addressed by URI: the calls the driver and the report make,
    each by name and each waiting out a store that is briefly away (:func:`.patience.patiently`). What the
    run lease decides is in :mod:`resnet_bench.lease`; this class fetches and writes."""

    def __init__(self, uri: str | None = None):
        self.uri = uris.resolve_uri(uri)
        self._initialise()

    def _initialise(self) -> None:
        """Open the store with one query: what MLflow refuses (a foreign file, a login) is told
        here as one line, and a new SQLite schema is created under a file lock, because two
        sweeps creating it at the same moment collide ("duplicate column"). A process that
        does not take the lock (``mlflow ui``, a script's MlflowClient) can still be creating
        it: its tables then "already exist" for us, and opening is tried again once it is done."""
        from sqlalchemy.exc import SQLAlchemyError

        with uris.opening_store(self.uri), _schema_lock(self.uri):
            for attempt in range(SCHEMA_ATTEMPTS):
                try:
                    self.client = MlflowClient(tracking_uri=self.uri)
                    self.client.search_experiments(max_results=1)  # no patience: a wrong URI is told at once
                    return
                except SQLAlchemyError as e:
                    text = str(e).lower()
                    if attempt == SCHEMA_ATTEMPTS - 1 or not any(k in text for k in SCHEMA_COLLISIONS):
                        raise
                    time.sleep(0.5 * (attempt + 1))

    # -- experiments and lookups ---------------------------------------------------------

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = patiently(self.client.get_experiment_by_name, name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        artifacts = None
        db = uris.sqlite_path(self.uri)
        if db is not None:  # MLflow 3's local layout: mlflow.db beside an mlruns/ artifact folder
            artifacts = (db.parent / "mlruns").as_uri()
        try:
            return patiently(self.client.create_experiment, name, artifact_location=artifacts)
        except Exception:  # created by a concurrent sweep a moment ago
            return patiently(self.client.get_experiment_by_name, name).experiment_id

    def runs(self, exp_id: str, filter_string: str = "") -> list:
        return search_runs(self.client, exp_id, filter_string)

    def runs_with_key(self, exp_id: str, run_key: str) -> list:
        return self.runs(exp_id, f"tags.run_key = '{run_key}'")

    def records(self, exp_id: str, run_key: str) -> list[lease.Record]:
        return [lease.Record.of(r) for r in self.runs_with_key(exp_id, run_key)]

    def get_run(self, run_id: str):
        return patiently(self.client.get_run, run_id)

    def metric_history(self, run_id: str, key: str) -> list:
        """Every logged value of metric ``key`` as stored (see :func:`schema.stored_key`)."""
        return patiently(self.client.get_metric_history, run_id, key)

    # -- the run lease (decisions: resnet_bench.lease) -----------------------------------

    def create_run(self, exp_id: str, tags: dict, run_name: str | None = None) -> str:
        tags = {k: str(v) for k, v in tags.items()}
        return patiently(self.client.create_run, exp_id, tags=tags, run_name=run_name).info.run_id

    def delete_run(self, run_id: str) -> None:
        patiently(self.client.delete_run, run_id)

    def set_tags(self, run_id: str, tags: dict) -> None:
        patiently(self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end(self, run_id: str, status: str, reason: str | None = None) -> None:
        if reason:
            self.set_tags(run_id, {"failure_reason": reason[:5000]})
        patiently(self.client.set_terminated, run_id, status)

    def reap(self, exp_id: str, run_key: str, invocation: str = "") -> int:
        """Mark the RUNNING runs of ``run_key`` whose owner died as KILLED; returns how many."""
        dead = lease.orphans(self.records(exp_id, run_key), observer(), invocation)
        for r in dead:
            self.end(r.run_id, KILLED, "owner process died (found by a later sweep)")
        return len(dead)

    def plan_state(self, exp_id: str | None, run_key: str, force: bool = False) -> str:
        """``done``, ``running`` or ``pending`` (:func:`resnet_bench.lease.plan_state`)."""
        records = self.records(exp_id, run_key) if exp_id else []
        return lease.plan_state(records, observer(), force)

    def settle(self, exp_id: str, run_key: str) -> str:
        """The status of a run whose worker died without a word: reap it, then read it."""
        self.reap(exp_id, run_key)
        return lease.settled(self.records(exp_id, run_key))

    def claim(self, exp_id: str, run_key: str, tags: dict, force: bool = False) -> str | None:
        """Create the run for ``run_key`` unless it is finished (and not forced) or taken.

        The bakery of :mod:`resnet_bench.lease`: create the run ``choosing``, publish a ticket
        one above every rival's, then follow :func:`~resnet_bench.lease.claim_decision` until
        it says WIN (the run id is returned) or GIVE_WAY (the fresh run is deleted: None).
        """
        self.reap(exp_id, run_key, str(tags.get("invocation", "")))
        if not force and lease.finished(self.records(exp_id, run_key)):
            return None
        owner = {"owner_host": socket.gethostname(), "owner_pid": str(os.getpid()), "heartbeat": f"{time.time():.0f}"}
        me = self.create_run(exp_id, {**tags, **owner, "run_key": run_key, "claim": "choosing"}, tags.get("run_name"))
        ticket = lease.next_ticket(r for r in self.records(exp_id, run_key) if r.run_id != me)
        self.set_tags(me, {"claim_ticket": ticket, "claim": "ready"})
        deadline = time.time() + CLAIM_WAIT_SECONDS
        while True:
            rivals = [r for r in self.records(exp_id, run_key) if r.run_id != me]
            seen = observer()
            decision = lease.claim_decision(me, ticket, rivals, seen, force, waited_out=seen.now >= deadline)
            if decision == lease.WIN:
                return me
            if decision == lease.GIVE_WAY:
                self.delete_run(me)
                return None
            time.sleep(0.05)

    # -- logging -------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), _MAX_BATCH):
            patiently(self.client.log_batch, run_id, params=items[i : i + _MAX_BATCH])

    def log_epoch(self, run_id: str, row: dict) -> None:
        """One call per epoch: every metric at step = epoch under its stored key
        (:func:`schema.stored_key`), plus the heartbeat tag."""
        ts = int(time.time() * 1000)
        step = int(row["epoch"])
        metrics = [Metric(schema.stored_key(k), float(v), ts, step) for k, v in row.items() if k != "epoch"]
        patiently(self.client.log_batch, run_id, metrics=metrics, tags=[RunTag("heartbeat", f"{time.time():.0f}")])

    def log_text(self, run_id: str, text: str, name: str) -> None:
        patiently(self.client.log_text, run_id, text, name)

    def retry(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, retried while the store is away (as every call here is)."""
        return patiently(fn, *args, **kwargs)

    def analysis_record(self, run) -> dict | None:
        """The analysis record of ``run`` (an MLflow run as ``search_runs`` returns it), or None
        when it has none: a run counts as analysed once its metrics hold the analysis's
        headline numbers, which ``resnet-bench analyse`` writes after the record."""
        if not set(schema.ANALYSIS_METRICS) <= set(run.data.metrics):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = patiently(self.client.download_artifacts, run.info.run_id, schema.ANALYSIS_ARTIFACT, tmp)
            return json.loads(Path(local).read_text())

    def log_metrics(self, run_id: str, values: dict[str, float]) -> None:
        """Metrics measured once (step 0), in one call."""
        ts = int(time.time() * 1000)
        patiently(self.client.log_batch, run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in values.items()])

    def log_layers(self, run_id: str, values: dict[str, float]) -> None:
        """Per-layer values keyed as :func:`schema.response_metric` names them, as one profile
        metric per quantity (step = position in the net) plus :data:`schema.LAYERS_ARTIFACT`."""
        ts = int(time.time() * 1000)
        rows = [(*schema.parse_layer_metric(k), float(v)) for k, v in values.items()]
        metrics = [Metric(kind, value, ts, index) for kind, index, _, value in rows]
        patiently(self.client.log_batch, run_id, metrics=metrics)
        table = "kind,index,layer,value\n" + "".join(f"{k},{i},{name},{v!r}\n" for k, i, name, v in rows)
        self.log_text(run_id, table, schema.LAYERS_ARTIFACT)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        patiently(self.client.log_artifact, run_id, path, artifact_path=artifact_path)

    def log_inputs(self, run_id: str, datasets: list) -> None:
        patiently(self.client.log_inputs, run_id, datasets=datasets)

    def heartbeat(self, run_id: str, stop) -> None:
        """Refresh the run's heartbeat tag until ``stop`` (a threading.Event) is set.

        Runs in a thread beside training, so a long epoch does not look like a dead owner.
        """
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                self.set_tags(run_id, {"heartbeat": f"{time.time():.0f}"})
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    @contextlib.contextmanager
    def tracked_run(self, exp_id: str, run_key: str, tags: dict, force: bool = False):
        """A run's whole life: claim, heartbeat, logging, and its final status.

        Yields a :class:`TrackedRun`, or ``None`` when the run is finished (and not forced) or
        another process holds it. How the block ends decides the status
        (:func:`resnet_bench.lease.ending`): FINISHED, FAILED (reported, swallowed: a sweep
        goes on) or KILLED (an interrupt, which propagates). Whatever was logged stays, and the
        run's ``finishers`` are called at the end whatever the status.
        """
        run_id = self.claim(exp_id, run_key, tags, force=force)
        if run_id is None:
            yield None
            return
        run = TrackedRun(self, run_id)
        beating = threading.Event()
        threading.Thread(target=self.heartbeat, args=(run_id, beating), daemon=True).start()
        end = lease.ending(None)
        try:
            yield run
        except BaseException as e:
            end = lease.ending(e, stopping=signals.requested() is not None)
            if end.propagate:
                raise
            if end.show_traceback:
                traceback.print_exc(file=sys.stderr)
        finally:
            beating.set()
            written = run.flush()  # whatever the status: nothing trained is lost
            end = lease.after_flush(end, None if written else run.writer_error)
            run.status, run.reason, run.seconds = end.status, end.reason, time.time() - run.started
            try:
                for finish in run.finishers:
                    finish()
            finally:  # the status is recorded even when an artifact could not be
                self.end(run_id, end.status, end.reason)
