"""A tracking server that goes away mid-sweep: a restart loses nothing, a longer outage is one line."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from .helpers import all_runs, by_status, spawn

pytestmark = pytest.mark.slow


class Server:
    """`mlflow server` on 127.0.0.1 over a SQLite file, stopped and started on the same port."""

    def __init__(self, tmp):
        self.tmp = tmp
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.tmp}/server.db",
                "--artifacts-destination",
                str(self.tmp / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(480):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2)
                return
            except OSError:
                time.sleep(0.25)
        pytest.fail("mlflow server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def _epochs(uri, run):
    return [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "train_loss")]


def _wait_for_epoch(uri, seed, epoch, timeout=60):
    """Until the run of ``seed`` has ``epoch`` in the store (its writer thread may lag the print)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in all_runs(uri, "tiny"):
            if run.data.params.get("seed") == str(seed) and epoch in _epochs(uri, run):
                return
        time.sleep(0.1)
    pytest.fail(f"epoch {epoch} of seed {seed} was not written within {timeout} s")


def _sweep_with_outage(tiny_file, server, seed, down_for, env=None):
    """A one-run sweep; the server stops once epoch 2 is printed and starts again ``down_for``
    seconds later. Returns the sweep's exit code and output."""
    args = ["run", str(tiny_file), "--tracking-uri", server.url, "--jobs", "1", "--seeds", str(seed),
            "--models", "resnet8", "--set", "train.epochs=8", "--set", "data.train_size=2000"]  # fmt: skip
    if env:
        os.environ.update(env)
    try:
        proc = spawn(args, cwd=tiny_file.parent)
    finally:
        for k in env or {}:
            del os.environ[k]
    out = []
    for line in proc.stdout:
        out.append(line)
        if "epoch 2/8" in line:
            _wait_for_epoch(server.url, seed, 2)  # epochs are written by a thread: the outage starts after
            server.stop()
            time.sleep(down_for)
            server.start()
    proc.wait(timeout=600)
    return proc.returncode, "".join(out), args


def test_a_server_restart_mid_run_loses_nothing_and_a_longer_outage_is_one_line(tmp_path, tiny_file):
    server = Server(tmp_path)
    server.start()
    try:
        # Down for 6 s (plus its restart): training goes on, every epoch is written once, in order.
        code, out, _ = _sweep_with_outage(tiny_file, server, seed=0, down_for=6)
        assert code == 0, out
        assert "Traceback" not in out and "Retrying" not in out, out
        (run,) = by_status(server.url, "tiny", "FINISHED")
        assert _epochs(server.url, run) == list(range(1, 9))

        # Patience of 2 s: the run stops at the next epoch with one line; what was written stays,
        # and the same command resumes once the server is back.
        code, out, args = _sweep_with_outage(
            tiny_file, server, seed=1, down_for=6, env={"RESNET_BENCH_TRACKING_PATIENCE": "2"}
        )
        assert code == 1, out
        assert "Traceback" not in out, out
        assert out.count("did not answer for 2 s ($RESNET_BENCH_TRACKING_PATIENCE)") >= 1, out
        attempt = next(r for r in all_runs(server.url, "tiny") if r.data.params.get("seed") == "1")
        assert _epochs(server.url, attempt)[:2] == [1, 2]  # the epochs before the outage are kept
        resumed = spawn(args, cwd=tiny_file.parent)
        assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
        assert {r.data.params["seed"] for r in by_status(server.url, "tiny", "FINISHED")} == {"0", "1"}
        assert by_status(server.url, "tiny", "RUNNING") == []
    finally:
        server.stop()
