"""Data sources: the generated set, photo folders, CIFAR-10 and array files -> :class:`Arrays`.

Every loader returns uint8 RGB images already at the experiment's size, so the pipeline and
the models never see a file. Mistakes in what the user points at (missing folder, one class,
an empty class, mismatched arrays) raise :class:`~resnet_bench.errors.UserError` naming the
path, before anything trains.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .. import inputs
from ..errors import UserError
from . import synthetic
from .arrays import IN_MEMORY_BYTES, Arrays

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def cache_dir() -> Path:
    """``$RESNET_BENCH_CACHE`` or ``~/.cache/resnet_bench``: generated and decoded data."""
    if "RESNET_BENCH_CACHE" in os.environ:
        return inputs.writable_folder(os.environ["RESNET_BENCH_CACHE"], "$RESNET_BENCH_CACHE")
    return inputs.writable_folder(Path.home() / ".cache" / "resnet_bench", "cache folder")


@contextlib.contextmanager
def writing_cache(path: Path, what: str):
    """Writes into the data cache: a full disk is one line naming the folder and the variable
    that moves the cache, and ``path`` (a temporary or a memory map) is removed, so no partial
    file is left for a later run to read."""
    try:
        yield
    except OSError as e:
        path.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"{path.parent}: no space left on the device while writing {what}; free space there or set "
                "$RESNET_BENCH_CACHE to a folder on a disk with room"
            ) from None
        raise


def _seeded_choice(items: list, k: int, seed: int, salt: str) -> list:
    """A seeded subset of ``k`` items, independent of the order the filesystem lists them in."""
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))
    items = sorted(items)
    return sorted(items[i] for i in rng.permutation(len(items))[:k])


# -- generated ---------------------------------------------------------------------------


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


# -- photo folders -----------------------------------------------------------------------


def decode_image(path: Path, size: int, resize: str) -> np.ndarray:
    """Decode one file to uint8 RGB ``size x size``.

    ``crop`` keeps the aspect ratio and centre-crops (objects keep their proportions; the
    border is lost); ``squash`` stretches the whole photo to a square, as the tutorial did.
    GIFs give their first frame; greyscale, palette, RGBA and CMYK become RGB.
    """
    with Image.open(path) as img:
        img.seek(0)
        img.load()
        img = img.convert("RGB")
        if resize == "crop":
            img = ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
        else:
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _list_class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    with inputs.reading("photo folder", root):
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(dirs) < 2:
        raise UserError(f"{root}: needs at least two class folders, found {len(dirs)}")
    return dirs


def _list_files(class_dirs: list[Path]) -> tuple[dict[str, list[Path]], int]:
    files, ignored = {}, 0
    for d in class_dirs:
        with inputs.reading("class folder", d):
            entries = sorted(p for p in d.rglob("*") if p.is_file())
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        ignored += len(entries) - len(images)
        if not images:
            raise UserError(f"{d}: class folder has no images")
        files[d.name] = images
    return files, ignored


def _decode_all(items: list[tuple[Path, int]], size: int, resize: str, max_bad: float, root: Path):
    """Decode files in parallel; skip unreadable ones, stop if more than ``max_bad`` fail.

    Each skipped file is logged at INFO (``-v`` prints them); the caller shows a one-line
    summary (:func:`resnet_bench.data.skipped_summary`) and every run logs the whole list.
    """
    nbytes = len(items) * size * size * 3
    if nbytes > IN_MEMORY_BYTES:
        key = hashlib.sha256(repr((str(root), size, resize, len(items))).encode()).hexdigest()[:16]
        path = cache_dir() / f"decoded-{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with writing_cache(path, f"the decoded images ({nbytes / 1e9:,.1f} GB)"):
            x = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(items), size, size, 3))
            # A memory map's file is sparse: a disk that fills while pages are written kills the
            # process with SIGBUS. Reserving the blocks now turns that into ENOSPC, here.
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    else:
        x = np.empty((len(items), size, size, 3), np.uint8)
    ok = np.zeros(len(items), bool)
    bad: list[str] = []

    def work(i):
        try:
            x[i] = decode_image(items[i][0], size, resize)
            ok[i] = True
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            bad.append(f"{items[i][0]} ({type(e).__name__}: {e})")

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(work, range(len(items))))
    bad.sort()
    for b in bad:
        log.info("skipped unreadable image %s", b)
    if len(items) and len(bad) / len(items) > max_bad:
        raise UserError(
            f"{root}: {len(bad)} of {len(items)} images are unreadable (more than data.max_bad_fraction = "
            f"{max_bad:.0%}), e.g. {bad[0]}; -v lists every one"
        )
    labels = np.array([c for _, c in items], np.int64)
    return x[ok], labels[ok], [b.split(" (")[0] for b in bad]


def load_folder(cfg) -> Arrays:
    """``ROOT/training_set/<class>/`` + ``ROOT/test_set/<class>/``, or one ``ROOT/<class>/`` tree.

    Class names are the sorted sub-folder names. ``max_per_class`` caps the training images
    of each class with a seeded subset (``generator_seed``), like the tutorial's train_size
    but not biased to the first files listed. A single tree is split with a seeded
    ``holdout_fraction`` per class.
    """
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found")
    train_root, test_root = root / "training_set", root / "test_set"
    if train_root.exists() or test_root.exists():
        for p in (train_root, test_root):
            if not p.is_dir():
                raise UserError(f"{p}: missing (the layout is ROOT/training_set/<class>/ and ROOT/test_set/<class>/)")
        train_files, ign1 = _list_files(_list_class_dirs(train_root))
        test_files, ign2 = _list_files(_list_class_dirs(test_root))
        if sorted(train_files) != sorted(test_files):
            raise UserError(f"{root}: training_set and test_set have different class folders")
        ignored = ign1 + ign2
    else:
        all_files, ignored = _list_files(_list_class_dirs(root))
        train_files, test_files = {}, {}
        for c, files in all_files.items():
            k = max(1, round(len(files) * cfg.holdout_fraction))
            test = set(_seeded_choice(files, k, cfg.generator_seed, f"holdout:{c}"))
            test_files[c] = sorted(test)
            train_files[c] = [f for f in files if f not in test]
    classes = sorted(train_files)
    if cfg.max_per_class:
        train_files = {
            c: _seeded_choice(f, min(len(f), cfg.max_per_class), cfg.generator_seed, f"cap:{c}")
            for c, f in train_files.items()
        }
    splits = []
    skipped: list[str] = []
    for files in (train_files, test_files):
        items = [(p, i) for i, c in enumerate(classes) for p in files[c]]
        x, y, bad = _decode_all(items, cfg.image_size, cfg.resize, cfg.max_bad_fraction, root)
        splits += [x, y]
        skipped += bad
    return Arrays(*splits, classes=classes, source="folder", skipped=skipped, ignored=ignored)


# -- CIFAR-10 ----------------------------------------------------------------------------

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
            out[n] = _cifar_batch(inputs.load_array_pickle(data, "CIFAR-10 batch", f), f)
        return out
    with inputs.reading("CIFAR-10 archive", path):
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for n in names:
                if n not in members:
                    raise UserError(f"{path}: archive has no {n}")
                where = f"{path}:{n}"
                out[n] = _cifar_batch(
                    inputs.load_array_pickle(tar.extractfile(members[n]).read(), "CIFAR-10 batch", where), where
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


# -- array files -------------------------------------------------------------------------


def resize_array(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[1] == size and x.shape[2] == size:
        return x
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in x])


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
    return [(f, test) for f in names if (test := inputs.array_pair_test_file(f)) is not None]


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
    for mine, other in (("train_", "test_"), ("test_", "train_")):
        if path.name.startswith(mine):
            sibling = path.with_name(other + path.name[len(mine) :])
            if sibling.is_file():
                return (path, sibling) if mine == "train_" else (sibling, path)
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
        rng = np.random.Generator(np.random.PCG64(cfg.generator_seed))
        order = rng.permutation(len(x))
        k = max(1, round(len(x) * cfg.holdout_fraction))
        xt, yt, x, y = x[order[:k]], y[order[:k]], x[order[k:]], y[order[k:]]
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


LOADERS = {"synthetic": load_synthetic, "folder": load_folder, "cifar10": load_cifar10, "arrays": load_arrays}
