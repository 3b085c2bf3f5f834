"""The stop signals, SIGINT and SIGTERM: what they raise, what they leave behind, and when
they are held back.

A stop signal raises in the main thread (KeyboardInterrupt for SIGINT, :class:`Terminated`
for SIGTERM), so the run in flight ends KILLED with its epochs kept. When the signal lands
inside a C extension (a TensorFlow call, a probe), the extension may turn the exception it
sees into another one on the way out (a ``SystemError`` from CPython's list code, say). So
every handler here also records that a stop was asked for: whatever exception then ends a
run, the run was cut short by the stop and ends KILLED, never FAILED
(:func:`resnet_bench.lease.ending` takes :func:`requested`).
"""

from __future__ import annotations

import contextlib
import signal
import threading

from .errors import Terminated

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_received: list[int] = []  # the stop signals this process has received, in order


def requested() -> int | None:
    """The first stop signal this process received (None: none)."""
    return _received[0] if _received else None


def forget() -> None:
    """Clear what :func:`requested` remembers (a process that goes on after a handled stop)."""
    _received.clear()


def _raise(signum: int) -> None:
    _received.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def on_stop(signum, frame) -> None:
    """Raise the stop as an exception (SIGINT: KeyboardInterrupt, SIGTERM: Terminated)."""
    _raise(signum)


def on_stop_once(signum, frame) -> None:
    """As :func:`on_stop`, then ignore further stop signals, so that the ending the first one
    started (a KILLED status written, one line sent) is not cut short by a second."""
    ignore()
    _raise(signum)


def install(handler) -> None:
    """``handler`` for both stop signals from now on (a worker process's own policy)."""
    for s in STOP_SIGNALS:
        signal.signal(s, handler)


def ignore() -> None:
    install(signal.SIG_IGN)


@contextlib.contextmanager
def raising(handler=on_stop):
    """Stop signals raise within the block (a shell starts background jobs with SIGINT
    ignored, and Python keeps that: a sweep must hear it anyway); the caller's handlers after."""
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def held_back():
    """SIGINT and SIGTERM held back within the block, delivered as it ends.

    The mask survives spawn's exec, so a worker process started within it keeps a Ctrl-C
    pending until it has its own handlers in place, instead of printing a traceback from the
    middle of an import. In the starting process the pending signal is delivered as the block
    ends, once every worker started in it is in the list its pool ends on an interrupt.

    The mask is this thread's only: once the process has another thread (MLflow's, a
    heartbeat), the kernel hands a stop signal to that one, and Python would still raise it
    here, in the main thread, halfway through starting a worker (which then reads a truncated
    start-up message and dies with a traceback). So within the block the handlers only note
    the signal, and it is raised again, to the handlers the block found, as the block ends."""
    noted: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    handlers = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in STOP_SIGNALS} if main else {}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for s in dict.fromkeys(noted):
            signal.raise_signal(s)


def let_through() -> None:
    """Undo an inherited :func:`held_back` mask (in a worker, once its handlers are set)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
