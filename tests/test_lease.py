"""The run lease's decisions on hand-built records: no store, no clock, no processes."""

import itertools
import random

import pytest

from resnet_bench import lease
from resnet_bench.errors import DivergedError, StoreUnavailable, Terminated
from resnet_bench.lease import GIVE_WAY, WAIT, WIN, Observer, Record
from resnet_bench.schema import FAILED, FINISHED, KILLED, RUNNING

HERE = "host-a"
NOW = 1_000_000.0


def seen(alive_pids=(), now=NOW, stale=600.0) -> Observer:
    return Observer(HERE, now, stale, lambda pid: pid in alive_pids)


def rec(run_id="r1", status=RUNNING, start=NOW - 10, **tags) -> Record:
    return Record(run_id, status, start, {k: str(v) for k, v in tags.items()})


# -- is the owner alive? ---------------------------------------------------------------------


def test_an_owner_on_this_host_lives_while_its_pid_does():
    run = rec(owner_host=HERE, owner_pid=42, heartbeat=NOW - 10_000)  # the heartbeat is not asked here
    assert lease.owner_alive(run, seen(alive_pids={42}))
    assert not lease.owner_alive(run, seen(alive_pids={43}))


@pytest.mark.parametrize("pid", ["", "abc", "-1", "0"])
def test_an_owner_on_this_host_without_a_valid_pid_is_dead(pid):
    # os.kill(-1, 0) would ask every process and succeed: a run without a pid must not live forever
    assert not lease.owner_alive(rec(owner_host=HERE, owner_pid=pid), seen(alive_pids={-1, 0}))


def test_an_owner_elsewhere_lives_while_its_heartbeat_is_fresh():
    run = rec(owner_host="host-b", owner_pid=42, heartbeat=NOW - 599)
    assert lease.owner_alive(run, seen(stale=600))
    assert not lease.owner_alive(run, seen(stale=599))
    assert not lease.owner_alive(run, seen(now=NOW + 1, stale=600))


def test_without_a_heartbeat_the_start_time_counts_and_a_garbled_one_too():
    fresh, old = rec(start=NOW - 5, owner_host="host-b"), rec(start=NOW - 700, owner_host="host-b")
    assert lease.owner_alive(fresh, seen()) and not lease.owner_alive(old, seen())
    garbled = rec(start=NOW - 700, owner_host="host-b", heartbeat="soon")
    assert not lease.owner_alive(garbled, seen())


# -- reaping, planning, settling ---------------------------------------------------------------


def test_orphans_are_the_running_runs_with_a_dead_owner_or_of_this_very_sweep():
    records = [
        rec("dead", owner_host=HERE, owner_pid=1),
        rec("alive", owner_host=HERE, owner_pid=2),
        rec("retry", owner_host="host-b", heartbeat=NOW, invocation="sweep1"),  # alive, but an earlier attempt
        rec("done", status=FINISHED, owner_host=HERE, owner_pid=1),
        rec("other-sweep", owner_host="host-b", heartbeat=NOW, invocation="sweep2"),
    ]
    found = lease.orphans(records, seen(alive_pids={2}), invocation="sweep1")
    assert [r.run_id for r in found] == ["dead", "retry"]
    assert [r.run_id for r in lease.orphans(records, seen(alive_pids={2}))] == ["dead"]


@pytest.mark.parametrize(
    "statuses,force,expected",
    [
        ([], False, "pending"),
        ([FINISHED], False, "done"),
        ([FINISHED], True, "pending"),
        ([FAILED, KILLED], False, "pending"),
        ([RUNNING], False, "running"),  # pid 7 lives
        ([FINISHED, RUNNING], True, "running"),
    ],
)
def test_plan_state(statuses, force, expected):
    records = [rec(f"r{i}", s, owner_host=HERE, owner_pid=7) for i, s in enumerate(statuses)]
    assert lease.plan_state(records, seen(alive_pids={7}), force) == expected


def test_a_run_whose_owner_died_is_pending_not_running():
    assert lease.plan_state([rec(owner_host=HERE, owner_pid=7)], seen(alive_pids=()), False) == "pending"


def test_a_dead_workers_run_settles_as_finished_only_if_it_finished():
    assert lease.settled([rec("a", KILLED), rec("b", FINISHED)]) == FINISHED
    assert lease.settled([rec("a", KILLED)]) == KILLED
    assert lease.settled([]) == KILLED


# -- the bakery ---------------------------------------------------------------------------------


def test_tickets_count_up_from_the_largest_and_old_runs_hold_ticket_zero():
    assert lease.next_ticket([]) == 1
    assert lease.next_ticket([rec(claim_ticket=3), rec(claim_ticket=1), rec()]) == 4
    assert lease.ticket(rec()) == 0 and lease.ticket(rec(claim_ticket="x")) == 0


def live_rival(run_id, ticket=None, claim="ready"):
    tags = {"owner_host": HERE, "owner_pid": 9, "claim": claim}
    if ticket is not None:
        tags["claim_ticket"] = ticket
    return rec(run_id, **tags)


