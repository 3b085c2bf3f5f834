"""Where the tracking store is, checked before MLflow loads: ``--tracking-uri``,
``$MLFLOW_TRACKING_URI`` or MLflow 3's default ``mlflow.db`` here.

What can be checked without MLflow is checked here (the scheme, a SQLite file's folder, a
server's health), so a mistake is one line at once; :func:`opening_store` translates what
only MLflow finds when it opens the store. No MLflow at import.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .. import inputs
from ..errors import UserError

TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file", "databricks")
SERVER_TIMEOUT_S = 10


def resolve_uri(uri: str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > MLflow 3's default, ``mlflow.db`` here.

    The default is made absolute so that artifacts and database stay together whatever the
    working directory of later steps.
    """
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` tracking URI; None for any other store."""
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return Path(uri[len("sqlite:///") :])
    return None


def tracking_uri(uri: str | None, must_exist: bool = False) -> str:
    """``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` > ``sqlite:///<cwd>/mlflow.db``, checked.

    Checks what can be checked without MLflow: the scheme is one MLflow serves, a SQLite
    database and its ``mlruns/`` artifact folder sit in a writable folder that no regular file
    blocks, and a server answers its health check. ``must_exist`` (the report) refuses a
    SQLite file that is not there instead of creating an empty store from a typo.
    """
    if uri:
        origin = "--tracking-uri"
    else:
        origin = "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "default store"
    uri = resolve_uri(uri)
    where = f"{origin} {uri}"
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0].lower()
    if scheme and len(scheme) > 1 and scheme not in TRACKING_SCHEMES:  # one letter: a Windows drive
        raise UserError(f"{where}: unsupported scheme {scheme!r} (MLflow stores: {', '.join(TRACKING_SCHEMES)})")
    if scheme == "sqlite" and sqlite_path(uri):
        _check_sqlite(sqlite_path(uri), where, must_exist)
    elif scheme in ("", "file"):
        folder = urllib.parse.urlparse(uri).path if scheme else uri
        _check_folder_store(Path("/" + folder.lstrip("/") if folder.startswith("/") else folder), where)
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
            raise UserError(
                f"{where}: MLflow 3 opens folder stores only with MLFLOW_ALLOW_FILE_STORE=true; "
                "use sqlite:///PATH/mlflow.db (`mlflow migrate-filestore` converts a folder store)"
            )
    elif scheme in ("http", "https"):
        check_server(uri, where)
    return uri


def _check_sqlite(db: Path, where: str, must_exist: bool) -> None:
    block = inputs.blocking_file(db)
    if block is not None:
        raise UserError(f"{where}: {block} is a regular file, not a folder")
    if db.is_dir():
        raise UserError(f"{where}: {db} is a folder, not a database file")
    if must_exist and not db.exists():
        raise UserError(f"{where}: no store there ({db} does not exist); run `resnet-bench run` first")
    artifacts = db.parent / "mlruns"
    if artifacts.exists() and not artifacts.is_dir():
        raise UserError(f"{where}: {artifacts} (the artifact folder) is a regular file")
    folder = next(a for a in [db.parent, *db.parent.absolute().parents] if a.exists())
    if db.exists() and not os.access(db, os.R_OK | (0 if must_exist else os.W_OK)):
        raise UserError(f"{where}: permission denied on {db}")
    if not db.exists() and not os.access(folder, os.W_OK):
        raise UserError(f"{where}: permission denied ({folder} is not writable)")


def _check_folder_store(path: Path, where: str) -> None:
    block = inputs.blocking_file(path)
    if block is not None:
        raise UserError(f"{where}: {block} is a regular file, not a folder")
    if path.exists() and not path.is_dir():
        raise UserError(f"{where}: is a regular file; a file store is a folder (or use sqlite:///{path})")


def check_server(uri: str, where: str | None = None) -> None:
    """A tracking server must answer ``/health`` within ``SERVER_TIMEOUT_S`` seconds."""
    where = where or f"tracking server {uri}"
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S).read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):  # it answers; MLflow's client brings the credentials
            return
        raise UserError(f"{where}: answered /health with HTTP {e.code}; is it an MLflow server?") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {SERVER_TIMEOUT_S} s"
        raise UserError(f"{where}: tracking server unreachable ({reason})") from None


@contextlib.contextmanager
def opening_store(uri: str):
    """Translate what MLflow raises when it first opens a store the user named.

    :func:`tracking_uri` catches most mistakes first; this covers what only MLflow knows
    (a refused file store, a database it cannot open, a missing database driver). Wrap only
    the store's creation and first query.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except MlflowException as e:
        raise UserError(f"tracking store {uri}: {_first_sentence(e.message)}") from None
    except ImportError as e:
        raise UserError(f"tracking store {uri}: needs the {e.name or 'database driver'} package ({e})") from None
    except SQLAlchemyError as e:
        reason = inputs.first_line(getattr(e, "orig", None) or e)
        raise UserError(f"tracking store {uri}: the database cannot be opened ({reason})") from None
    except OSError as e:  # the store's folder or lock file (tracking_uri checked the path first)
        raise UserError(f"tracking store {uri}: {e.strerror or e}") from None


def _first_sentence(text: str) -> str:
    line = inputs.first_line(Exception(text))
    return re.split(r"(?<=[a-z0-9)'])\. (?=[A-Z])", line)[0].rstrip(".")
