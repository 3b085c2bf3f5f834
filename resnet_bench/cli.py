"""``resnet-bench``: dispatch to a command (:mod:`resnet_bench.commands`), turn user mistakes
into exit code 2, interrupts into one line, and anything else into a bug report hint.

TensorFlow reads its environment once, at import, so :func:`resnet_bench.quiet.tensorflow_env`
sets it here, where the process starts, before any module that imports TensorFlow.
``--no-onednn`` or an explicit ``TF_ENABLE_ONEDNN_OPTS=0`` turns oneDNN's kernels off.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback

from . import inputs, quiet, signals
from .commands import analyse, config, data, gpu_check, models, perf, report, run, ui
from .errors import Terminated, UserError

COMMANDS = (run, analyse, report, ui, config, models, data, perf, gpu_check)  # in the order --help lists them

# Commands that need TensorFlow from the start load it first, quietly (see quiet.py); the
# others load it, if at all, once their input has been checked, so a mistake is told at once.
TENSORFLOW_COMMANDS = {c.NAME for c in COMMANDS if c.LOADS_TENSORFLOW}


def _setup_env(argv: list[str]) -> None:
    quiet.tensorflow_env(onednn=False if "--no-onednn" in argv else None)
    # The store's calls wait out an outage themselves, quietly and for one configurable time
    # ($RESNET_BENCH_TRACKING_PATIENCE, tracking.patiently); MLflow's own HTTP retries would add
    # minutes of backoff and a warning per attempt on top.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def build_parser() -> argparse.ArgumentParser:
    p = inputs.ArgumentParser(prog="resnet-bench", description="Do shortcut connections let deeper nets train better?")
    p.add_argument("--no-onednn", action="store_true", help="turn TensorFlow's oneDNN CPU kernels off")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


BUG_HINT = (
    "resnet-bench: the error above is a bug, not a problem with your input; rerun with -v for TensorFlow's "
    "and MLflow's logs too, and report it with the traceback and the command (README, 'Reporting a bug')"
)


def _check_environment(args) -> None:
    """Inputs that come from the environment or name an output, checked before any work.

    (``$RESNET_BENCH_CACHE`` is checked where the cache is used, ``data.cache.cache_dir``.)
    """
    inputs.env_float("RESNET_BENCH_STALE_SECONDS", 0.0)
    inputs.env_float("RESNET_BENCH_TRACKING_PATIENCE", 0.0)
    if args.command in ("perf", "gpu-check") and args.out:
        inputs.output_path(args.out, "--out")


# What a stop leaves behind, as a command says it (its STOPPED), by default what a sweep does.
_STOPPED = {c.NAME: getattr(c, "STOPPED", run.STOPPED) for c in COMMANDS}


def _stopped(signum: int, command: str | None = None) -> int:
    """The runs are ended and only the one line is left to print: a second SIGINT or SIGTERM
    now (an impatient Ctrl-C, a supervisor's follow-up) must not turn exit 130/143 into a
    traceback or a death by signal. (``main`` restores the caller's handlers afterwards;
    ``__main__`` exits with them ignored.)"""
    signals.ignore()
    left = _STOPPED.get(command, run.STOPPED)
    left = left() if callable(left) else left
    if signum == signal.SIGINT:
        print(f"interrupted: {left}; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"terminated: {left}; run again to resume", file=sys.stderr)
    return 143


def main(argv: list[str] | None = None) -> int:
    """The command line; a SIGTERM anywhere in it is the one 'terminated' line and exit 143,
    a SIGINT the one 'interrupted' line and exit 130.

    SIGINT is taken back from the start: a shell starts background jobs with it ignored, and
    Python keeps that, so a `kill -INT` to a sweep started from a script (or a test) before its
    runs began would go unheard, and the sweep would run on."""
    signals.forget()
    with signals.raising():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = None
    try:
        _setup_env(argv)
        args = build_parser().parse_args(argv)
        command = args.command
        quiet.set_verbose(args.verbose)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        for noisy in ("mlflow", "alembic", "absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
        _check_environment(args)
        if args.command in TENSORFLOW_COMMANDS:
            quiet.load_tensorflow()
        return args.command_main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _stopped(signal.SIGINT, command)
    except Terminated:
        return _stopped(signal.SIGTERM, command)
    except Exception:
        if signals.requested():  # a stop that surfaced as another exception (inside TensorFlow)
            return _stopped(signals.requested(), command)
        # a bug: keep the whole traceback, then say what to do with it
        traceback.print_exc()
        print(BUG_HINT, file=sys.stderr)
        return 1


def program() -> int:
    """The ``resnet-bench`` program (console script and ``python -m``): :func:`main`, then the
    exit with SIGINT and SIGTERM ignored. Once main has returned, the code it returned is the
    answer; a signal in the last moments of interpreter shutdown, when Python has put the
    default handlers back, would otherwise end the process by that signal instead, after its
    'interrupted' line was already printed."""
    code = main()
    signals.ignore()
    return code


if __name__ == "__main__":
    sys.exit(program())
