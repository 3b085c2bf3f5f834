"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input (a file, a key, a value): shown as ``error: <message>``, exit code 2."""


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the run in flight ends as KILLED (exit 143)."""


class StoreUnavailable(UserError):
    """The tracking store did not answer for longer than ``$RESNET_BENCH_TRACKING_PATIENCE``."""
