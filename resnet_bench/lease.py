"""Who owns a run, when an owner is dead, what an ending becomes: the run lease as pure decisions.

The tracking store (:mod:`resnet_bench.tracking`) fetches run records and carries out what
these functions decide. Nothing here talks to MLflow, reads the clock or looks at processes:
the caller's view of the world (its host, the time, a pid check, the staleness limit) comes
in as an :class:`Observer`, so every case of the lifecycle is a test on hand-built records.

The lease, in short. A run is claimed by creating it (RUNNING, tagged with the owner's host
and pid, ``claim=choosing``), taking a ticket one above every rival's and publishing it
(``claim=ready``). Concurrent claimants of one ``run_key`` are then decided as in Lamport's
bakery, with the store as the shared memory: wait while a live rival is still choosing, then
the smallest (ticket, run id) among the live claims owns the run and the others give way.
No clock orders the claims: a run's start time is taken before the insert that makes it
visible, so ordering by it could let two claims each miss the other. An owner is dead
when it ran on this host and its pid is gone, or, from another host, when its heartbeat is
older than the staleness limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import DivergedError, StoreUnavailable, Terminated
from .schema import FAILED, FINISHED, KILLED, RUNNING


@dataclass(frozen=True)
class Record:
    """What the store says of one run: all a lease decision reads."""

    run_id: str
    status: str
    start_time: float  # seconds since the epoch
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, run) -> Record:
        """From an MLflow ``Run``."""
        return cls(run.info.run_id, run.info.status, run.info.start_time / 1000, dict(run.data.tags))


@dataclass(frozen=True)
class Observer:
    """The deciding process's view: its host, the time now, how old a heartbeat may get, and
    whether a pid of this host is alive."""

    host: str
    now: float
    stale_seconds: float
    pid_alive: Callable[[int], bool]


def owner_alive(record: Record, seen: Observer) -> bool:
    """Whether the process that owns ``record`` still lives.

    On this host the pid answers; a run without a valid pid is dead (it cannot be asked). From
    another host only the heartbeat can: a live owner refreshes it every minute, so one older
    than ``stale_seconds`` means the owner is gone (or cut off, which is the same to us)."""
    tags = record.tags
    if tags.get("owner_host") == seen.host:
        try:
            pid = int(tags.get("owner_pid", ""))
        except ValueError:
            return False
        return pid > 0 and seen.pid_alive(pid)
    try:
        beat = float(tags.get("heartbeat", record.start_time))
    except ValueError:
        beat = record.start_time
    return seen.now - beat < seen.stale_seconds


def live(record: Record, seen: Observer) -> bool:
    return record.status == RUNNING and owner_alive(record, seen)


def orphans(records: Iterable[Record], seen: Observer, invocation: str = "") -> list[Record]:
    """The RUNNING runs to mark KILLED before a claim: those whose owner died, and any of this
    very ``invocation`` (one sweep schedules each run once, so an earlier attempt of it is a
    dead worker's, whatever host it ran on: how a Ray retry on another machine finds it)."""
    out = []
    for r in records:
        same_sweep = bool(invocation) and r.tags.get("invocation") == invocation
        if r.status == RUNNING and (same_sweep or not owner_alive(r, seen)):
            out.append(r)
    return out


def finished(records: Iterable[Record]) -> bool:
    return any(r.status == FINISHED for r in records)


def plan_state(records: Iterable[Record], seen: Observer, force: bool = False) -> str:
    """``done`` (finished, and not forced), ``running`` (a live owner holds it) or ``pending``."""
    statuses = {r.status for r in records if r.status != RUNNING or owner_alive(r, seen)}
    if FINISHED in statuses and not force:
        return "done"
    return "running" if RUNNING in statuses else "pending"


def ticket(record: Record) -> int:
    """A claim's ticket; 0 for a run made by a version without tickets (it claimed first)."""
    try:
        return int(record.tags.get("claim_ticket", 0))
    except ValueError:
        return 0


def next_ticket(rivals: Iterable[Record]) -> int:
    return 1 + max((ticket(r) for r in rivals), default=0)


WAIT, WIN, GIVE_WAY = "wait", "win", "give way"


def claim_decision(me: str, my_ticket: int, rivals: Iterable[Record], seen: Observer, force: bool,
                   waited_out: bool) -> str:  # fmt: skip
    """What a claimant that has published ``my_ticket`` does next, given the other runs of its key.

    WAIT while a live rival is still choosing its ticket (it may yet draw a smaller one), unless
    ``waited_out`` (the claimant gave it long enough: then it gives way, so a stuck rival costs
    time, never a second owner). Otherwise GIVE_WAY to a finished run (unless forced) or to a
    live rival with a smaller (ticket, run id), and WIN when there is none."""
    rivals = list(rivals)
    live_rivals = [r for r in rivals if live(r, seen)]
    choosing = any(r.tags.get("claim") == "choosing" for r in live_rivals)
    if choosing:
        return GIVE_WAY if waited_out else WAIT
    if not force and finished(rivals):
        return GIVE_WAY
    if any((ticket(r), r.run_id) < (my_ticket, me) for r in live_rivals):
        return GIVE_WAY
    return WIN


def settled(records: Iterable[Record]) -> str:
    """The status of a run whose worker died without reporting (its orphans already reaped)."""
    return FINISHED if finished(records) else KILLED


@dataclass(frozen=True)
class Ending:
    """How a run's block ended, as the store records it."""

    status: str
    reason: str | None = None
    propagate: bool = False  # re-raise after recording (interrupts end the sweep too)
    show_traceback: bool = False  # an unexpected error in one run: print it, and go on


INTERRUPTED = "interrupted (SIGINT/SIGTERM)"


def ending(error: BaseException | None, stopping: bool = False) -> Ending:
    """The status an exception out of a run's block becomes.

    None: FINISHED. Divergence and a store gone for longer than its patience: FAILED with the
    reason, and the sweep goes on. Ctrl-C or SIGTERM: KILLED, and the interrupt propagates. Any
    other error: FAILED with its type and message, the traceback shown, the sweep goes on (one
    broken run must not end it). Anything else (SystemExit): FAILED, and it propagates.

    ``stopping``: the process received a stop signal. Then any exception is the stop's doing
    (a signal that lands inside a C extension can come out as another exception): KILLED, no
    traceback, and it propagates, so the sweep stops as the signal asked."""
    if error is None:
        return Ending(FINISHED)
    if stopping:
        return Ending(KILLED, INTERRUPTED, propagate=True)
    if isinstance(error, DivergedError):
        return Ending(FAILED, f"diverged: {error}")
    if isinstance(error, StoreUnavailable):
        return Ending(FAILED, str(error))
    if isinstance(error, KeyboardInterrupt | Terminated):
        return Ending(KILLED, INTERRUPTED, propagate=True)
    if isinstance(error, Exception):
        return Ending(FAILED, f"{type(error).__name__}: {error}", show_traceback=True)
    return Ending(FAILED, None, propagate=True)


def after_flush(end: Ending, writer_error: BaseException | None) -> Ending:
    """A run that finished but whose epochs could not all be written is FAILED, with why."""
    if end.status == FINISHED and writer_error is not None:
        return Ending(FAILED, str(writer_error), end.propagate, end.show_traceback)
    return end
