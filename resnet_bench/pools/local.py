"""``--jobs N``: local worker processes, each with its own TensorFlow.

Each worker trains with the run's thread count (``train.intra_op_threads``): on 2 cores, two
single-threaded runs side by side beat one run on two threads, since the small convolutions
of the CIFAR nets do not scale across threads (docs/performance.md). A worker keeps each network
it has compiled (:func:`resnet_bench.train.train_run` reuses it), so the pool gives a free
worker a run of a network it already holds when there is one.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time

from .. import signals
from ..errors import Terminated
from ..scheduler import SweepContext
from ..schema import KILLED


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


class _Link:
    """A worker's side of its pipe to the sweep: run lines and statuses, each sent whole under
    a lock (any thread of a run may print), and nothing once the sweep is gone."""

    def __init__(self, results, orphaned: threading.Event):
        self.results, self.orphaned = results, orphaned
        self.sending = threading.Lock()

    def send(self, kind: str, text: str) -> None:
        if self.orphaned.is_set():  # nobody to tell
            return
        with self.sending:
            try:
                self.results.send((kind, text))
            except OSError:  # the sweep is gone; the watchdog ends this worker
                pass

    def echo(self, text: str) -> None:
        self.send("log", text)


def _worker_main(ctx: SweepContext, tasks, results, parent_pid: int) -> None:
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
    signals.install(signals.on_stop_once)
    orphaned = threading.Event()
    link = _Link(results, orphaned)
    ctx = dataclasses.replace(ctx, echo=link.echo)
    try:
        signals.let_through()  # held back while the pool started this process
        _watch_parent(parent_pid, orphaned)
        ctx.task.prepare(ctx.cfg)
        while (work := _next_work(tasks)) is not None:
            spec, seed, label = work
            link.send("done", ctx.task.run(ctx, spec, seed, label=label))
        os._exit(0)  # skip interpreter teardown: TensorFlow's threads can stall it
    except BaseException as e:
        if not (signals.requested() or isinstance(e, KeyboardInterrupt | Terminated)):
            raise
        link.send("done", KILLED)  # the pool ignores it when no run was in flight
        os._exit(130)


def _next_work(tasks):
    """The next (spec, seed, label) from the sweep; None when told to stop or when it is gone."""
    try:
        return tasks.recv()
    except (EOFError, OSError):
        return None


class _Worker:
    def __init__(self, mp_ctx, ctx: SweepContext, worker_id: int):
        self.id = worker_id
        receiver, self.tasks = mp_ctx.Pipe(duplex=False)
        self.results, sender = mp_ctx.Pipe(duplex=False)
        self.process = mp_ctx.Process(
            target=_worker_main,
            args=(ctx, receiver, sender, os.getpid()),
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

    def __init__(self, ctx: SweepContext, jobs: int, store):
        """``store``: the sweep's :class:`~resnet_bench.tracking.Store` (or a stand-in), which
        settles the run of a worker that died."""
        self.mp = mp.get_context("spawn")  # TensorFlow is not fork-safe
        self.ctx, self.jobs, self.echo = ctx, jobs, ctx.echo
        # The workers get the context without the sweep's echo, which need not pickle; each
        # sends its lines back through its pipe instead.
        self._shipped = dataclasses.replace(ctx, echo=print)
        self.store = store
        self.workers: list[_Worker] = []
        self._next_id = jobs + 1

    def _start_workers(self) -> None:
        workers = [_Worker(self.mp, self._shipped, i) for i in range(1, self.jobs + 1)]
        # multiprocessing starts its resource tracker with the first process, and unblocks
        # SIGINT and SIGTERM when it has (SIG_UNBLOCK, not the mask it found): started inside
        # held_back, it would let the workers boot with the stop signals open, and a Ctrl-C
        # then kills a booting worker outright instead of through its handler.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        with signals.held_back():
            for w in workers:
                w.start()
                self.workers.append(w)
        threads = self.ctx.cfg.train.intra_op_threads or "default"
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
                status = self.store.settle(self.store.experiment_id(self.ctx.cfg.name), p.key)
                self.echo(
                    f"worker {w.id} died (exit code {code}) during {p.spec.name} seed {p.seed}; "
                    f"the run is {status}; starting a new worker"
                )
                out.append((p, status))
            w.results.close()
            w.tasks.close()
            new = _Worker(self.mp, self._shipped, self._next_id)
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
                    self.store.settle(self.store.experiment_id(self.ctx.cfg.name), w.run.key)
