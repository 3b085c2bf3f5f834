"""Loss landscapes (Li, Xu, Taylor, Studer and Goldstein 2018), along filter-normalised directions.

Li et al. showed that without shortcuts a deep net's loss surface turns chaotic and sharp,
while its residual twin's stays smooth and nearly convex, and that a plot means nothing unless
the random directions are scaled to the weights: a filter-normalised direction rescales each
filter's random direction to that filter's norm, so a step of ``alpha`` moves every filter by
the same fraction of its size whatever the net's scale (BN makes a net invariant to the scale
of the filters before it).

Rules here: every conv and dense kernel is perturbed, each output channel (filter) normalised
on its own; BN's parameters and statistics and any bias stay put; BN runs in inference mode.
Directions are drawn per (seed, direction) from numpy's generator, kernel by kernel in network
order, so a plain net and its residual twin (same kernels, same shapes) share the raw draws
and are compared pairwise, as in training. The loss is the data loss on a fixed, un-augmented
subset of the training split, the first images of it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def kernels(model: keras.Model) -> list:
    """The variables a direction moves: every conv and dense kernel, in network order."""
    return [layer.kernel for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def filter_normalised(weights: list[np.ndarray], seed: int, direction: int) -> list[np.ndarray]:
    """One random direction for ``weights`` (kernels, output channels last), each filter's part
    rescaled to that filter's norm (a zero filter gets a zero direction)."""
    rng = np.random.default_rng([seed, direction])
    out = []
    for w in weights:
        d = rng.standard_normal(w.shape)
        axes = tuple(range(w.ndim - 1))
        wn = np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))
        dn = np.sqrt((d**2).sum(axis=axes, keepdims=True))
        out.append((d * np.divide(wn, dn, out=np.zeros_like(wn), where=dn > 0)).astype(np.float32))
    return out


def data_loss(model: keras.Model):
    """(loss, labels): the data loss of ``model``'s head (one sigmoid unit: binary
    cross-entropy on float labels of shape (N, 1); softmax: sparse categorical) without the
    training's label smoothing or weight penalty, and the labels as it takes them."""
    if model.output_shape[-1] == 1:
        return keras.losses.BinaryCrossentropy(), lambda y: tf.cast(y, tf.float32)[:, None]
    return keras.losses.SparseCategoricalCrossentropy(), lambda y: y


def loss_fn(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 512):
    """A function of no arguments: the mean data loss of ``model`` on (x, y) in inference mode,
    read with the model's current variables."""
    batches = [(tf.constant(x[i : i + batch_size]), tf.constant(y[i : i + batch_size]))
               for i in range(0, len(x), batch_size)]  # fmt: skip
    loss, labels = data_loss(model)
    n = len(x)

    @tf.function
    def total(xb, yb):
        return loss(labels(yb), model(xb, training=False)) * tf.cast(tf.shape(xb)[0], tf.float32)

    def mean_loss() -> float:
        return float(sum(float(total(xb, yb)) for xb, yb in batches) / n)

    return mean_loss


class Surface:
    """The loss of ``model`` at ``w0 + a * d1 (+ b * d2)``: moves the kernels, puts them back.

    ``w0`` is the kernels' values when the surface was built or last :meth:`reset`: one
    surface serves every net loaded into ``model``, so its two compiled calls (moving and
    restoring the kernels, one call each: a resnet56 has 57 kernels, and assigning them one by
    one from Python cost about as much as the loss on 128 images) are traced once per model."""

    def __init__(self, model: keras.Model, loss):
        self.vars = kernels(model)
        self.origin = [tf.Variable(v, trainable=False) for v in self.vars]
        self.loss = loss

        @tf.function
        def place(coefficients, directions):
            for i, (v, w) in enumerate(zip(self.vars, self.origin)):
                v.assign(w + tf.add_n([coefficients[j] * d[i] for j, d in enumerate(directions)]))

        @tf.function
        def restore():
            for v, w in zip(self.vars, self.origin):
                v.assign(w)

        self._place, self._restore = place, restore
        self.reset()

    def reset(self) -> None:
        """Take the kernels' current values as the centre ``w0``."""
        self.w0 = [v.numpy() for v in self.vars]
        for o, w in zip(self.origin, self.w0):
            o.assign(w)

    def direction(self, d: list[np.ndarray]) -> list:
        """``d`` as the tensors :meth:`at` takes (converted once, not at every point)."""
        return [tf.constant(x) for x in d]

    def at(self, steps: list[tuple[float, list]]) -> float:
        coefficients = tf.constant([a for a, _ in steps], tf.float32)
        self._place(coefficients, [list(d) for _, d in steps])
        try:
            return self.loss()
        finally:
            self._restore()


def alphas(points: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, points)


def lines(surface: Surface, seed: int, directions: int, points: int) -> list[list[float]]:
    """Loss along ``directions`` filter-normalised lines through the surface's model's current
    weights, ``points`` each."""
    surface.reset()
    centre = surface.loss()
    out = []
    for k in range(directions):
        d = surface.direction(filter_normalised(surface.w0, seed, k))
        out.append([centre if a == 0 else surface.at([(a, d)]) for a in alphas(points)])
    return out


def contour(surface: Surface, seed: int, points: int) -> list[list[float]]:
    """Loss on a ``points`` x ``points`` grid of the plane of directions 0 and 1 through the
    surface's model's current weights (rows: d1)."""
    surface.reset()
    d1, d2 = (surface.direction(filter_normalised(surface.w0, seed, k)) for k in (0, 1))
    return [[surface.at([(a, d1), (b, d2)]) for b in alphas(points)] for a in alphas(points)]


def sharpness(lines_: list[list[float]], alpha: float) -> float:
    """Mean loss rise at ``|alpha|`` over both signs of every direction (docs/methods.md)."""
    grid = alphas(len(lines_[0]))
    centre = int(np.argmin(np.abs(grid)))
    at = [int(np.argmin(np.abs(grid - s * alpha))) for s in (-1, 1)]
    return float(np.mean([line[i] - line[centre] for line in lines_ for i in at]))


def set_bn_statistics(model: keras.Model, x: np.ndarray) -> None:
    """Give every BN layer the statistics of ``x`` (one batch): what a freshly built net, whose
    stored statistics are still 0 and 1, is to be measured with in inference mode, so that its
    landscape is the one the optimiser starts in (training mode normalises with batch
    statistics)."""
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    try:
        model(tf.constant(x), training=True)
    finally:
        for layer, m in zip(bns, saved):
            layer.momentum = m
