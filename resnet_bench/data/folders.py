"""Photo folders: ``ROOT/training_set/<class>/`` + ``ROOT/test_set/<class>/``, or one tree.

Every image is decoded to uint8 RGB at the experiment's size, once per file list, size and
resize mode, into a store on disk that every later run opens (:mod:`.decoded`); unreadable
files are skipped and listed, up to ``data.max_bad_fraction``. A folder's mistakes (missing,
one class, an empty class) are one line naming the path.
"""

from __future__ import annotations

from pathlib import Path

from .. import inputs
from ..errors import UserError
from . import decoded
from .arrays import Arrays
from .decoded import IMAGE_SUFFIXES
from .split import fraction_of, seeded_subset


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
            k = fraction_of(len(files), cfg.holdout_fraction)
            held = set(_choose(files, k, cfg.generator_seed, f"holdout:{c}"))
            test_files[c] = sorted(held)
            train_files[c] = [f for f in files if f not in held]
    classes = sorted(train_files)
    if cfg.max_per_class:
        train_files = {
            c: _choose(f, min(len(f), cfg.max_per_class), cfg.generator_seed, f"cap:{c}")
            for c, f in train_files.items()
        }
    items = {split: [(p, i) for i, c in enumerate(classes) for p in files[c]]
             for split, files in (("train", train_files), ("test", test_files))}  # fmt: skip
    splits, record, store = decoded.load(items, cfg.image_size, cfg.resize, cfg.max_bad_fraction, root)
    (x, y), (xt, yt) = splits["train"], splits["test"]
    return Arrays(x, y, xt, yt, classes=classes, source="folder", skipped=record["skipped"], ignored=ignored,
                  digest=record["digest"], store=str(store))  # fmt: skip


def _choose(files: list[Path], k: int, seed: int, salt: str) -> list[Path]:
    """A seeded ``k`` of ``files`` (:func:`.split.seeded_subset` of their sorted list)."""
    files = sorted(files)
    return [files[i] for i in seeded_subset(len(files), k, seed, salt)]
