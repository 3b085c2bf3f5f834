"""CIFAR-10 from its official python-format batches: a folder, the .tar.gz, or a download.

The batches are pickles; they are read by an unpickler that admits arrays and nothing else,
so a file that is not what it claims cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .. import inputs
from ..errors import UserError
from .arrays import Arrays, resize_array

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_batches(path: Path) -> dict[str, dict]:
    """Read the official python-format batches from a folder or from the .tar.gz."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = {}
    if path.is_dir():
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for n in names:
            f = folder / n
            if not f.is_file():
                raise UserError(f"{f}: missing CIFAR-10 batch file")
            with inputs.reading("CIFAR-10 batch", f):
                data = f.read_bytes()
            out[n] = _cifar_batch(load_array_pickle(data, "CIFAR-10 batch", f), f)
        return out
    with inputs.reading("CIFAR-10 archive", path):
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for n in names:
                if n not in members:
                    raise UserError(f"{path}: archive has no {n}")
                where = f"{path}:{n}"
                out[n] = _cifar_batch(
                    load_array_pickle(tar.extractfile(members[n]).read(), "CIFAR-10 batch", where), where
                )
    return out


def _cifar_batch(batch, where) -> dict:
    """The batch's uint8 images as (N, 3072) and its labels, or a UserError saying what is off."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{where}: not a CIFAR-10 batch (expected a dict with data and labels)")
    x, y = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(y) != len(x):
        raise UserError(f"{where}: not a CIFAR-10 batch (data {x.dtype} {x.shape}, {len(y)} labels)")
    return {b"data": x, b"labels": y}


def load_cifar10(cfg) -> Arrays:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder or its ``.tar.gz``.

    ``data.path = "download"`` fetches it through ``keras.datasets`` (needs network).
    """
    if cfg.path == "download":
        try:
            from ..quiet import load_tensorflow

            load_tensorflow()  # quietly, before Keras brings it in with its start-up lines
            import keras

            (xtr, ytr), (xte, yte) = keras.datasets.cifar10.load_data()
        except Exception as e:  # no network: say where the files go instead
            raise UserError(
                "CIFAR-10 download failed (no network?): put cifar-10-python.tar.gz or the "
                f"extracted cifar-10-batches-py folder on disk and pass its path ({type(e).__name__})"
            ) from None
        ytr, yte = ytr.ravel(), yte.ravel()
    else:
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise UserError(
                f"{path}: CIFAR-10 not found; download cifar-10-python.tar.gz from "
                "https://www.cs.toronto.edu/~kriz/cifar.html and pass the archive or its "
                "extracted cifar-10-batches-py folder"
            )
        batches = _cifar_batches(path)

        def arr(names):
            x = np.concatenate([batches[n][b"data"] for n in names])
            y = np.concatenate([batches[n][b"labels"] for n in names])
            return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(y, np.int64)

        xtr, ytr = arr([f"data_batch_{i}" for i in range(1, 6)])
        xte, yte = arr(["test_batch"])
    xtr, xte = resize_array(xtr, cfg.image_size), resize_array(xte, cfg.image_size)
    return Arrays(xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), list(CIFAR_CLASSES), "cifar10", [])


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays, and refuses every other global.

    The official CIFAR-10 batches are pickles; a pickle can name any callable and so run any
    code while it loads. Only the handful of numpy reconstructors an array needs pass.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused pickle: it references {module}.{name}, not only arrays")
        return super().find_class(module, name)


def load_array_pickle(data: bytes, what: str, path) -> dict:
    """A pickled dict of arrays (the CIFAR-10 batch format), loaded without running code."""
    with inputs.reading(what, path):
        return _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
