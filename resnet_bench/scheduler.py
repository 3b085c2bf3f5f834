"""Where the runs of a sweep execute, and the one loop that feeds them.

A *pool* runs a :class:`Task` (in a sweep: :func:`resnet_bench.runner.execute_run`, after
:func:`resnet_bench.runner.prepare_process`) somewhere: in this process
(:class:`InProcess`, ``--jobs 1``), in local worker processes (:class:`LocalPool`,
``--jobs N``) or as Ray tasks (``resnet_bench.ray_executor.RayPool``). :func:`schedule` is
the loop all of them share: hand pending runs to free slots, collect statuses, print progress
with an ETA. Runs claim themselves in the tracking store (see :mod:`resnet_bench.tracking`),
so pools need no locks, and two sweeps on one store never train the same run. The task is an
argument, not an import, so this module needs neither TensorFlow nor MLflow, and its tests
drive every pool with fake runs.

Local workers are separate processes with their own TensorFlow, each with the run's thread
count (``train.intra_op_threads``): on 2 cores, two single-threaded runs side by side beat one
run on two threads, since the small convolutions of the CIFAR nets do not scale across
threads (reports/perf.md). A worker keeps each network it has compiled
(:func:`resnet_bench.train.train_run` reuses it), so the pool gives a free worker a run of
a network it already holds when there is one.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from . import signals
from .errors import Terminated
from .schema import KILLED


def _nothing(cfg) -> None:
    pass


@dataclass(frozen=True)
class Task:
    """What a pool runs for each planned run.

    ``run(cfg, spec, seed, uri, force, invocation, label, echo)`` returns the run's status;
    ``prepare(cfg)`` is called once in each process that runs tasks, before the first (a
    sweep loads TensorFlow and sets its threads there). Both must be module-level functions,
    so that worker processes can import them."""

    run: Callable[..., str]
    prepare: Callable[[object], None] = _nothing


class Pool(Protocol):
    def start_next(self, pending: list, label) -> object | None:
        """Start one of ``pending`` if a slot is free; return it (or None when full).

        ``label(run)`` gives the run's progress tag (``[3/24]``) for the lines it prints."""

    def wait(self) -> list[tuple[object, str]]:
        """Block until at least one run ends (or a short timeout); return (run, status) pairs."""

    def busy(self) -> bool:
        """Whether any started run has not been returned by :meth:`wait` yet."""

    def close(self, interrupted: bool = False) -> None:
        """Release workers; on an interrupt, end every run in flight as KILLED first."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def auto_jobs(intra_op_threads: int, runs: int) -> int:
    """``--jobs auto``: the cores divided by the threads one run uses, at most one per run.

    A run with ``train.intra_op_threads = 0`` uses TensorFlow's default, a thread per core, so
    it gets the machine to itself.
    """
    cores = available_cores()
    per_run = intra_op_threads if intra_op_threads > 0 else cores
    return max(1, min(cores // per_run, runs))


class Progress:
    """Runs done out of all, and an ETA from the cost of what is left.

    A run's cost is its depth (MACs per image, and so time, grow about linearly with depth
    within a family), so a deep net counts for more than a shallow one; the rate is the wall
    time so far per unit of finished cost, which holds for one worker or many once the first
    runs are done.
    """

    def __init__(self, todo: list, echo, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.total = len(todo)
        self.cost = {id(p): float(p.spec.depth) for p in todo}
        self.left = sum(self.cost.values())
        self.done_cost = 0.0
        self.done = 0
        self.start = clock()
        self.echo = echo
        self.started = 0

    def label(self, p) -> str:
        self.started += 1
        return f"[{self.started}/{self.total}]"

    def finished(self, p, status: str) -> None:
        self.done += 1
        c = self.cost[id(p)]
        self.done_cost += c
        self.left -= c
        elapsed = self.clock() - self.start
        eta = f", ETA {elapsed / self.done_cost * self.left / 60:.1f} min" if self.done_cost and self.left else ""
        self.echo(
            f"[sweep {self.done}/{self.total} done] {p.spec.name} seed {p.seed}: {status} "
            f"({elapsed / 60:.1f} min elapsed{eta})"
        )


def schedule(pool: Pool, todo: list, echo, progress: Progress | None = None) -> list[str]:
    """Run every planned run of ``todo`` on ``pool``; returns their statuses in finishing order.

    An interrupt (SIGINT or SIGTERM) closes the pool, which ends the runs in flight as KILLED,
    and propagates.
    """
    progress = progress or Progress(todo, echo)
    pending = list(todo)
    statuses: list[str] = []
    interrupted = True
    with signals.raising():
        try:
            while pending or pool.busy():
                while pending:
                    started = pool.start_next(pending, progress.label)
                    if started is None:
                        break
                    pending.remove(started)
                for p, status in pool.wait():
                    statuses.append(status)
                    progress.finished(p, status)
            interrupted = False
        finally:
            pool.close(interrupted)
    return statuses


class InProcess:
    """One run at a time in this process (``--jobs 1``): the simplest pool, and the reference."""

    def __init__(self, cfg, uri: str, force: bool, invocation: str, echo, task: Task):
        self.cfg, self.uri, self.force, self.invocation, self.echo = cfg, uri, force, invocation, echo
        self.task = task
        self._done: list[tuple[object, str]] = []
        task.prepare(cfg)

    def start_next(self, pending, label):
        if self._done:
            return None
        p = pending[0]
        tag = label(p)
        self.echo(f"{tag} {p.spec.name} seed {p.seed}: started")
        status = self.task.run(self.cfg, p.spec, p.seed, self.uri, self.force, self.invocation, tag, self.echo)
        self._done.append((p, status))
        return p

    def wait(self):
        done, self._done = self._done, []
        return done

    def busy(self) -> bool:
        return bool(self._done)

    def close(self, interrupted: bool = False) -> None:
        pass


def _watch_parent(parent_pid: int, orphaned: threading.Event, interval: float = 1.0) -> None:
    """End this worker like a SIGTERM would when the sweep that started it is gone.

    A sweep killed outright (``kill -9``, the OOM killer, a scheduler's time limit) cannot stop
    its workers, and a worker blocked on its task queue would otherwise live on, holding a
    TensorFlow's worth of memory. Polling the parent's pid works on every POSIX system; the
    run in flight ends KILLED, so the next sweep resumes it.
    """

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval)
        orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_SECONDS)  # the orderly ending exits before this, as a rule
        os._exit(137)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# How long an orphaned worker's orderly ending (its run marked KILLED in the store) may take
# before the watchdog ends the process outright.
ORPHAN_GRACE_SECONDS = 30.0


def _worker_main(cfg, uri, force, invocation, task: Task, tasks, results, parent_pid: int) -> None:
    """A local worker: its own TensorFlow, pulling runs until told to stop.

    SIGINT or SIGTERM, at any moment from start-up on, ends the run in flight as KILLED
    (execute_run does that), reports it, and ends the worker quietly (exit 130); further
    signals are ignored so that the ending is not cut short. Whatever exception the stop
    surfaces as (inside TensorFlow it may be another one), the worker ends the same way.

    ``tasks`` and ``results`` are this worker's own pipes from and to the sweep. Pipes, not
    queues: a sweep killed outright leaves no semaphores for multiprocessing's resource tracker
    to warn about, and a worker waiting for work reads the end of its pipe at once. One queue
    shared by all workers would also have one lock for its writers, and a worker killed
    outright while holding it (the OOM killer in the middle of a log line) would silence every
    other worker for good: the sweep would wait forever for runs that had finished
    (test_scheduler's dead-worker test covers it).
    """

    for s in signals.STOP_SIGNALS:
        signal.signal(s, signals.on_stop_once)

    sending = threading.Lock()

    def send(kind: str, text: str) -> None:
        if orphaned.is_set():  # nobody to tell
            return
        with sending:
            try:
                results.send((kind, text))
            except OSError:  # the sweep is gone; the watchdog ends this worker
                pass

    def echo(text: str) -> None:
        send("log", text)

    orphaned = threading.Event()
    try:
        signals.let_through()  # held back while the pool started this process
        _watch_parent(parent_pid, orphaned)
        task.prepare(cfg)
        while True:
            try:
                work = tasks.recv()
            except (EOFError, OSError):  # the sweep is gone
                work = None
            if work is None:
                os._exit(0)  # skip interpreter teardown: TensorFlow's threads can stall it
            spec, seed, label = work
            status = task.run(cfg, spec, seed, uri, force, invocation, label, echo)
            send("done", status)
    except BaseException as e:
        if not (signals.requested() or isinstance(e, KeyboardInterrupt | Terminated)):
            raise
        send("done", KILLED)  # the pool ignores it when no run was in flight
        os._exit(130)


class _Worker:
    def __init__(self, ctx, args, worker_id: int):
        self.id = worker_id
        receiver, self.tasks = ctx.Pipe(duplex=False)
        self.results, sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_worker_main,
            args=(*args, receiver, sender, os.getpid()),
            name=f"resnet-bench-worker-{worker_id}",
            # daemonic: should the sweep exit without closing the pool (an interrupt between
            # two statements), multiprocessing's exit handler still sends each a SIGTERM
            daemon=True,
        )
        self._ends = (receiver, sender)  # the worker's ends, closed here once it holds them
        self.run = None  # the PlannedRun in flight
        self.held: set = set()  # specs this worker has compiled (and keeps for reuse)

    def start(self) -> None:
        """Start the process; the caller holds signals back (:func:`signals.held_back`)."""
        self.process.start()
        for end in self._ends:  # the worker's copies alone stay: either side's death ends its pipes
            end.close()

    def send(self, work) -> None:
        try:
            self.tasks.send(work)
        except OSError:  # the worker is gone: the pool finds and replaces it
            pass


def choose(held: set, others: set, pending: list):
    """The run a free worker takes: one of a network it ``held`` already (no new trace); else
    the deepest of those whose network no other worker holds or runs (``others``), so the long
    runs go first and the sweep ends on short ones; else the deepest."""
    for p in pending:
        if p.spec in held:
            return p
    free = [p for p in pending if p.spec not in others] or pending
    return max(free, key=lambda p: p.spec.depth)


class LocalPool:
    """``jobs`` worker processes on this machine (``--jobs N``).

    The workers start with the first run handed out, that is inside :func:`schedule`, whose
    ``finally`` closes the pool: an interrupt at any moment after they exist then waits for
    them to end. Workers started any earlier could be dropped by a Ctrl-C before the loop,
    while still reading their start-up data: the queues' semaphores would be unlinked under
    them, and each would print a traceback."""

    def __init__(self, cfg, uri: str, force: bool, invocation: str, echo, jobs: int, store, task: Task):
        self.ctx = mp.get_context("spawn")  # TensorFlow is not fork-safe
        self.args = (cfg, uri, force, invocation, task)
        self.echo, self.store, self.cfg, self.jobs = echo, store, cfg, jobs
        self.workers: list[_Worker] = []
        self._next_id = jobs + 1

    def _start_workers(self) -> None:
        workers = [_Worker(self.ctx, self.args, i) for i in range(1, self.jobs + 1)]
        with signals.held_back():
            for w in workers:
                w.start()
                self.workers.append(w)
        threads = self.cfg.train.intra_op_threads or "default"
        self.echo(f"{self.jobs} local worker processes, {threads} intra-op thread(s) each")

    def start_next(self, pending, label):
        if not self.workers:
            self._start_workers()
        idle = [w for w in self.workers if w.run is None]
        if not idle:
            return None
        # Prefer an idle worker that already holds one of the pending networks.
        worker = next((w for w in idle if any(p.spec in w.held for p in pending)), idle[0])
        others = set().union(*(w.held | ({w.run.spec} if w.run else set()) for w in self.workers if w is not worker))
        p = choose(worker.held, others, pending)
        tag = label(p)
        self.echo(f"{tag} {p.spec.name} seed {p.seed}: started on worker {worker.id}")
        worker.run = p
        worker.held.add(p.spec)
        worker.send((p.spec, p.seed, tag))
        return p

    def busy(self) -> bool:
        return any(w.run is not None for w in self.workers)

    def wait(self):
        done = []
        ready = mp_connection.wait([w.results for w in self.workers], timeout=1.0)
        for w in self.workers:
            if w.results in ready:
                done += self._read(w)
        done += self._replace_dead()
        return done

    def _read(self, w: _Worker) -> list:
        """Everything worker ``w`` has sent: its log lines echoed, its run's status returned."""
        done = []
        while w.results.poll():
            try:
                kind, text = w.results.recv()
            except (EOFError, OSError):  # the worker died: _replace_dead settles its run
                w.process.join(1.0)
                break
            if kind == "log":
                self.echo(text)
            elif w.run is not None:
                done.append((w.run, text))
                w.run = None
        return done

    def _replace_dead(self):
        """A worker that died (killed, out of memory) leaves its run RUNNING with a dead pid:
        reap it now, so it ends KILLED, and start a new worker so the sweep goes on.

        A worker that reported its run and then exited (as one does after a stop) left that
        report in its pipe, read first: the run's status is the one it reported."""
        out = []
        for i, w in enumerate(self.workers):
            if w.process.is_alive():
                continue
            code = w.process.exitcode
            out += self._read(w)
            if w.run is not None:
                p = w.run
                status = self.store.settle(self.store.experiment_id(self.cfg.name), p.key)
                self.echo(
                    f"worker {w.id} died (exit code {code}) during {p.spec.name} seed {p.seed}; "
                    f"the run is {status}; starting a new worker"
                )
                out.append((p, status))
            w.results.close()
            w.tasks.close()
            new = _Worker(self.ctx, self.args, self._next_id)
            with signals.held_back():
                new.start()
                self.workers[i] = new
            self._next_id += 1
        return out

    def close(self, interrupted: bool = False) -> None:
        if interrupted:
            for w in self.workers:
                if w.process.is_alive():
                    os.kill(w.process.pid, signal.SIGTERM)
        else:
            for w in self.workers:
                w.send(None)
        deadline = time.time() + 120
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.time()))
            if w.process.is_alive():  # its run is left RUNNING with a dead pid: the next sweep reaps it
                w.process.kill()
                w.process.join()
        if interrupted:  # runs of workers that died before reporting
            for w in self.workers:
                if w.run is not None:
                    self.store.settle(self.store.experiment_id(self.cfg.name), w.run.key)
