"""A tracking server that goes away mid-sweep: an outage the patience covers loses nothing, a
longer one is one line, and the same command resumes.

The sweep talks to a real ``mlflow server`` through a TCP relay. Taking the relay down closes
its port and cuts every open connection, which is what a client sees of a server restart
(connection refused, then reset); the server behind it keeps running, so an outage costs no
server start (each took 10-20 s on 2 cores, three per test before).
"""

import select
import socket
import socketserver
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from resnet_bench import cli
from resnet_bench.tracking import TrackedRun

from .helpers import TRAIN_LOSS, all_runs, by_status, free_port, mlflow_server, spawn

pytestmark = pytest.mark.slow

RUN = ["--jobs", "1", "--models", "resnet8"]
# Runs long enough that an outage a test process starts once it has seen epoch 2 lands mid-run.
LONG = ["--set", "train.epochs=8", "--set", "data.train_size=2000"]


@pytest.fixture
def server(tmp_path):
    with mlflow_server(tmp_path) as url:
        yield url


class _Forward(socketserver.BaseRequestHandler):
    def handle(self):
        relay = self.server.relay
        generation = relay.generation
        try:
            with socket.create_connection(relay.target) as upstream:
                ends = [self.request, upstream]
                while relay.generation == generation:  # down() ends every open connection
                    ready, _, _ = select.select(ends, [], [], 0.1)
                    for end in ready:
                        data = end.recv(65536)
                        if not data:
                            return
                        (upstream if end is self.request else self.request).sendall(data)
        except OSError:  # a side reset its end: so does the relay, without a traceback on stderr
            return


class _RelayServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # the port is opened again right after it was closed
    daemon_threads = True


class Relay:
    """A TCP relay on a port of its own to ``url``'s server; ``down()``/``up()`` close and
    reopen that port."""

    def __init__(self, url: str):
        self.target = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.generation = 0
        self._server = None
        self.up()

    def up(self):
        self._server = _RelayServer(("127.0.0.1", self.port), _Forward)
        self._server.relay = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self):
        self._server.shutdown()
        self._server.server_close()
        self.generation += 1


def _epochs(uri, run):
    return [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, TRAIN_LOSS)]


def _run_of(uri, seed):
    return next((r for r in all_runs(uri, "tiny") if r.data.params.get("seed") == str(seed)), None)


def _outage_after_epoch_2(server, relay, seed, down_for) -> list[int]:
    """Once epoch 2 of ``seed``'s run is in the store (read past the relay: epochs are written
    by a thread that may lag the print), take the relay down for ``down_for`` seconds. Returns
    the epochs the store held when the outage began."""
    deadline = time.time() + 120
    while time.time() < deadline:
        run = _run_of(server, seed)
        if run is not None and 2 in _epochs(server, run):
            relay.down()
            held = _epochs(server, run)
            time.sleep(down_for)
            relay.up()
            return held
        time.sleep(0.1)
    pytest.fail(f"epoch 2 of seed {seed} was not written within 120 s")


def test_an_outage_mid_run_loses_nothing_and_a_longer_one_is_one_line(tmp_path, tiny_file, server, capfd):
    relay = Relay(server)
    args = ["run", str(tiny_file), "--tracking-uri", relay.url, *RUN]

    # Down for 5 s from the moment epoch 2 is handed to the run's writer, within the default
    # patience: training goes on, every epoch is written once, in order. (In this process, the
    # outage started from the epoch hook, so it begins mid-run on any machine; the run ends
    # FINISHED, so its owner being alive is no matter.)
    log_epoch, timers = TrackedRun.log_epoch, []

    def outage_after_epoch_2(run, row):
        log_epoch(run, row)
        if row["epoch"] == 2 and not timers:
            relay.down()
            timers.append(threading.Timer(5, relay.up))
            timers[0].start()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TrackedRun, "log_epoch", outage_after_epoch_2)
        code = cli.main([*args, "--seeds", "0", "--set", "train.epochs=4"])
    timers[0].join()
    out = capfd.readouterr()
    assert code == 0, out
    assert "Traceback" not in out.out + out.err and "Retrying" not in out.out + out.err, out
    (run,) = by_status(server, "tiny", "FINISHED")
    assert _epochs(server, run) == [1, 2, 3, 4]

    # A patience of 2 s: the run stops at the next epoch with one line; what was written stays,
    # and the same command resumes once the server is back. (A process of its own: the attempt
    # it leaves behind must have a dead owner to be taken over.)
    args += [*LONG, "--seeds", "1"]
    proc = spawn(args, cwd=tmp_path, env={"RESNET_BENCH_TRACKING_PATIENCE": "2"})
    lines, held = [], []
    for line in proc.stdout:
        lines.append(line)
        if "epoch 2/8" in line:
            held = _outage_after_epoch_2(server, relay, 1, down_for=6)
    proc.wait(timeout=600)
    out = "".join(lines)
    assert len(held) < 8, held  # the outage began mid-run, or this part showed nothing
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert out.count("did not answer for 2 s ($RESNET_BENCH_TRACKING_PATIENCE)") >= 1, out
    assert _epochs(server, _run_of(server, 1))[:2] == [1, 2]  # the epochs before the outage are kept
    assert cli.main(args) == 0
    assert {r.data.params["seed"] for r in by_status(server, "tiny", "FINISHED")} == {"0", "1"}
    assert by_status(server, "tiny", "RUNNING") == []
