"""Array files: ``.npz`` or ``.h5`` with images and labels, alone or as a train/test pair.

The Deep Learning Specialization ships each data set as two files, ``train_X.h5`` with
``train_set_x/y`` and ``test_X.h5`` with ``test_set_x/y``; :func:`pair_test_file` is the one
rule that recognises the pair, for guessing a folder's kind and for reading it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .. import inputs
from ..errors import UserError
from .arrays import Arrays, resize_array
from .split import fraction_of, holdout

ARRAY_SUFFIXES = (".npz", ".h5", ".hdf5")  # files read as arrays (data source "arrays")


def pair_test_file(train: Path) -> Path | None:
    """The test file that goes with ``train`` in the course's pair layout (``train_X.h5``
    beside ``test_X.h5``, or .npz, .hdf5), None when ``train`` is not such a file or has none."""
    if not (train.name.startswith("train_") and train.suffix in ARRAY_SUFFIXES):
        return None
    sibling = train.with_name("test_" + train.name[len("train_") :])
    return sibling if sibling.is_file() else None


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise UserError(f"{where}: expected images shaped (N, H, W[, 1|3|4]), got {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 255):
            raise UserError(f"{where}: float images must lie in [0, 1] or [0, 255]")
        x = x * 255.0 if x.size and np.nanmax(x) <= 1.0 else x
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise UserError(f"{where}: images must be uint8 or float, got {x.dtype}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., :3])


def _as_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if y.size != n:
        raise UserError(f"{where}: {y.size} labels for {n} images")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise UserError(f"{where}: labels must be integers, got {y.dtype}")
    return y.astype(np.int64)


def array_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """Every ``train_X`` / ``test_X`` pair of array files in ``folder`` (the course's layout)."""
    with inputs.reading("folder", folder):
        names = sorted(folder.iterdir())
    return [(f, test) for f in names if (test := pair_test_file(f)) is not None]


def array_files(path: Path, test_path: str = "") -> tuple[Path, Path | None]:
    """The training file and the test file to read for ``data.path``.

    The Deep Learning Specialization ships each data set as two files, ``train_X.h5`` with
    ``train_set_x/y`` and ``test_X.h5`` with ``test_set_x/y``; users hold one of them, or the
    folder. Either file finds its sibling; a folder must hold exactly one pair;
    ``data.test_path`` names the test file outright. Without a test file the training file's
    own test keys, or else a seeded hold-out, give the test split.
    """
    if path.is_dir():
        pairs = array_pairs(path)
        if not pairs:
            raise UserError(f"{path}: no train_X / test_X pair of .h5 or .npz files in this folder")
        if len(pairs) > 1:
            names = ", ".join(f"{a.name} + {b.name}" for a, b in pairs)
            raise UserError(f"{path}: holds {len(pairs)} pairs ({names}); pass one of the files with --data")
        return pairs[0]
    if test_path:
        return path, inputs.existing_path(test_path, "data.test_path", "file")
    if (test := pair_test_file(path)) is not None:
        return path, test
    if path.name.startswith("test_"):  # the test file named: its training file is the pair's other half
        train = path.with_name("train_" + path.name[len("test_") :])
        if pair_test_file(train) == path:
            return train, path
    return path, None


def _read_array_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with inputs.reading("array file", path):
            if not zipfile.is_zipfile(path):
                raise UserError(f"array file {path}: not an .npz archive (no zip header); save it with numpy.savez")
        # numpy refuses object arrays (pickles) with a ValueError: an input error here
        with inputs.reading("array file", path, refused=(ValueError,)), np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with inputs.reading("array file", path), h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    raise UserError(f"{path}: array files must be .npz or .h5")


def _split(data: dict, x_key: str, y_key: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    for k in (x_key, y_key):
        if k not in data:
            raise UserError(f"{path}: no array {k!r} (has: {', '.join(sorted(data))})")
    x = _as_images(data[x_key], f"{path}:{x_key}")
    return x, _as_labels(data[y_key], len(x), f"{path}:{y_key}")


def _class_names(files: list[tuple[Path, dict]]) -> list[str] | None:
    """``list_classes`` of the files that hold it (bytes decoded, numbers as text); the course's
    own loader reads it from the test file, so either file may be the one that has it."""
    found = []
    for path, data in files:
        if "list_classes" in data:
            raw = np.asarray(data["list_classes"]).reshape(-1)
            names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw.tolist()]
            found.append((path, names))
    for path, names in found[1:]:
        if names != found[0][1]:
            raise UserError(
                f"{path}: list_classes ({', '.join(names)}) differs from {found[0][0].name}'s "
                f"({', '.join(found[0][1])})"
            )
    return found[0][1] if found else None


def load_arrays(cfg) -> Arrays:
    """``.npz`` or ``.h5`` with images and labels under ``x_key``/``y_key``, its test split from
    the paired test file (:func:`array_files`), the file's own test keys or a seeded hold-out
    (``holdout_fraction``); class names from ``list_classes`` when a file has them.
    """
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: array file not found")
    train_file, test_file = array_files(path, cfg.test_path)
    data = _read_array_file(train_file)
    x, y = _split(data, cfg.x_key, cfg.y_key, train_file)
    files = [(train_file, data)]
    if test_file is not None:
        test_data = _read_array_file(test_file)
        xt, yt = _split(test_data, cfg.test_x_key, cfg.test_y_key, test_file)
        files.append((test_file, test_data))
        if xt.shape[1:] != x.shape[1:]:
            raise UserError(f"{test_file}: images are {xt.shape[1:3]}, those of {train_file.name} {x.shape[1:3]}")
    elif cfg.test_x_key in data and cfg.test_y_key in data:
        xt, yt = _split(data, cfg.test_x_key, cfg.test_y_key, train_file)
    else:
        keep, held = holdout(len(x), fraction_of(len(x), cfg.holdout_fraction), cfg.generator_seed, "holdout")
        xt, yt, x, y = x[held], y[held], x[keep], y[keep]
    names = _class_names(files)
    k = int(max(y.max(initial=0), yt.max(initial=0))) + 1
    if min(y.min(initial=0), yt.min(initial=0)) < 0 or len(np.unique(y)) < 2:
        raise UserError(f"{train_file}: labels must be 0..K-1 with at least two classes present")
    if names is not None:
        for f, labels in ((train_file, y), (test_file or train_file, yt)):
            if labels.size and labels.max() >= len(names):
                raise UserError(f"{f}: label {labels.max()} is outside the {len(names)} named classes")
    elif k > 1000:
        raise UserError(f"{train_file}: label {k - 1} is out of range (more than 1000 classes)")
    x, xt = resize_array(x, cfg.image_size), resize_array(xt, cfg.image_size)
    classes = names if names is not None else [str(i) for i in range(k)]
    read = tuple(str(f) for f, _ in files)
    return Arrays(x, y, xt, yt, classes, "arrays", [], files=read)
