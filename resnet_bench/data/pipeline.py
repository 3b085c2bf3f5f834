"""Arrays in memory (or memory-mapped on disk) -> seeded ``tf.data`` pipelines.

The pipeline shuffles *indices*, not images: ``permutation(seed, pass) for each pass -> batch
-> gather -> normalise/augment -> prefetch``. Gathering a whole batch at once keeps the
per-image Python and tf.data overhead out of the step, and the index order depends only on the
repeat's seed, so every model variant of a repeat sees the same batches in the same order
(a paired comparison). The training stream repeats forever and is cut into epochs of
``n // batch`` fixed-size batches (``drop_remainder``), so the train step is traced once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .arrays import IN_MEMORY_BYTES, Arrays


def _options() -> tf.data.Options:
    """Fixed parallelism, so tf.data's autotuner has nothing to tune; left on, its background
    thread made each finished run wait seconds for the training iterator to be released."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


_OPTIONS = _options()


@dataclass
class Pipelines:
    train: tf.data.Dataset
    test: tf.data.Dataset
    probe: tuple[np.ndarray, np.ndarray]  # fixed batch for gradient-norm diagnostics
    steps_per_epoch: int
    mean: np.ndarray  # the per-channel normalisation every batch gets (channel_stats)
    std: np.ndarray


def channel_stats(x: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std of the training split (``standardize``), or 0/255 (``unit``)."""
    if normalization == "unit":
        return np.zeros(3, np.float32), np.full(3, 255.0, np.float32)
    flat = x.reshape(-1, x.shape[-1])
    step = max(1, flat.shape[0] // 1_000_000)  # a million pixels estimate the stats well
    sample = flat[::step].astype(np.float64)
    return sample.mean(0).astype(np.float32), (sample.std(0) + 1e-3).astype(np.float32)


def _gather_fn(x: np.ndarray):
    """Batch gather from a constant (small arrays) or from a memory map (large ones)."""
    if x.nbytes <= IN_MEMORY_BYTES and not isinstance(x, np.memmap):
        const = tf.constant(x)
        return lambda idx: tf.gather(const, idx)
    shape = (None,) + x.shape[1:]

    def gather(idx):
        out = tf.numpy_function(lambda i: x[np.sort(i)][np.argsort(np.argsort(i))], [idx], tf.uint8)
        return tf.ensure_shape(out, shape)

    return gather


def _augment(images, seed):
    """He et al.'s CIFAR recipe on a batch: pad 4, random crop back, random horizontal flip."""
    b, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]])
    offsets = tf.random.stateless_uniform([b, 2], seed=seed, maxval=9, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(h)[None]
    cols = offsets[:, 1:] + tf.range(w)[None]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform([b], seed=seed[::-1], maxval=2, dtype=tf.int32) > 0
    return tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per pass over the training split (the last partial batch is dropped)."""
    return n_train // batch_size


def make_pipelines(
    arrays: Arrays,
    batch_size: int,
    seed: int,
    *,
    normalization: str = "standardize",
    augment: bool = False,
    binary: bool = False,
    probe_size: int = 64,
) -> Pipelines:
    """Train and test ``tf.data`` pipelines for one repeat.

    Args:
        arrays: decoded data.
        batch_size: global batch size.
        seed: the repeat's seed; fixes shuffling and augmentation for every model variant.
        normalization: ``standardize`` (train-split channel mean/std) or ``unit`` ([0, 1]).
        augment: apply the pad-crop-flip recipe to training batches.
        binary: labels as float (N, 1) for a single sigmoid unit.
        probe_size: images in the fixed gradient-probe batch (the first of the train split).
    """
    n = len(arrays.x_train)
    if n < batch_size:
        raise ValueError(f"the training split has {n} images, fewer than one batch of {batch_size}")
    mean, std = channel_stats(arrays.x_train, normalization)

    def finish(images, labels):
        x = (tf.cast(images, tf.float32) - mean) / std
        y = tf.cast(labels, tf.float32)[:, None] if binary else labels
        return x, y

    gather_test = _gather_fn(arrays.x_test)
    y_test = tf.constant(arrays.y_test)
    test = (
        tf.data.Dataset.range(len(arrays.x_test))
        .batch(batch_size)
        .map(lambda idx: finish(gather_test(idx), tf.gather(y_test, idx)))
        .prefetch(2)
        .with_options(_OPTIONS)
    )
    k = min(probe_size, n)
    px, py = finish(arrays.x_train[:k], arrays.y_train[:k])
    return Pipelines(
        train=_train_pipeline(arrays, batch_size, seed, augment, finish),
        test=test,
        probe=(np.asarray(px), np.asarray(py)),
        steps_per_epoch=steps_per_epoch(n, batch_size),
        mean=mean,
        std=std,
    )


def _train_pipeline(arrays: Arrays, batch_size: int, seed: int, augment: bool, finish) -> tf.data.Dataset:
    """Endless training batches: each pass over the data in its own seeded order, augmented
    per batch when asked, then ``finish``ed (normalised, labels shaped)."""
    n = len(arrays.x_train)
    gather_x = _gather_fn(arrays.x_train)
    y_train = tf.constant(arrays.y_train)

    def train_batch(step, idx):
        images = gather_x(idx)
        if augment:
            images = _augment(images, tf.stack([tf.constant(seed, tf.int64), step]))
        return finish(images, tf.gather(y_train, idx))

    def epoch_order(epoch):
        # A stateless permutation per (seed, pass over the data): the order is a pure function
        # of the seed, identical however tf.data or a distribution strategy clones the graph
        # (a stateful shuffle op can give another order when a strategy clones the graph).
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch]))
        return tf.data.Dataset.from_tensor_slices(order)

    return (
        tf.data.Dataset.counter()
        .flat_map(epoch_order)
        .batch(batch_size, drop_remainder=True)
        .enumerate()
        .map(train_batch, num_parallel_calls=1, deterministic=True)
        .prefetch(2)
        .with_options(_OPTIONS)
    )
