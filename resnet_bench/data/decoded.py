"""Photo folders decoded once, into a store on disk that every later run, worker and sweep opens.

A store is a folder of the data cache, ``decoded/<key>/``, keyed by everything that decides its
bytes: each split's files (path, size, modification time, label), the image size and the resize
mode. A changed, added or removed photo gives another key and so another store; a store is
never changed in place. It is written under a temporary name and renamed when whole (a rename
is atomic), while its decoder holds a lock that makes a second process wait and then open what
the first wrote; a decode killed at any moment leaves no store a later run takes as complete,
and the next decode of that key removes what it left. Arrays above ``IN_MEMORY_BYTES`` open as
read-only memory maps, so a process holds the pages it reads, not the data set; smaller ones are
read into memory.

Why not ``tf.data``'s file cache: it caches one pipeline's elements in one order, so each
repeat's seeded order and every worker would fill its own, and the parent that checks the data
has no TensorFlow. Why not decoding into the pipeline: 25,000 JPEGs cost minutes of decoding
per process and per sweep (docs/data.md has the numbers).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import UserError
from . import arrays as arrays_mod
from .cache import cache_dir, writing_cache

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}  # what a photo folder's images end with
VERSION = 1  # bump when decoding changes, so that stores move with it
SPLITS = ("train", "test")
CHUNK = 64  # images per task of the decoding threads: a stop waits for one chunk at most
PROGRESS_SECONDS = 10.0  # a decode this long says how far it is, every this many seconds


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


def store_root() -> Path:
    """The folder of every decoded store (in the data cache)."""
    return cache_dir() / "decoded"


def key_of(items: dict[str, list[tuple[Path, int]]], size: int, resize: str) -> str:
    """The store of ``items`` (split -> (file, label) pairs) at ``size`` and ``resize``."""
    h = hashlib.sha256(f"{VERSION}:{size}:{resize}".encode())
    for split in SPLITS:
        h.update(f"\n[{split}]".encode())
        for path, label in items[split]:
            st = path.stat()
            h.update(f"\n{path.resolve()}\t{label}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def load(items: dict, size: int, resize: str, max_bad: float, root: Path, echo=print) -> tuple[dict, dict, Path]:
    """The decoded splits of ``items``: ``{split: (x, y)}``, the store's record (``skipped``
    files, content ``digest``) and the store's folder; decoded first if no store holds them."""
    final = store_root() / key_of(items, size, resize)
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        with _locked(final, root, echo):
            if not final.is_dir():  # no other process wrote it while this one waited
                _decode(final, items, size, resize, max_bad, root, echo)
    return _open(final)


