"""Helpers for tests that run the CLI against a temporary MLflow store."""

import contextlib
import fcntl
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from resnet_bench import schema
from resnet_bench.tracking import Store

ROOT = Path(__file__).resolve().parent.parent
TRAIN_LOSS = schema.stored_key("train_loss")  # the training loss's key in MLflow


# Runs long enough for a signal sent after their first logged epoch to land mid-run: about 0.6 s
# per epoch for the tiny nets on 2 cores, so 7 epochs remain after the first one is seen.
SLOW_RUN = "--set train.epochs=8 --set data.train_size=2000"


# This session's empty MLflow store (conftest.py names it; made on first use, then copied).
EMPTY_STORE: Path | None = None


def store_uri(tmp_path, fresh: bool = False) -> str:
    """A SQLite store in ``tmp_path``. It starts as a copy of an empty store that MLflow made
    once this session: MLflow creates a new file's schema by running all its migrations, about
    1.2 s of CPU, and the test processes of a whole suite did it 32 times without copies.
    ``fresh=True`` leaves the file for the code under test to create, where creating it is
    what the test is about."""
    path = Path(tmp_path) / "db.sqlite"
    if not fresh and not path.exists():
        copy_empty_store(path)
    return f"sqlite:///{path}"


def copy_empty_store(dest: Path) -> None:
    """Copy the session's empty store to ``dest``, making it first if no test process has:
    by MLflow itself (:class:`Store`), under a lock the test processes share."""
    assert EMPTY_STORE is not None, "tests/conftest.py names the session's empty store"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{EMPTY_STORE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not EMPTY_STORE.exists():
            made = EMPTY_STORE.with_name("made.sqlite")
            made.unlink(missing_ok=True)  # left by a process that died making it
            Store(f"sqlite:///{made}")
            made.rename(EMPTY_STORE)
        with contextlib.closing(sqlite3.connect(EMPTY_STORE)) as src, contextlib.closing(sqlite3.connect(dest)) as dst:
            src.backup(dst)


def all_runs(uri: str, experiment: str) -> list:
    # Opened as the product opens it, under its schema lock: a test polling a SQLite file that a
    # sweep in another process is creating would otherwise create the schema at the same moment,
    # and one of the two fails ("table ... already exists": a --jobs 2 sweep exited 2 of it under load).
    client = Store(uri).client
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if "bench_report" not in r.data.tags]  # training runs only


def by_status(uri, experiment, status):
    return [r for r in all_runs(uri, experiment) if r.info.status == status]


def finished_losses(uri: str, experiment: str) -> dict:
    """(model, seed) -> per-epoch training losses of the FINISHED runs."""
    client = MlflowClient(tracking_uri=uri)
    return {
        (r.data.params["model"], r.data.params["seed"]): [
            m.value for m in sorted(client.get_metric_history(r.info.run_id, TRAIN_LOSS), key=lambda m: m.step)
        ]
        for r in by_status(uri, experiment, "FINISHED")
    }


def spawn(args: list[str], cwd, env: dict | None = None, stderr=subprocess.STDOUT, **kw) -> subprocess.Popen:
    """``resnet-bench ARGS`` in a process of its own, its output line by line (stderr with
    stdout unless ``stderr`` says otherwise); ``env`` adds variables to this process's environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "resnet_bench.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        **kw,
    )


# Per-epoch metrics every run must log: the schema's, read from the one place that defines them.
EPOCH_METRICS = list(schema.EPOCH_METRICS)


def wait_for_mid_run(uri: str, experiment: str, proc: subprocess.Popen, timeout: float = 240):
    """Poll until a run of ``proc``'s sweep is RUNNING with at least one epoch logged; if the
    sweep ends first, fail at once with what it printed."""
    client = Store(uri).client  # under the schema lock, as all_runs
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (exit code {proc.returncode}) before a run got under way:\n"
                                 + proc.communicate()[0])  # fmt: skip
        running = [r for r in all_runs(uri, experiment) if r.info.status == "RUNNING"]
        if running and client.get_metric_history(running[0].info.run_id, TRAIN_LOSS):
            return running[0]
        time.sleep(0.3)
    raise AssertionError(f"no run of {experiment} got under way in {timeout}s")


def live_children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that have not exited (zombies count as gone)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                state, ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(ppid) == pid and state != "Z":
                out.append(int(d.name))
    return out


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), None when gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot): with its pid, the process itself,
    since the kernel hands a pid out again once its counter wraps (at 32,768 here)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` is running (a zombie has ended), and is the process that began at
    ``start`` when that is given."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and start in (None, int(fields[19]))


def still_running(procs: dict[int, int | None]) -> list[str]:
    """Those of ``procs`` (pid: start) still running, each as 'PID COMMAND', for an assertion's
    message."""
    out = []
    for pid, start in procs.items():
        if is_alive(pid, start):
            try:
                cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # ended just now
                continue
            out.append(f"{pid} {cmd[:200]}")
    return out


def has_tensorflow(pid: int) -> bool:
    """Whether process ``pid`` has TensorFlow's runtime library mapped (Linux's /proc)."""
    return "_pywrap_tensorflow" in (Path("/proc") / str(pid) / "maps").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """A real ``mlflow server`` on 127.0.0.1 over a SQLite file in ``folder``: its URL."""
    port = free_port()
    copy_empty_store(folder / "server.db")
    args = ["--backend-store-uri", f"sqlite:///{folder}/server.db", "--artifacts-destination",
            str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    # Without MLflow 3's job runner: it starts eight huey consumers beside the server, about
    # 50 s of CPU per server here, for jobs no test asks for.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("mlflow server did not start within 120 s") from None
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def private_store(uri: str, folder: Path) -> str:
    """A copy of the SQLite store ``uri`` in ``folder`` for a test that writes to its runs
    (analyses, reports), so that other tests of this process see the session's sweep as it was.
    The copy's runs keep their artifact folders, which every copy shares."""
    db = Path(folder) / "db.sqlite"
    with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as src:
        with contextlib.closing(sqlite3.connect(db)) as dst:
            src.backup(dst)
    return f"sqlite:///{db}"
