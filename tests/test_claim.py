"""Concurrent claims for one run: exactly one owner, however the store's calls interleave."""

import random
import threading
import time

import pytest

from resnet_bench import tracking
from resnet_bench.tracking import Store

from .helpers import store_uri


def _widen_the_window(monkeypatch, store: Store, seed: int) -> None:
    """Delay every insert of a run after its start time is taken (as a busy SQLite store or a
    slow server does), and jitter every other call, so claims overlap in every order."""
    rng = random.Random(seed)
    backend = store.client._tracking_client.store  # shared by every client of this URI
    create = backend.create_run

    def slow_create(*args, **kwargs):
        time.sleep(rng.uniform(0, 0.05))
        return create(*args, **kwargs)

    monkeypatch.setattr(backend, "create_run", slow_create)
    retry = tracking.patiently  # every call of the store goes through it

    def jittered(fn, *args, **kwargs):
        time.sleep(rng.uniform(0, 0.01))
        return retry(fn, *args, **kwargs)

    monkeypatch.setattr(tracking.store, "patiently", jittered)


def _race(uri: str, exp: str, key: str, claimants: int) -> list:
    """``claimants`` threads, each with its own Store, claim ``key`` at the same moment."""
    stores = [Store(uri) for _ in range(claimants)]
    start = threading.Barrier(claimants)
    won: list = [None] * claimants

    def claim(i):
        start.wait()
        won[i] = stores[i].claim(exp, key, {"invocation": f"sweep{i}"})

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


@pytest.mark.parametrize("claimants", [2, 3])
def test_simultaneous_claims_end_with_exactly_one_owner(tmp_path, monkeypatch, claimants):
    uri = store_uri(tmp_path)
    store = Store(uri)
    exp = store.experiment_id("race")
    _widen_the_window(monkeypatch, store, seed=claimants)
    for rep in range(12):
        key = f"k{rep}"
        won = _race(uri, exp, key, claimants)
        owners = [w for w in won if w is not None]
        assert len(owners) == 1, (rep, won)
        alive = [r.info.run_id for r in store.runs_with_key(exp, key)]
        assert alive == owners  # the losers deleted their runs


def test_a_claim_after_the_owner_has_its_ticket_gives_way(tmp_path):
    store = Store(store_uri(tmp_path))
    exp = store.experiment_id("late")
    first = store.claim(exp, "k", {})
    assert first is not None
    assert store.claim(exp, "k", {}) is None  # the owner is alive (this process) and ticketed
    tags = store.get_run(first).data.tags
    assert tags["claim"] == "ready" and tags["claim_ticket"] == "1"
    assert [r.info.run_id for r in store.runs_with_key(exp, "k")] == [first]


@pytest.mark.parametrize(
    "message,away",
    [
        (
            "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: /api",
            True,
        ),
        # a server restarting while a response was on its way (seen when the test_outage relay cut a write)
        (
            "API request to http://h/api/2.0/mlflow/runs/log-batch failed with exception ('Connection broken: "
            "IncompleteRead(0 bytes read, 2 more expected)', IncompleteRead(0 bytes read, 2 more expected))",
            True,
        ),
        ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", True),
        ("(sqlite3.OperationalError) database is locked", True),
        ("RESOURCE_DOES_NOT_EXIST: Run with id=abc not found", False),
        ("INVALID_PARAMETER_VALUE: Changing param values is not allowed", False),
    ],
)
def test_a_store_that_is_away_is_waited_for_and_a_refusal_is_not(monkeypatch, message, away):
    """Which errors the store's calls wait out (for the patience) and which they raise at once."""
    monkeypatch.setenv("RESNET_BENCH_TRACKING_PATIENCE", "30")  # two retries wait 0.2 s and 0.4 s
    calls = []

    def fails_twice():
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError(message)
        return "answered"

    if away:
        assert tracking.patiently(fails_twice) == "answered" and len(calls) == 3
    else:
        with pytest.raises(RuntimeError, match=message.split(":")[0]):
            tracking.patiently(fails_twice)
        assert len(calls) == 1


def test_a_schema_another_process_is_creating_is_waited_for(tmp_path, monkeypatch):
    """A process outside the schema lock (``mlflow ui``, a test polling the file) creating the
    tables as a sweep opens the store: the sweep's first try finds them "already exist" (a
    --jobs 2 sweep exited 2 on it under load) and opens the store on the next."""
    from sqlalchemy.exc import OperationalError

    real, tries = tracking.store.MlflowClient, []

    def racing(**kwargs):
        tries.append(1)
        if len(tries) == 1:
            raise OperationalError("CREATE TABLE mcp_servers", {}, Exception("table mcp_servers already exists"))
        return real(**kwargs)

    monkeypatch.setattr(tracking.store, "MlflowClient", racing)
    store = Store(store_uri(tmp_path))
    assert len(tries) == 2 and store.experiment_id("e")


def test_a_store_that_cannot_be_opened_is_not_tried_again(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from resnet_bench.errors import UserError

    tries = []

    def broken(**kwargs):
        tries.append(1)
        raise OperationalError("SELECT", {}, Exception("file is not a database"))

    monkeypatch.setattr(tracking.store, "MlflowClient", broken)
    with pytest.raises(UserError, match="file is not a database"):
        Store(store_uri(tmp_path))
    assert len(tries) == 1
