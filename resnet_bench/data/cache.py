"""The data cache: generated sets and decoded photo folders, kept between runs and sweeps.

``$RESNET_BENCH_CACHE`` or ``~/.cache/resnet_bench``. Every file appears whole or not at all
(written under a temporary name, then renamed), and a full disk is one line naming the folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from .. import inputs
from ..errors import UserError


def cache_dir() -> Path:
    """``$RESNET_BENCH_CACHE`` or ``~/.cache/resnet_bench``: generated and decoded data."""
    if "RESNET_BENCH_CACHE" in os.environ:
        return inputs.writable_folder(os.environ["RESNET_BENCH_CACHE"], "$RESNET_BENCH_CACHE")
    return inputs.writable_folder(Path.home() / ".cache" / "resnet_bench", "cache folder")


@contextlib.contextmanager
def writing_cache(path: Path, what: str):
    """Writes into the data cache: a full disk is one line naming the folder, what needed the
    space (``what``) and the variable that moves the cache, and ``path`` (a temporary file or
    folder) is removed, so nothing partial is left for a later run to read."""
    try:
        yield
    except OSError as e:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"{path.parent}: no space left on the device while writing {what}; free space there or set "
                "$RESNET_BENCH_CACHE to a folder on a disk with room"
            ) from None
        raise
