"""The objective a run minimises and the optimiser that does it: SGD or Adam, the learning-rate
schedule with its warm-up, weight decay (decoupled or as an L2 penalty) and label smoothing.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="resnet_bench")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """He et al.'s warm-up: ``factor`` times the rate for the first ``steps`` steps, then ``after``.

    The paper trains ResNet-110 at 0.01 "until the training error is below 80% (about 400
    iterations)" before going back to 0.1, because 0.1 was "slightly too large to start
    converging"; a deep net whose summed residual branches make its first steps unstable is the
    same problem at a smaller scale. A fixed step count rather than an error threshold keeps
    every variant on the same schedule.
    """

    def __init__(self, after, steps: int, factor: float):
        self.after, self.steps, self.factor = after, int(steps), float(factor)

    def __call__(self, step):
        lr = self.after(step) if callable(self.after) else keras.ops.convert_to_tensor(self.after, "float32")
        return keras.ops.where(keras.ops.less(step, self.steps), lr * self.factor, lr)

    def get_config(self):
        after = keras.saving.serialize_keras_object(self.after) if callable(self.after) else self.after
        return {"after": after, "steps": self.steps, "factor": self.factor}


def make_optimizer(t, steps_per_epoch: int):
    lr = t.learning_rate
    if t.lr_schedule == "step":
        values = [t.learning_rate * t.lr_decay**i for i in range(len(t.lr_boundaries) + 1)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(list(t.lr_boundaries), values)
    elif t.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, t.epochs * steps_per_epoch)
    if t.warmup_epochs:
        lr = WarmUp(lr, round(t.warmup_epochs * steps_per_epoch), t.warmup_factor)
    wd = (t.weight_decay or None) if t.weight_decay_mode == "decoupled" else None
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=t.momentum, weight_decay=wd)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {t.optimizer!r}")  # TrainConfig.optimizer admits only these


def add_l2_penalty(model: keras.Model, weight_decay: float) -> int:
    """The paper's weight decay: ``weight_decay / 2 * |w|^2`` of every conv and dense kernel
    joins the training loss, so each kernel's gradient gains ``weight_decay * w``.

    Batch-norm scales and shifts (and biases) are left out: they set the scale of a layer's
    output, not its capacity, and decaying them pulls BN towards zero output (Goyal et al.
    2017 leave them undecayed too). Returns how many kernels were regularised.
    """
    l2 = keras.regularizers.L2(weight_decay / 2)
    n = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            layer.kernel.regularizer = l2
            n += 1
    return n


def make_loss(t, num_classes: int):
    """Loss and accuracy metric for the head in use (one sigmoid unit or softmax)."""
    if t.loss == "binary":
        return keras.losses.BinaryCrossentropy(label_smoothing=t.label_smoothing), keras.metrics.BinaryAccuracy(
            name="accuracy"
        )
    metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if not t.label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(), metric

    def smoothed(y_true, y_pred):
        onehot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes)
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=t.label_smoothing)

    return smoothed, metric
