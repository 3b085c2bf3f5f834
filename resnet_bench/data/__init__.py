"""Everything about data: sources -> uint8 arrays -> seeded tf.data pipelines.

The driver calls :func:`load` once per process and :func:`make_pipelines` once per run; it
logs :func:`describe` with every run. Nothing here knows about models or tracking.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .arrays import Arrays, digest
from .split import holdout

# Each source's loader: (module of this package, function), imported when used.
LOADERS = {"synthetic": ("generated", "load_synthetic"), "folder": ("folders", "load_folder"),
           "cifar10": ("cifar", "load_cifar10"), "arrays": ("files", "load_arrays")}  # fmt: skip


def _loader(source: str):
    import importlib

    module, function = LOADERS[source]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def __getattr__(name: str):
    """The pipeline (and with it TensorFlow) loads on first use, not with the package: the
    config reads the generator's limits (``data.synthetic``), and a sweep's parent loads and
    checks the data for its workers, without TensorFlow."""
    if name in ("Pipelines", "make_pipelines", "steps_per_epoch"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Arrays",
    "Pipelines",
    "load",
    "describe",
    "files_note",
    "make_pipelines",
    "preview",
    "skipped_summary",
    "steps_per_epoch",
]


@functools.lru_cache(maxsize=2)
def load(cfg) -> Arrays:
    """Load a :class:`~resnet_bench.config.DataConfig` (frozen, so it can key the cache).

    Photo folders are therefore decoded once per process, not once per run or epoch. A
    ``validation_size`` > 0 replaces the test split by a seeded hold-out of the training split.
    """
    arrays = _loader(cfg.source)(cfg)
    if cfg.validation_size:
        n = len(arrays.x_train)
        if cfg.validation_size >= n:
            from ..errors import UserError

            raise UserError(f"data.validation_size {cfg.validation_size} is not below the {n} training images")
        train, val = holdout(n, cfg.validation_size, cfg.generator_seed, "validation")
        arrays = Arrays(
            arrays.x_train[train],
            arrays.y_train[train],
            arrays.x_train[val],
            arrays.y_train[val],
            arrays.classes,
            arrays.source,
            arrays.skipped,
            arrays.ignored,
            arrays.files,
        )
    return arrays


def skipped_summary(arrays: Arrays, shown: int = 3) -> str | None:
    """One line on the unreadable images a load skipped: how many, the first few, where the rest are.

    A broken folder of thousands of files would otherwise flood the terminal; ``-v`` prints
    each one as it is skipped.
    """
    if not arrays.skipped:
        return None
    names = ", ".join(arrays.skipped[:shown]) + (", ..." if len(arrays.skipped) > shown else "")
    return (
        f"skipped {len(arrays.skipped)} unreadable image(s): {names} "
        "(each run logs the full list as skipped_files.txt; -v prints every one)"
    )


def files_note(arrays: Arrays) -> str | None:
    """One line naming a train/test pair of array files, so a user sees which test split is used."""
    if len(arrays.files) < 2:
        return None
    train, test = (Path(f).name for f in arrays.files)
    return f"data files: {train} + {test} (training split from the first, test split from the second)"


def content_hash(arrays: Arrays) -> str:
    """SHA-256 (16 hex digits) of the decoded arrays: equal hashes mean equal pixels and labels
    (the source's own when it computed it once: a decoded store)."""
    return arrays.digest or digest((arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test))


@functools.lru_cache(maxsize=4)
def describe(arrays: Arrays) -> dict:
    """Classes, counts per split and class, image size, content hash, skipped/ignored files.

    Cached per loaded data set: a sweep hashes its data once, not once per run. Treat the
    returned dict as read-only.
    """

    def counts(y):
        return {c: int(n) for c, n in zip(arrays.classes, np.bincount(y, minlength=len(arrays.classes)))}

    return {
        "source": arrays.source,
        "classes": list(arrays.classes),
        "counts": {"train": counts(arrays.y_train), "test": counts(arrays.y_test)},
        "image_size": arrays.image_size,
        "hash": content_hash(arrays),
        "skipped": len(arrays.skipped),
        "skipped_files": list(arrays.skipped),
        "ignored": arrays.ignored,
        "files": [Path(f).name for f in arrays.files],
    }


def preview(arrays: Arrays, out, rows: int = 6, cols: int = 8) -> None:
    """Write a PNG grid of the first training images with their class names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(rows * cols, len(arrays.x_train))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(arrays.x_train[i], interpolation="nearest")
            ax.set_title(arrays.classes[arrays.y_train[i]], fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)
