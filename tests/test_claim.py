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
    retry = tracking._retry  # every call of the store goes through it

    def jittered(fn, *args, **kwargs):
        time.sleep(rng.uniform(0, 0.01))
        return retry(fn, *args, **kwargs)

    monkeypatch.setattr(tracking, "_retry", jittered)


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
