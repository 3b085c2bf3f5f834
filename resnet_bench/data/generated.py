"""The generated set as a data source: generated once per parameter set, then read from the
data cache (:mod:`.cache`) by every run and process. :mod:`.synthetic` draws the images."""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from .. import inputs
from ..errors import UserError
from . import synthetic
from .arrays import Arrays
from .cache import cache_dir, writing_cache

log = logging.getLogger(__name__)


def load_synthetic(cfg) -> Arrays:
    """Generate (or read from the cache) the train and test splits of the generated set."""
    params = (
        synthetic.GENERATOR_VERSION,
        cfg.image_size,
        cfg.classes,
        cfg.train_size,
        cfg.test_size,
        cfg.generator_seed,
        cfg.noise,
        cfg.clutter,
    )
    key = hashlib.sha256(repr(params).encode()).hexdigest()[:16]
    path = cache_dir() / f"synthetic-{key}.npz"
    x = y = None
    if path.is_file():
        try:
            with inputs.reading("cached data set", path), np.load(path, allow_pickle=False) as f:
                x, y = f["x"], f["y"]
        except UserError as e:  # a cache damaged outside our atomic write (a full disk, a copy): rebuild it
            log.warning("%s; generating it again", e)
    if x is None:
        x, y = synthetic.generate(
            cfg.train_size + cfg.test_size,
            cfg.image_size,
            cfg.classes,
            cfg.generator_seed,
            cfg.noise,
            cfg.clutter,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        with writing_cache(tmp, f"the generated data set ({(x.nbytes + y.nbytes) / 1e6:,.0f} MB)"):
            np.savez(tmp, x=x, y=y)
        tmp.replace(path)  # atomic, so concurrent runs never read half a file
    n = cfg.train_size
    return Arrays(x[:n], y[:n], x[n:], y[n:], synthetic.class_names(cfg.classes), "synthetic", [])
