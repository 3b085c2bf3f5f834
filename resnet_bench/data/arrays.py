"""Decoded data sets as arrays: what every source yields and every pipeline reads.

Kept apart from :mod:`.pipeline` (which needs TensorFlow) so that a process that only loads
and checks data, such as the parent of a ``--jobs N`` sweep whose workers train, never
imports TensorFlow: that import alone took 10.5 s on the 2-core machine the suite runs on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Decoded arrays up to this size stay in memory as one constant; larger ones are read from a
# memory-mapped file batch by batch (see sources.decode_folder).
IN_MEMORY_BYTES = 2 * 1024**3


@dataclass(eq=False)  # compared and hashed by identity, so describe() can be cached per load
class Arrays:
    """Decoded images (uint8, N x H x W x 3) with labels, plus class names and provenance."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str
    skipped: list[str]
    ignored: int = 0
    files: tuple[str, ...] = ()  # the array files read (a train/test pair is two)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])