@pytest.mark.parametrize(
    "rivals,force,waited_out,expected",
    [
        ([], False, False, WIN),
        ([live_rival("z", 2)], False, False, GIVE_WAY),  # its ticket is smaller
        ([live_rival("z", 3)], False, False, WIN),  # same ticket, my run id "m" < "z"
        ([live_rival("a", 3)], False, False, GIVE_WAY),  # same ticket, "a" < "m"
        ([live_rival("z", 5)], False, False, WIN),
        ([live_rival("z")], False, False, GIVE_WAY),  # a run of a version without tickets: ticket 0
        ([live_rival("z", claim="choosing")], False, False, WAIT),  # it may yet draw a smaller ticket
        ([live_rival("z", claim="choosing")], False, True, GIVE_WAY),  # waited long enough: never two owners
        ([rec("z", FINISHED, claim_ticket=1)], False, False, GIVE_WAY),
        ([rec("z", FINISHED, claim_ticket=1)], True, False, WIN),  # --force trains again
        ([rec("z", KILLED, claim_ticket=1)], False, False, WIN),
        ([rec("z", owner_host=HERE, owner_pid=8, claim="choosing", claim_ticket=1)], False, False, WIN),  # dead
    ],
)
def test_claim_decision(rivals, force, waited_out, expected):
    assert lease.claim_decision("m", 3, rivals, seen(alive_pids={9}), force, waited_out) == expected


class Bakery:
    """Claimants following :meth:`resnet_bench.tracking.Store.claim`'s steps over one shared
    list of records, each step atomic, in an order the test chooses."""

    def __init__(self, n: int):
        self.records: dict[str, Record] = {}
        self.outcome: dict[int, str] = {}
        self.steps = {i: self._claimant(i) for i in range(n)}

    def _put(self, run_id, **tags):
        old = self.records.get(run_id)
        self.records[run_id] = rec(run_id, **{"owner_host": HERE, "owner_pid": 1, **(old.tags if old else {}), **tags})

    def _rivals(self, me):
        return [r for r in self.records.values() if r.run_id != me]

    def _claimant(self, i):
        me = f"run{i}"
        self._put(me, claim="choosing")  # create_run
        yield
        ticket = lease.next_ticket(self._rivals(me))  # read the rivals
        yield
        self._put(me, claim="ready", claim_ticket=ticket)  # publish
        yield
        while True:
            decision = lease.claim_decision(me, ticket, self._rivals(me), seen(alive_pids={1}), False, False)
            if decision == WIN:
                self.outcome[i] = WIN
                return
            if decision == GIVE_WAY:
                del self.records[me]
                self.outcome[i] = GIVE_WAY
                return
            yield

    def run(self, order) -> list[int]:
        """Step claimants in ``order`` (indices; a finished one is skipped), then round-robin."""
        for i in itertools.chain(order, itertools.cycle(range(len(self.steps)))):
            if len(self.outcome) == len(self.steps):
                break
            if i not in self.outcome:
                next(self.steps[i], None)
        return [i for i, o in self.outcome.items() if o == WIN]


@pytest.mark.parametrize("n", [2, 3])
def test_every_interleaving_of_concurrent_claims_has_exactly_one_owner(n):
    """Every order of the first 4 steps of each claimant (exhaustive for 2, 600 random for 3)."""
    if n == 2:
        orders = set(itertools.permutations([0] * 4 + [1] * 4))
    else:
        rng = random.Random(0)
        orders = [rng.choices(range(n), k=4 * n) for _ in range(600)]
    for order in orders:
        bakery = Bakery(n)
        winners = bakery.run(order)
        assert len(winners) == 1, order
        assert list(bakery.records) == [f"run{winners[0]}"]  # the losers deleted their runs


# -- how a run's block ends -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error,status,reason,propagate,show",
    [
        (None, FINISHED, None, False, False),
        (DivergedError("loss is nan"), FAILED, "diverged: loss is nan", False, False),
        (StoreUnavailable("gone for 120 s"), FAILED, "gone for 120 s", False, False),
        (KeyboardInterrupt(), KILLED, lease.INTERRUPTED, True, False),
        (Terminated(), KILLED, lease.INTERRUPTED, True, False),
        (ValueError("bad shape"), FAILED, "ValueError: bad shape", False, True),
        (SystemExit(3), FAILED, None, True, False),
    ],
)
def test_what_an_ending_becomes(error, status, reason, propagate, show):
    assert lease.ending(error) == lease.Ending(status, reason, propagate, show)


@pytest.mark.parametrize(
    "error", [SystemError("Objects/listobject.c:338: bad argument to internal function"), ValueError("x"), Terminated()]
)
def test_after_a_stop_signal_any_exception_ends_the_run_killed_and_stops_the_sweep(error):
    """A SIGTERM that lands inside TensorFlow can come out as another exception: the run was
    still cut short by the stop, not broken."""
    assert lease.ending(error, stopping=True) == lease.Ending(KILLED, lease.INTERRUPTED, True, False)
    assert lease.ending(None, stopping=True) == lease.Ending(FINISHED)  # it finished before the stop


def test_a_finished_run_whose_epochs_were_not_all_written_is_failed():
    lost = StoreUnavailable("epoch not logged: disk full")
    assert lease.after_flush(lease.ending(None), lost) == lease.Ending(FAILED, "epoch not logged: disk full")
    assert lease.after_flush(lease.ending(None), None) == lease.Ending(FINISHED)
    killed = lease.ending(KeyboardInterrupt())
    assert lease.after_flush(killed, lost) == killed  # the first cause stays
