"""Where and how a run computes: CPU or GPU, mixed precision, XLA, thread pools, steps per call.

Each setting resolves ``auto`` against the machine once per run, and the resolved values are
logged with the run (``*_resolved`` params), so a run's record says what it really did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSettings:
    """Settings chosen per device kind when the experiment says ``auto``."""

    device: str  # "gpu" or "cpu"
    mixed_precision: str  # "off" | "float16" | "bfloat16"
    jit_compile: bool


def resolve_device_settings(train_cfg) -> DeviceSettings:
    """Fastest measured defaults per device kind (see docs/performance.md), overridable by the file.

    On CPU, mixed precision gained nothing and XLA was slower (width 16) or no faster (width
    4) after a ~20 s compile, so both stay off; on GPU mixed precision is on, and
    XLA too when ``train.deterministic`` is false: Keras compiles without XLA while TensorFlow's
    op determinism is on (``keras.src.trainers.trainer.model_supports_jit``), so a deterministic
    run resolves to no XLA and says so, rather than asking for XLA and silently not getting it.
    """
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    mp = train_cfg.mixed_precision
    if mp == "auto":
        mp = "float16" if gpu else "off"
    jit = train_cfg.jit_compile
    jit = gpu and not train_cfg.deterministic if jit == "auto" else jit == "on"
    return DeviceSettings("gpu" if gpu else "cpu", mp, jit)


_THREADS_WARNED: set[int] = set()


def configure_threads(intra_op_threads: int) -> None:
    """Size TensorFlow's intra-op pool (0 keeps its default of one thread per core).

    For the small convolutions of the CIFAR-style nets at 16-32 pixels, one intra-op thread
    (with the inter-op pool still running independent ops side by side) trained 1.2-1.4x
    faster on a 2-core CPU; large ones gained nothing (docs/performance.md). TensorFlow fixes the
    pool when it starts, so each process that trains calls this first (:func:`prepare_process`).
    """
    import tensorflow as tf

    if not intra_op_threads or tf.config.threading.get_intra_op_parallelism_threads() == intra_op_threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    except RuntimeError:
        if intra_op_threads not in _THREADS_WARNED:  # once per process, not once per run
            _THREADS_WARNED.add(intra_op_threads)
            log.warning("TensorFlow already started: train.intra_op_threads=%d not applied", intra_op_threads)


def make_strategy(name: str):
    """``none`` -> default strategy; ``mirrored`` -> all visible GPUs (or the CPU);
    ``multi_worker`` -> workers described by ``TF_CONFIG``."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def resolve_steps_per_execution(requested: int, steps_per_epoch: int) -> int:
    """The largest divisor of ``steps_per_epoch`` not above ``requested``.

    Keras runs whole calls of k steps and the training stream never ends, so a k that does not
    divide the epoch would silently train up to k - 1 extra steps in every epoch.
    """
    return max(k for k in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % k == 0)


def prepare_process(cfg) -> None:
    """Once per process that trains runs, before the first: TensorFlow loaded (quietly) and its
    thread pools sized, which TensorFlow allows only before its first op.

    TensorFlow loads before any module that imports it at the top (:mod:`.train`), which would load it unsilenced: a
    worker of a ``--jobs N`` sweep printed TensorFlow's start-up lines that way, twice each."""
    from .quiet import load_tensorflow

    load_tensorflow()
    from .device import configure_threads

    configure_threads(cfg.train.intra_op_threads)
