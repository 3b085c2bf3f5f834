"""Keep TensorFlow's and MLflow's start-up chatter off the terminal unless ``-v`` is given.

TensorFlow's C++ runtime writes absl INFO lines (oneDNN, CUDA stubs, CPU features) straight
to file descriptor 2 when it loads and when it first looks for devices; on TF 2.21 neither
``TF_CPP_MIN_LOG_LEVEL`` nor ``ABSL_MIN_LOG_LEVEL`` stops them. So the descriptor itself is
pointed at /dev/null around those two moments only, and restored right after: a user's
error, a warning during training or a traceback still shows. MLflow's INFO logging (such as
"Creating initial MLflow database tables") is set to warnings through its own variable, which
it reads when it is imported, in this process and in worker processes alike.
"""

from __future__ import annotations

import contextlib
import os
import sys

VERBOSE_ENV = "RESNET_BENCH_VERBOSE"


def tensorflow_env(onednn: bool | None = None) -> None:
    """TensorFlow's environment defaults, for any process that may load it; TensorFlow reads
    them once, at import, so this comes first. oneDNN's CPU kernels are on unless ``onednn``
    is False or the user set ``TF_ENABLE_ONEDNN_OPTS``: they made CIFAR ResNet training
    1.25-1.30x faster on the project's 2-core CPU (docs/performance.md, "Settings tried"). Only
    TensorFlow's warnings and errors are logged (its INFO lines: see below)."""
    if onednn is False:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def set_verbose(verbose: bool) -> None:
    """Record the choice where worker processes see it too, and quiet MLflow unless verbose."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


@contextlib.contextmanager
def stderr_silenced(enabled: bool = True):
    """Point file descriptor 2 at /dev/null for the block (C++ writers included)."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def load_tensorflow():
    """Import TensorFlow and let it look for devices, silently unless verbose."""
    with stderr_silenced(not verbose()):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    return tf
