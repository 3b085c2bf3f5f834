"""--executor ray against a real local Ray cluster and a real MLflow tracking server."""

import contextlib
import os
import shutil
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from mlflow.tracking import MlflowClient  # noqa: E402

from resnet_bench import config  # noqa: E402
from resnet_bench.driver import run_sweep  # noqa: E402
from resnet_bench.errors import UserError  # noqa: E402
from resnet_bench.pools import PoolOptions  # noqa: E402
from resnet_bench.report import write_report  # noqa: E402

from .helpers import TRAIN_LOSS, all_runs, finished_losses, mlflow_server, store_uri  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]
RAY = PoolOptions(executor="ray")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("server")) as url:
        yield url


@contextlib.contextmanager
def _cluster(tmp_path):
    """A local 2-CPU Ray cluster, its workers' data cache in ``tmp_path``."""
    cache = tmp_path / "raycache"
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"RESNET_BENCH_CACHE": str(cache)}})
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RESNET_BENCH_CACHE", str(cache))
            yield
    finally:
        ray.shutdown()


def _tiny(tmp_path, name, extra=()):
    from .conftest import TINY

    p = tmp_path / f"{name}.toml"
    p.write_text(TINY.replace('name = "tiny"', f'name = "{name}"'))
    return config.load(p, ["train.epochs=1", *extra])


def test_ray_without_a_cluster_then_sweeps_on_one_and_a_killed_worker(tmp_path, server, monkeypatch, tiny_sweep):
    """One test, so that one test process starts the one cluster, and only after asking for
    one that is not there: `--address auto` finds a cluster of any process on the machine (it
    looks for Ray's processes), and a process that joined one is killed when it shuts down.
    (The suite's workers take tests one by one: pytest-xdist's grouping is broken under
    pytest 9.2, pytest-xdist issue 1386.)"""
    _address_with_no_cluster_is_one_line(tmp_path, monkeypatch)
    with _cluster(tmp_path):
        _ray_sweep_on_a_tracking_server_equals_the_local_pools(tmp_path / "match", server, tiny_sweep)
        _killed_worker_is_retried_and_its_attempt_marked_killed(tmp_path / "kill", server)


def _address_with_no_cluster_is_one_line(tmp_path, monkeypatch):
    from resnet_bench.pools.ray import RayPool
    from resnet_bench.runner import Training
    from resnet_bench.scheduler import SweepContext

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = _tiny(tmp_path, "ray_none")
    with pytest.raises(UserError, match=r"^--address auto: no Ray cluster answers there \(Could not find"):
        RayPool(SweepContext(cfg, store_uri(tmp_path), Training()), address="auto")


def _ray_sweep_on_a_tracking_server_equals_the_local_pools(tmp_path, server, tiny_sweep):
    """The depth-8 half of the session's tiny sweep again, on Ray and a tracking server: the
    same losses, bit for bit, as its two local worker processes gave, and a report with the
    same sections and figures as one over those local runs (conftest's ``tiny_sweep``, trained
    once for the whole suite; a copy of its store, the depth-14 runs deleted)."""
    tmp_path.mkdir()
    folder, exp, _ = tiny_sweep
    shutil.copy(folder / "db.sqlite", tmp_path / "db.sqlite")  # the session's copy is other tests' too
    local, cfg = store_uri(tmp_path), config.load(exp)
    models = ["resnet8", "plain8"]
    assert run_sweep(cfg, server, models=models, pools=RAY) == 0
    runs = all_runs(server, "tiny")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri=local)
    for run in all_runs(local, "tiny"):
        if run.data.params["model"] not in models:
            client.delete_run(run.info.run_id)
    assert finished_losses(server, "tiny") == finished_losses(local, "tiny")
    # Resume rules hold under Ray too: nothing left to schedule.
    assert run_sweep(cfg, server, models=models, pools=RAY) == 0
    assert len(all_runs(server, "tiny")) == 4

    a = write_report(server, "tiny", tmp_path / "ray" / "r.md")
    b = write_report(local, "tiny", tmp_path / "local" / "r.md")
    heads = lambda p: [ln for ln in p.read_text().splitlines() if ln.startswith("#")]  # noqa: E731
    assert heads(tmp_path / "ray" / "r.md") == heads(tmp_path / "local" / "r.md")
    assert len(a.runs) == len(b.runs) == 4
    assert a.figures == b.figures


def _killed_worker_is_retried_and_its_attempt_marked_killed(tmp_path, server):
    tmp_path.mkdir()
    # 7 epochs left once the first is seen: long enough to catch mid-run
    cfg = _tiny(tmp_path, "ray_kill", ["train.epochs=8", "data.train_size=2000"])
    client = MlflowClient(tracking_uri=server)
    killed = []

    def kill_worker_mid_run():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            for run in all_runs(server, "ray_kill"):
                if run.info.status == "RUNNING" and client.get_metric_history(run.info.run_id, TRAIN_LOSS):
                    pid = int(run.data.tags["owner_pid"])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(run.info.run_id)
                    return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_worker_mid_run)
    killer.start()
    assert run_sweep(cfg, server, seeds=[0], models=["resnet8"], pools=RAY) == 0
    killer.join()
    assert killed, "never saw the run mid-way"
    statuses = {r.info.run_id: r.info.status for r in all_runs(server, "ray_kill")}
    assert statuses[killed[0]] == "KILLED"
    assert sorted(statuses.values()) == ["FINISHED", "KILLED"]
