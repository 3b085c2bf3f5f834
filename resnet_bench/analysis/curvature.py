"""Curvature: the Hessian's dominant eigenvalue by power iteration on Hessian-vector products.

The sharpest direction of the training loss, measured without forming the Hessian (a net of
n weights has an n x n one): power iteration needs only products ``H v``, each one double
backpropagation (Pearlmutter 1994). BN runs in inference mode on a fixed batch, so the loss is
a fixed function of the weights. Power iteration finds the eigenvalue of largest magnitude;
it stops when two successive estimates differ by less than ``tolerance`` relative to the
latest, or after ``max_iterations`` (the result says which).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .landscape import data_loss


def power_iteration(hvp, size: int, seed: int, tolerance: float = 1e-3, max_iterations: int = 100) -> dict:
    """Dominant eigenvalue of the symmetric operator ``hvp`` (flat float vector -> same).

    Returns ``{"eigenvalue", "iterations", "converged"}``.
    """
    v = np.random.default_rng([seed, 7]).standard_normal(size)
    v /= np.linalg.norm(v)
    estimate = None
    for i in range(1, max_iterations + 1):
        hv = np.asarray(hvp(v), np.float64)
        new = float(v @ hv)
        norm = np.linalg.norm(hv)
        if norm == 0:
            return {"eigenvalue": 0.0, "iterations": i, "converged": True}
        v = hv / norm
        if estimate is not None and abs(new - estimate) <= tolerance * abs(new):
            return {"eigenvalue": new, "iterations": i, "converged": True}
        estimate = new
    return {"eigenvalue": estimate, "iterations": max_iterations, "converged": False}


def hessian_vector_product(model: keras.Model, x: np.ndarray, y: np.ndarray):
    """``v -> H v`` for the mean data loss of ``model`` on (x, y), BN in inference mode, over
    every trainable weight, as flat float64 numpy vectors."""
    params = model.trainable_variables
    shapes = [tuple(p.shape) for p in params]
    sizes = [int(np.prod(s)) for s in shapes]
    loss_of, labels = data_loss(model)
    xb, yb = tf.constant(x), labels(tf.constant(y))

    @tf.function
    def product(v):
        parts = [tf.reshape(part, shape) for part, shape in zip(tf.split(v, sizes), shapes)]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_of(yb, model(xb, training=False))
            grads = inner.gradient(loss, params)
            dot = tf.add_n([tf.reduce_sum(g * p) for g, p in zip(grads, parts)])
        out = outer.gradient(dot, params)
        return tf.concat([tf.zeros(n) if g is None else tf.reshape(g, [-1]) for g, n in zip(out, sizes)], 0)

    def hvp(v: np.ndarray) -> np.ndarray:
        return product(tf.constant(v, tf.float32)).numpy().astype(np.float64)

    return hvp, sum(sizes)
