"""What each epoch records: losses, accuracies, step times, throughput, the learning rate, and
per-stage gradient norms on a fixed probe batch, handed to the run's ``on_epoch`` hook.

A diverged loss ends the run here, at the epoch it appears (:class:`DivergedError`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict

import keras
import numpy as np
import tensorflow as tf

from . import schema
from .errors import DivergedError

log = logging.getLogger(__name__)


class GradientProbe:
    """Per-stage gradient L2 norms of the data loss on a fixed batch, in training mode.

    Training-mode BN updates its moving statistics; the probe restores them inside the same
    graph, so it leaves the run's numbers untouched (a test checks identical losses with and
    without it). One compiled call and one device sync per epoch keep its cost small.
    """

    def __init__(self, model: keras.Model, loss_fn, stage_of):
        """``stage_of``: a weight's group from its variable path (:func:`resnet_bench.models.stage_of`)."""
        groups = defaultdict(list)
        for i, v in enumerate(model.trainable_variables):
            groups[stage_of(v.path)].append(i)
        groups = dict(sorted(groups.items()))

        @tf.function
        def norms(x, y):
            saved = [tf.identity(v.value) for v in model.non_trainable_variables]
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            for v, value in zip(model.non_trainable_variables, saved):
                v.assign(value)
            squares = [tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]
            return {
                f"{schema.GRAD_NORM_PREFIX}{name}": tf.sqrt(tf.add_n([squares[i] for i in idx]))
                for name, idx in groups.items()
            }

        self._norms = norms

    def __call__(self, batch) -> dict[str, float]:
        x, y = (tf.constant(a) for a in batch)
        return {k: float(v) for k, v in self._norms(x, y).items()}


class EpochRecorder(keras.callbacks.Callback):
    """Collects per-epoch metrics, stops on divergence, and hands each epoch to ``on_epoch``."""

    def __init__(self, batch_size: int, on_epoch, probe: GradientProbe | None, lr_of):
        super().__init__()
        self.batch_size = batch_size
        self.on_epoch = on_epoch
        self.probe = probe
        self.lr_of = lr_of
        self.history: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.grad_norms = self.probe() if self.probe else {}
        self.steps: list[float] = []
        self.epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.first_step = batch
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # With k steps per compiled call Keras calls these hooks once per call, with the first
        # and last step of the call: each of its k steps is credited with a k-th of its time.
        self.t1 = time.perf_counter()
        k = batch - self.first_step + 1
        self.steps.extend([(self.t1 - self.t0) / k] * k)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now = time.perf_counter()
        steps = np.array(self.steps) * 1000
        train_seconds = self.t1 - self.epoch_start
        row = {
            "epoch": epoch + 1,
            "train_loss": float(logs.get("loss", np.nan)),
            "train_accuracy": float(logs.get("accuracy", np.nan)),
            "val_loss": float(logs.get("val_loss", np.nan)),
            "val_accuracy": float(logs.get("val_accuracy", np.nan)),
            # training + validation; the probe and the logging hook fall outside (perf measures them)
            "epoch_seconds": now - self.epoch_start,
            "step_ms_median": float(np.median(steps)),
            "step_ms_p90": float(np.percentile(steps, 90)),
            "images_per_second": len(steps) * self.batch_size / train_seconds,
            "learning_rate": self.lr_of(),
            **self.grad_norms,
        }
        assert set(schema.EPOCH_METRICS) <= row.keys()  # the one definition of what an epoch logs
        self.history.append(row)
        if self.on_epoch:
            self.on_epoch(row)
        if not math.isfinite(row["train_loss"]):
            raise DivergedError(f"train_loss is {row['train_loss']} at epoch {epoch + 1}")
