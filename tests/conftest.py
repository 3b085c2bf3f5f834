"""Shared fixtures: every test works in temporary folders with tiny generated data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import pytest  # noqa: E402

TINY = """
name = "tiny"
[data]
image_size = 16
classes = 3
train_size = 96
test_size = 32
[train]
epochs = 2
batch_size = 32
grad_probe_size = 16
[model]
width = 4
[grid]
depths = [8, 14]
shortcuts = ["A", "none"]
seeds = [0, 1]
"""


# Files of minutes-long end-to-end tests, longest first (seconds each took on 2026-12-02). With
# two workers a file stays on one (make test: --dist loadfile) and files are handed out in the
# order collected, so these start first instead of one of them running alone at the end.
HEAVY_FIRST = ("test_outage.py", "test_ray.py", "test_gpu_check.py", "test_parallel.py", "test_driver.py",
               "test_perf.py")  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated data sets go to a per-session temporary cache, never to the user's."""
    monkeypatch.setenv("RESNET_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One tiny sweep (2 depths x residual/plain x 2 seeds, 2 epochs) in two worker processes,
    shared read-only by the driver, parallel and report tests: (folder, experiment file,
    tracking URI); what it printed is in ``sweep.log``."""
    import contextlib
    import io

    from resnet_bench import cli

    tmp = tmp_path_factory.mktemp("sweep")
    exp = tmp / "tiny.toml"
    exp.write_text(TINY)
    uri = f"sqlite:///{tmp}/db.sqlite"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["run", str(exp), "--tracking-uri", uri, "--jobs", "2"])
    (tmp / "sweep.log").write_text(out.getvalue())
    assert code == 0, out.getvalue()
    return tmp, exp, uri
