"""--executor ray against a real local Ray cluster and a real MLflow tracking server."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

ray = pytest.importorskip("ray")

from mlflow.tracking import MlflowClient  # noqa: E402

from resnet_bench import config  # noqa: E402
from resnet_bench.driver import run_sweep  # noqa: E402
from resnet_bench.report import write_report  # noqa: E402

from .helpers import all_runs, store_uri  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite backend in a temporary folder."""
    tmp = tmp_path_factory.mktemp("server")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp}/server.db",
            "--artifacts-destination",
            str(tmp / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cache = tmp_path_factory.mktemp("raycache")
    os.environ["RESNET_BENCH_CACHE"] = str(cache)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"RESNET_BENCH_CACHE": str(cache)}})
    yield
    ray.shutdown()


def _tiny(tmp_path, name, extra=()):
    from .conftest import TINY

    p = tmp_path / f"{name}.toml"
    p.write_text(TINY.replace('name = "tiny"', f'name = "{name}"'))
    return config.load(p, ["train.epochs=1", *extra])


def test_ray_sweep_on_a_tracking_server_matches_a_local_sweep(tmp_path, server, cluster):
    cfg = _tiny(tmp_path, "ray_tiny")
    models = ["resnet8", "plain8"]
    assert run_sweep(cfg, server, models=models, executor="ray") == 0
    runs = all_runs(server, "ray_tiny")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    # Resume rules hold under Ray too: nothing left to schedule.
    assert run_sweep(cfg, server, models=models, executor="ray") == 0
    assert len(all_runs(server, "ray_tiny")) == 4

    local = store_uri(tmp_path)
    assert run_sweep(cfg, local, models=models) == 0
    a = write_report(server, "ray_tiny", tmp_path / "ray" / "r.md")
    b = write_report(local, "ray_tiny", tmp_path / "local" / "r.md")
    heads = lambda p: [ln for ln in p.read_text().splitlines() if ln.startswith("#")]  # noqa: E731
    assert heads(tmp_path / "ray" / "r.md") == heads(tmp_path / "local" / "r.md")
    assert len(a["runs"]) == len(b["runs"]) == 4
    assert a["figures"] == b["figures"]


def test_killed_worker_is_retried_and_its_attempt_marked_killed(tmp_path, server, cluster):
    cfg = _tiny(tmp_path, "ray_kill", ["train.epochs=20", "data.train_size=2000"])  # long enough to catch mid-run
    client = MlflowClient(tracking_uri=server)
    killed = []

    def kill_worker_mid_run():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            for run in all_runs(server, "ray_kill"):
                if run.info.status == "RUNNING" and client.get_metric_history(run.info.run_id, "train_loss"):
                    pid = int(run.data.tags["owner_pid"])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(run.info.run_id)
                    return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_worker_mid_run)
    killer.start()
    assert run_sweep(cfg, server, seeds=[0], models=["resnet8"], executor="ray") == 0
    killer.join()
    assert killed, "never saw the run mid-way"
    statuses = {r.info.run_id: r.info.status for r in all_runs(server, "ray_kill")}
    assert statuses[killed[0]] == "KILLED"
    assert sorted(statuses.values()) == ["FINISHED", "KILLED"]
