"""The sweep loop and its pools, driven by fake runs: no TensorFlow, no store, no sleeps."""

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from resnet_bench.driver import PlannedRun
from resnet_bench.errors import Terminated
from resnet_bench.pools.inprocess import InProcess
from resnet_bench.pools.local import LocalPool, choose
from resnet_bench.scheduler import Progress, SweepContext, schedule
from resnet_bench.schema import FAILED, FINISHED, KILLED
from resnet_bench.spec import ModelSpec

from . import fake_runs
from .helpers import ROOT, started, still_running

CFG = SimpleNamespace(name="fake", train=SimpleNamespace(intra_op_threads=1))
FAKE = fake_runs.Fake()


def sweep(echo=print, task=FAKE) -> SweepContext:
    return SweepContext(CFG, "uri", task, echo=echo)


def planned(*pairs) -> list[PlannedRun]:
    """PlannedRuns of CIFAR-style nets: (depth, seed) pairs."""
    return [
        PlannedRun(ModelSpec(depth, family="cifar"), seed, f"key-{depth}-{seed}", "pending") for depth, seed in pairs
    ]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_counts_runs_and_prices_the_rest_by_depth():
    todo = planned((56, 0), (20, 0), (20, 1))
    lines, clock = [], Clock()
    progress = Progress(todo, lines.append, clock)
    assert [progress.label(p) for p in todo] == ["[1/3]", "[2/3]", "[3/3]"]
    clock.now += 56 * 6  # 6 s per unit of depth
    progress.finished(todo[0], FINISHED)
    clock.now += 20 * 6
    progress.finished(todo[1], FAILED)
    clock.now += 20 * 6
    progress.finished(todo[2], FINISHED)
    assert lines == [
        "[sweep 1/3 done] resnet56 seed 0: FINISHED (5.6 min elapsed, ETA 4.0 min)",  # 40 depth left at 6 s
        "[sweep 2/3 done] resnet20 seed 0: FAILED (7.6 min elapsed, ETA 2.0 min)",
        "[sweep 3/3 done] resnet20 seed 1: FINISHED (9.6 min elapsed)",
    ]


def test_a_free_worker_takes_a_network_it_holds_else_the_deepest_nobody_holds():
    r20, r56, r110 = planned((20, 0), (56, 0), (110, 0))
    assert choose({r20.spec}, set(), [r56, r20, r110]) is r20  # no new trace
    assert choose(set(), {r110.spec}, [r20, r56, r110]) is r56  # r110's network is another worker's
    assert choose(set(), {r20.spec, r56.spec, r110.spec}, [r20, r56]) is r56  # all held: the deepest


def test_in_process_sweep_runs_everything_in_order_and_prepares_once(monkeypatch):
    monkeypatch.setattr(fake_runs, "PREPARED", 0)
    lines = []
    todo = planned((20, 0), (20, 150), (56, 1))
    pool = InProcess(sweep(lines.append))
    assert schedule(pool, todo, lines.append) == [FINISHED, FAILED, FINISHED]
    assert [line for line in lines if line.startswith("[sweep")][-1].startswith("[sweep 3/3 done] resnet56 seed 1")
    assert "[1/3] resnet20 seed 0: started" in lines
    assert fake_runs.PREPARED == 1


class Interrupting:
    """A pool whose second wait is interrupted, as Ctrl-C would do mid-sweep."""

    def __init__(self, error):
        self.error, self.waits, self.closed, self.running = error, 0, None, []

    def start_next(self, pending, label):
        if self.running:
            return None
        self.running.append(pending[0])
        return pending[0]

    def wait(self):
        self.waits += 1
        if self.waits == 2:
            raise self.error
        return [(self.running.pop(), FINISHED)]

    def busy(self):
        return bool(self.running)

    def close(self, interrupted=False):
        self.closed = interrupted


@pytest.mark.parametrize("error", [KeyboardInterrupt(), Terminated()])
def test_an_interrupt_closes_the_pool_as_interrupted_and_propagates(error):
    pool = Interrupting(error)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(type(error)):
        schedule(pool, planned((20, 0), (20, 1), (20, 2)), lambda text: None)
    assert pool.closed is True
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_finished_sweep_closes_its_pool_normally():
    pool = Interrupting(KeyboardInterrupt())
    pool.waits = 10  # never reaches the interrupting wait
    assert schedule(pool, planned((20, 0), (20, 1)), lambda text: None) == [FINISHED, FINISHED]
    assert pool.closed is False


class FakeStore:
    """What LocalPool asks the store: settle a run whose worker died."""

    def __init__(self):
        self.settled = []

    def experiment_id(self, name):
        return "exp"

    def settle(self, exp_id, key):
        self.settled.append(key)
        return KILLED


def test_local_workers_run_a_sweep_and_a_dead_worker_is_replaced():
    lines, store = [], FakeStore()
    todo = planned((20, 0), (20, 250), (56, 1), (56, 120))
    pool = LocalPool(sweep(lines.append), 2, store)
    finished = []
    progress = Progress(todo, lines.append)
    original = progress.finished
    progress.finished = lambda p, status: (finished.append((p.key, status)), original(p, status))
    schedule(pool, todo, lines.append, progress)
    assert sorted(finished) == sorted(
        [("key-20-0", FINISHED), ("key-20-250", KILLED), ("key-56-1", FINISHED), ("key-56-120", FAILED)]
    )
    assert store.settled == ["key-20-250"]  # the dead worker's run was settled with the store
    assert any("died (exit code 9) during resnet20 seed 250" in line for line in lines)
    for seed in (0, 1, 120):  # workers' lines reach the sweep (a worker killed outright may lose its last)
        assert any(f"seed {seed}: fake run in pid" in line for line in lines), seed
    assert not any(w.process.is_alive() for w in pool.workers)


