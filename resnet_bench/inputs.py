"""Where what the user supplies enters: files, folders, tracking URIs, output paths, argv,
optional dependencies.

Every input a user hands us comes through one of these functions, which return it ready to
use or raise :class:`~resnet_bench.errors.UserError` naming the input and the reason in one
line. The failures that reading bad input is *expected* to cause (the ``OSError`` family,
truncated or foreign files, refused pickles, unknown URI schemes, MLflow refusing a store, a
missing optional package) are translated here, each inside a block that does nothing but read
that input; anything else is a bug and keeps its traceback (see :func:`resnet_bench.cli.main`).
Two other kinds of check live with the knowledge they need and raise ``UserError`` there: the
*content* of a data set (an empty class folder, mismatched arrays: the loaders of ``data``) and the
values of an experiment (``config``); the library's builders raise ``ValueError`` at their
boundary (an unknown depth), which the ``models`` and ``perf`` commands tell in one line.

The module imports neither TensorFlow nor MLflow, so the command line can check its inputs
before it loads either and answer a mistake at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path

from .errors import UserError

# MLflow 3's tracking-store schemes (mlflow.tracking._tracking_service.utils registers these);
# a dialect may carry a driver, as in postgresql+psycopg2://.

# Read errors that a damaged or foreign file raises from the readers we use (zipfile for .npz,
# h5py, tarfile and gzip, pickle, PIL): an input problem, never a bug of ours.
_CORRUPT = (EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, pickle.UnpicklingError, UnicodeDecodeError)


# -- command line ------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``resnet-bench run: error: ... (see '... --help')``.

    argparse prints the whole usage block before its error, which buries the one line that
    matters; ``--help`` still shows the usage. Sub-parsers inherit the class.
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def name_list(text: str) -> list[str]:
    """argparse type: ``a,b,c`` (empty items dropped)."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return items


def require(module: str, option: str, extra: str):
    """Import the optional package ``module`` that ``option`` needs, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{option} needs {module}: pip install 'resnet_bench[{extra}]'") from None


def check_seeds(seeds, name: str) -> list[int]:
    """The one rule for repeat seeds, wherever they come from: non-negative integers (a seed
    derives the data order and initialisation of every variant, and negative ones are refused
    by the generators). Raises :class:`UserError` naming ``name``."""
    seeds = list(seeds)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise UserError(f"{name} must be non-negative integers, got {seeds}")
    return seeds


def seed_list(text: str) -> list[int]:
    """argparse type: ``0,1,2``: non-negative integers."""
    try:
        return check_seeds([int(x) for x in name_list(text)], "--seeds")
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}") from None


def jobs(text: str) -> int | str:
    """argparse type for ``--jobs``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") from None


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0 (a share of a GPU or of the CPUs)."""
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return x


def env_float(name: str, default: float) -> float:
    """A number from the environment, told as a one-line error when it is not one."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise UserError(f"${name}: expected a number, got {text!r}") from None


# -- files and folders -------------------------------------------------------------------


def blocking_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` that is a regular file (so ``path`` cannot exist), if any."""
    for parent in reversed(Path(path).expanduser().absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def os_reason(e: OSError, path) -> str:
    """A short reason for an ``OSError`` met at ``path``, in the user's terms."""
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, NotADirectoryError) or (isinstance(e, FileExistsError) and blocking_file(path)):
        block = blocking_file(path)
        return f"{block} is a regular file, not a folder" if block else "a part of the path is not a folder"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(e, FileNotFoundError):
        return "not found"
    return e.strerror or str(e) or type(e).__name__


@contextlib.contextmanager
def reading(what: str, path, refused: tuple[type[BaseException], ...] = ()):
    """Translate the read errors of a damaged, foreign or inaccessible file into a UserError.

    Wrap only the call that reads the file, so that the same exception raised by our own code
    elsewhere still shows as the bug it is. ``refused`` adds exception types that the reader
    uses to reject content (numpy's ``ValueError`` for pickled arrays in an ``.npz``).
    """
    try:
        yield
    except UserError:
        raise
    except OSError as e:
        raise UserError(f"{what} {path}: {_read_reason(e, path)}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path}: not UTF-8 text ({first_line(e)})") from None
    except _CORRUPT as e:
        raise UserError(f"{what} {path}: unreadable, truncated or not this kind of file ({first_line(e)})") from None
    except refused as e:
        raise UserError(f"{what} {path}: {_refusal(e)}") from None


def _read_reason(e: OSError, path) -> str:
    if type(e) is OSError:
        # h5py and PIL raise plain OSErrors for damaged content ("truncated file", "not HDF5")
        return f"unreadable, truncated or not this kind of file ({first_line(e)})"
    return os_reason(e, path)


def _refusal(e: BaseException) -> str:
    text = first_line(e)
    if "pickle" in text.lower():
        return "holds pickled Python objects, refused because loading them can run code; save plain numeric arrays"
    return text


def first_line(e: BaseException) -> str:
    """An exception's first line (its type when it has no text): what a one-line error quotes."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def read_text(path, what: str) -> str:
    """A UTF-8 text file the user names (an experiment file)."""
    p = existing_path(path, what, "file")
    with reading(what, path):
        return p.read_text(encoding="utf-8")


def existing_path(path, what: str, kind: str = "any") -> Path:
    """A data path that must exist: ``kind`` is ``file``, ``folder`` or ``any``."""
    p = Path(path).expanduser()
    if not p.exists():
        block = blocking_file(p)
        raise UserError(f"{what} {path}: " + (f"{block} is a regular file, not a folder" if block else "not found"))
    if kind == "folder" and not p.is_dir():
        raise UserError(f"{what} {path}: is a file, not a folder")
    if kind == "file" and not p.is_file():
        raise UserError(f"{what} {path}: is a folder, not a file")
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        raise UserError(f"{what} {path}: permission denied")
    return p


def writable_folder(path, what: str) -> Path:
    """A folder we create if needed and write into (a cache, an artifact root)."""
    p = Path(path).expanduser()
    block = blocking_file(p / "x")
    if block is not None:
        raise UserError(f"{what} {path}: {block} is a regular file, not a folder")
    folder = next(a for a in [p, *p.absolute().parents] if a.exists())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: permission denied ({folder} is not writable)")
    return p


def output_path(path, what: str) -> Path:
    """A file we are about to write: its folder must be creatable and writable.

    Checked before the work that produces it, so a typo in ``--out`` does not cost a run.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{what} {path}: is a folder, not a file")
    block = blocking_file(p)
    if block is not None:
        raise UserError(f"{what} {path}: {block} is a regular file, not a folder")
    folder = next(a for a in [p.parent, *p.parent.absolute().parents] if a.exists())
    target = p if p.exists() else folder
    if not os.access(target, os.W_OK):
        raise UserError(f"{what} {path}: permission denied ({target} is not writable)")
    return p
