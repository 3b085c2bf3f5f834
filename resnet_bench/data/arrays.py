"""Decoded data sets as arrays: what every source yields and every pipeline reads.

Kept apart from :mod:`.pipeline` (which needs TensorFlow) so that a process that only loads
and checks data, such as the parent of a ``--jobs N`` sweep whose workers train, never
imports TensorFlow: that import alone took 10.5 s on the 2-core machine the suite runs on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# Decoded arrays up to this size stay in memory as one constant; larger ones are read from a
# memory-mapped file batch by batch (see folders._decode_all).
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
    digest: str = ""  # the content hash, when the source knows it (a decoded store: computed once)
    store: str = ""  # the decoded store the arrays are read from (photo folders)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])


def resize_array(x: np.ndarray, size: int) -> np.ndarray:
    """Images ``x`` (N x H x W x 3, uint8) at ``size`` x ``size``, bilinear; ``x`` itself when
    they are that size already."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in x])


def digest(splits) -> str:
    """SHA-256 (16 hex digits) of arrays (x_train, y_train, x_test, y_test), their shapes and
    bytes, read in slices of rows: a memory-mapped data set is hashed without a copy of it."""
    h = hashlib.sha256()
    for a in splits:
        h.update(str(a.shape).encode())
        rows = max(1, (64 << 20) // max(1, a[:1].nbytes))  # about 64 MB at a time
        for lo in range(0, len(a), rows):
            h.update(np.ascontiguousarray(a[lo : lo + rows]).tobytes())
    return h.hexdigest()[:16]