def test_every_worker_prepares_once_before_its_runs():
    lines = []
    pool = LocalPool(sweep(lines.append, fake_runs.ReportsPrepared()), 2, FakeStore())
    schedule(pool, planned((20, 0), (20, 1), (20, 2)), lines.append)
    assert [line for line in lines if line.startswith("prepared")] == ["prepared 1 time(s)"] * 3


def test_closing_on_an_interrupt_ends_the_runs_in_flight_and_every_worker():
    lines, store = [], FakeStore()
    todo = planned((20, 300), (56, 301))  # both run until interrupted
    pool = LocalPool(sweep(lines.append), 2, store)
    pending = list(todo)
    while pending:
        pending.remove(pool.start_next(pending, lambda p: "[x]"))
    while sum("fake run in pid" in line for line in lines) < 2:  # both runs under way
        assert pool.wait() == []
    pool.close(interrupted=True)
    assert not any(w.process.is_alive() for w in pool.workers)
    assert {w.process.exitcode for w in pool.workers} == {130}  # each ended by its own handler
    assert sorted(store.settled) == ["key-20-300", "key-56-301"]


def test_an_interrupt_as_the_workers_start_ends_every_one_of_them(capfd):
    """A Ctrl-C as the pool announces its workers (the sweep's "local worker processes" line):
    schedule holds the pool by then, closes it, and each worker, still booting, ends by its own
    handler without a traceback. (Workers started with the pool, before the loop, were left
    reading start-up data whose semaphores the interrupted sweep had let go.)"""

    def echo(line):
        if "local worker processes" in line:
            raise KeyboardInterrupt

    pool = LocalPool(sweep(echo), 2, FakeStore())
    assert pool.workers == []  # nothing runs before schedule holds the pool
    with pytest.raises(KeyboardInterrupt):
        schedule(pool, planned((20, 0)), echo)
    assert len(pool.workers) == 2 and not any(w.process.is_alive() for w in pool.workers)
    assert {w.process.exitcode for w in pool.workers} == {130}
    assert "Traceback" not in capfd.readouterr().err


def test_a_stop_that_surfaces_as_another_exception_ends_the_worker_and_its_run_killed(capfd):
    """A SIGTERM landing inside TensorFlow came out as a SystemError: the run must still end
    KILLED, quietly, and the worker must exit rather than wait for more work."""
    pool = LocalPool(sweep(lambda line: None), 1, FakeStore())
    (p,) = todo = planned((20, 400))
    lines = []
    pool.echo = lines.append
    assert pool.start_next(list(todo), lambda p: "[x]") is p
    (worker,) = pool.workers
    done = []
    deadline = time.time() + 30
    while not done and time.time() < deadline:
        done = pool.wait()
    assert done == [(p, KILLED)]
    worker.process.join(30)
    assert worker.process.exitcode == 130
    # Its report is what counts, even when the pool found the process gone before reading it.
    assert not any("died" in line for line in lines), lines
    pool.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_worker_that_reported_its_run_and_exited_is_taken_at_its_word():
    """The worker's last report and its exit can both happen between two looks of the pool:
    the run's status is the one reported (FINISHED here), not a death to settle."""
    store = FakeStore()
    lines = []
    pool = LocalPool(sweep(lines.append), 1, store)
    (p,) = todo = planned((20, 0))
    assert pool.start_next(list(todo), lambda p: "[x]") is p
    worker = pool.workers[0]
    worker.send(None)  # told to stop after its run: it reports the run, then exits
    worker.process.join(60)
    assert worker.process.exitcode == 0
    assert pool._replace_dead() == [(p, FINISHED)]  # found dead before its pipe was read
    assert store.settled == [] and not any("died" in line for line in lines), lines
    pool.close()


def test_workers_of_a_sweep_killed_outright_end_themselves_quietly():
    """kill -9 (the OOM killer, a batch system's limit) gives a sweep no chance to stop its
    workers: each notices its parent is gone within a second and ends like a SIGTERM would,
    with nothing on the terminal (no traceback, no leaked-semaphore warnings)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_runs"], cwd=ROOT, stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    workers = {pid: started(pid) for pid in map(int, proc.stdout.readline().split())}
    assert len(workers) == 2 and len(still_running(workers)) == 2
    proc.kill()
    proc.wait()
    deadline = time.time() + 30
    while still_running(workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not still_running(workers)
    err = proc.stderr.read()  # at its end once every process that shared it has exited
    assert "Traceback" not in err and "leaked" not in err, err


def test_a_stop_signal_that_lands_on_another_thread_waits_for_the_held_back_block_to_end():
    """The block's mask is its own thread's; a Ctrl-C the kernel gives another thread (MLflow
    has some) must wait as well, not raise in the middle of starting a worker."""
    import threading

    from resnet_bench import signals

    waiting = threading.Event()
    other = threading.Thread(target=waiting.wait, daemon=True)
    other.start()  # started before the block: its own mask lets the signal in
    got_through = []
    try:
        with signals.raising(), pytest.raises(KeyboardInterrupt):
            with signals.held_back():
                signal.pthread_kill(other.ident, signal.SIGINT)
                for _ in range(200):  # bytecodes and sleeps: where the handler would raise
                    time.sleep(0.001)
                got_through.append(True)
    finally:
        waiting.set()
        signals.forget()
    assert got_through == [True]