@contextlib.contextmanager
def _locked(final: Path, root: Path, echo):
    """The decoding lock of the store ``final``: one process decodes, the others wait for it."""
    with open(final.with_name(final.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"{root}: another process is decoding this folder; waiting for its store {final}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # the lock ends with the file, and with the process: a killed decoder holds none


def _decode(final: Path, items: dict, size: int, resize: str, max_bad: float, root: Path, echo) -> None:
    """Decode every split into ``final`` through a temporary folder renamed when whole."""
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what a killed decode left: this process holds the lock
    nbytes = sum(len(items[s]) for s in SPLITS) * size * size * 3
    what = f"the decoded images of {root} ({nbytes / 1e9:,.2f} GB)"
    started = time.monotonic()
    try:
        with writing_cache(partial, what):
            partial.mkdir()
            record: dict = {"version": VERSION, "root": str(root), "skipped": []}
            progress = _Progress(root, sum(len(items[s]) for s in SPLITS), echo)
            for split in SPLITS:
                record["skipped"] += _decode_split(partial, split, items[split], size, resize, max_bad, root, progress)
            record["digest"] = _digest(partial)
            (partial / "record.json").write_text(json.dumps(record))
            for f in partial.iterdir():
                with open(f, "rb") as handle:
                    os.fsync(handle.fileno())
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    if seconds >= PROGRESS_SECONDS:
        echo(f"{root}: decoded {progress.total:,} images in {seconds:.0f}s into {final}")


def _decode_split(folder: Path, split: str, items, size, resize, max_bad, root, progress) -> list[str]:
    """One split's images into ``folder/<split>_x.npy`` (a memory map, its blocks reserved so
    that a disk that fills says so here rather than killing the process) and its labels; the
    unreadable files skipped, up to ``max_bad`` of them."""
    n = len(items)
    path = folder / f"{split}_x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    with open(path, "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    ok = np.zeros(n, bool)
    bad = _decode_into(x, ok, [p for p, _ in items], size, resize, progress)
    if n and len(bad) / n > max_bad:
        raise UserError(
            f"{root}: {len(bad)} of {n} images are unreadable (more than data.max_bad_fraction = "
            f"{max_bad:.0%}), e.g. {bad[0]}; -v lists every one"
        )
    x.flush()
    if not ok.all():  # the readable images alone, copied in chunks: memory stays bounded
        kept = np.flatnonzero(ok)
        out = np.lib.format.open_memmap(
            folder / "compact.npy", mode="w+", dtype=np.uint8, shape=(len(kept),) + x.shape[1:]
        )
        for lo in range(0, len(kept), 1024):
            out[lo : lo + 1024] = x[kept[lo : lo + 1024]]
        out.flush()
        del out
        os.replace(folder / "compact.npy", path)
    del x
    np.save(folder / f"{split}_y.npy", np.array([c for _, c in items], np.int64)[ok])
    return [b.split(" (")[0] for b in bad]


def _decode_into(x, ok, paths: list[Path], size: int, resize: str, progress) -> list[str]:
    """Decode ``paths`` into ``x`` on a few threads, ``CHUNK`` images per task; unreadable files
    are returned (each logged at INFO). An interrupt stops the threads after their current
    image and propagates at once."""
    stop = threading.Event()
    bad: list[str] = []

    def work(lo: int, hi: int) -> int:
        for i in range(lo, hi):
            if stop.is_set():
                return i - lo
            try:
                x[i] = decode_image(paths[i], size, resize)
                ok[i] = True
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                bad.append(f"{paths[i]} ({type(e).__name__}: {e})")
        return hi - lo

    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    pending = {pool.submit(work, lo, min(lo + CHUNK, len(paths))) for lo in range(0, len(paths), CHUNK)}
    try:
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            progress.advance(sum(f.result() for f in done))
    finally:  # on an interrupt too: no thread writes into the map after this returns
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    bad.sort()
    for b in bad:
        log.info("skipped unreadable image %s", b)
    return bad


class _Progress:
    """A line every ``PROGRESS_SECONDS`` while a decode lasts: images done, rate, time left."""

    def __init__(self, root: Path, total: int, echo):
        self.root, self.total, self.echo = root, total, echo
        self.done, self.started = 0, time.monotonic()
        self.last = self.started

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS and self.done < self.total:
            rate = self.done / (now - self.started)
            self.echo(f"{self.root}: decoded {self.done:,} of {self.total:,} images ({rate:,.0f}/s, "
                      f"about {(self.total - self.done) / rate:.0f}s left)")  # fmt: skip
            self.last = now


def _digest(folder: Path) -> str:
    """The content hash of the decoded splits (:func:`resnet_bench.data.content_hash`), read in
    slices, so a store of any size is hashed in bounded memory, once."""
    x_train, y_train, x_test, y_test = (np.load(folder / f"{s}_{k}.npy", mmap_mode="r") for s in SPLITS for k in "xy")
    return arrays_mod.digest((x_train, y_train, x_test, y_test))


def _open(final: Path) -> tuple[dict, dict, Path]:
    """The store's splits: all memory-mapped when together they exceed ``IN_MEMORY_BYTES`` (a
    split read into memory is held twice by a training process: the array and the pipeline's
    constant), all read into memory otherwise."""
    record = json.loads((final / "record.json").read_text())
    big = sum((final / f"{s}_x.npy").stat().st_size for s in SPLITS) > arrays_mod.IN_MEMORY_BYTES
    splits = {}
    for split in SPLITS:
        path = final / f"{split}_x.npy"
        splits[split] = (np.load(path, mmap_mode="r") if big else np.load(path), np.load(final / f"{split}_y.npy"))
    return splits, record, final


def stores() -> list[Path]:
    """Every decoded store in the cache, with what decodes left behind (partial folders, locks)."""
    root = store_root()
    return sorted(root.iterdir()) if root.is_dir() else []


def decode_rate(folder: str, size: int, resize: str) -> float:
    """Images decoded per second: every photo of ``folder`` decoded again on the threads a
    store's decode uses (what the first load of a folder costs; later loads open its store)."""
    files = sorted(p for p in Path(folder).expanduser().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    ok = np.zeros(len(files), bool)
    started = time.perf_counter()
    _decode_into(_Discard(), ok, files, size, resize, _Progress(Path(folder), len(files), lambda line: None))
    return len(files) / (time.perf_counter() - started)


class _Discard:
    """Where :func:`decode_rate` puts the images it decodes: nowhere."""

    def __setitem__(self, index, value) -> None:
        pass
