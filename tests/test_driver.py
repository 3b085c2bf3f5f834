"""The driver end to end on a tiny model and tiny generated data, in a temporary store."""

import signal
import time

import pytest
from mlflow.tracking import MlflowClient

from resnet_bench import cli, config
from resnet_bench.driver import plan, select
from resnet_bench.tracking import Store

from .helpers import ROOT, all_runs, by_status, spawn, store_uri

pytestmark = pytest.mark.slow

METRICS = [
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_seconds",
    "step_ms_median",
    "step_ms_p90",
    "images_per_second",
    "learning_rate",
]
PARAMS = [
    "model",
    "seed",
    "depth",
    "shortcut",
    "flavour",
    "params_total",
    "params_trainable",
    "macs",
    "data_source",
    "data_hash",
    "data_train_count",
    "data_test_count",
    "data_counts",
    "data_skipped",
]
TAGS = [
    "bench_experiment",
    "config_hash",
    "run_key",
    "git_commit",
    "git_dirty",
    "tensorflow_version",
    "keras_version",
    "mlflow_version",
    "python_version",
    "cpu_model",
    "gpu",
    "host",
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One tiny sweep (2 depths x residual/plain x 2 seeds, 2 epochs) shared by several tests."""
    tmp = tmp_path_factory.mktemp("sweep")
    exp = tmp / "tiny.toml"
    from .conftest import TINY

    exp.write_text(TINY)
    uri = store_uri(tmp)
    assert cli.main(["run", str(exp), "--tracking-uri", uri]) == 0
    return tmp, exp, uri


def test_sweep_tracks_params_metrics_tags_artifacts(swept):
    tmp, exp, uri = swept
    runs = all_runs(uri, "tiny")
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted((r.data.params["model"], r.data.params["seed"]) for r in runs) == sorted(
        (m, s) for m in ("resnet8", "plain8", "resnet14", "plain14") for s in ("0", "1")
    )
    client = MlflowClient(tracking_uri=uri)
    cfg = config.load(exp)
    for run in runs:
        params = run.data.params
        for key in list(config.flatten(cfg)) + PARAMS:
            assert key in params, key
        assert params["params_total"] == str(int(params["params_trainable"]) + int(params["params_non_trainable"]))
        for key in TAGS:
            assert key in run.data.tags, key
        for key in METRICS + ["grad_norm/stage1", "grad_norm/stem", "grad_norm/head"]:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == [1, 2], key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.toml", "model_summary.txt", "history.csv"} <= artifacts
        assert not any(a.endswith(".h5") for a in artifacts)  # no weights by default


def test_rerun_trains_nothing_and_creates_no_runs(swept, capsys):
    tmp, exp, uri = swept
    before = {r.info.run_id for r in all_runs(uri, "tiny")}
    assert cli.main(["run", str(exp), "--tracking-uri", uri]) == 0
    assert {r.info.run_id for r in all_runs(uri, "tiny")} == before
    assert "8 already finished" in capsys.readouterr().out


def test_dry_run_lists_done_and_pending(swept, capsys):
    tmp, exp, uri = swept
    assert cli.main(["run", str(exp), "--tracking-uri", uri, "--dry-run", "--seeds", "0,5"]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 4 and out.count(" pending ") == 4


def test_same_seed_gives_the_same_losses(swept):
    """Determinism: seeded init, order and op determinism give identical losses on one machine."""
    tmp, exp, uri = swept
    client = MlflowClient(tracking_uri=uri)
    first = [r for r in all_runs(uri, "tiny") if r.data.params["model"] == "resnet14" and r.data.params["seed"] == "1"]
    assert cli.main(["run", str(exp), "--tracking-uri", uri, "--models", "resnet14", "--seeds", "1", "--force"]) == 0
    again = [r for r in all_runs(uri, "tiny") if r.data.params["model"] == "resnet14" and r.data.params["seed"] == "1"]
    assert len(again) == 2
    losses = [[m.value for m in client.get_metric_history(r.info.run_id, "train_loss")] for r in again]
    assert losses[0] == losses[1]
    assert first[0].info.run_id in {r.info.run_id for r in again}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "train.epochz=1"], "train.epochz"),
        (["--models", "resnet99"], "resnet99"),
        (["--data", "/nonexistent/photos"], "/nonexistent/photos"),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_create_no_run(tmp_path, tiny_file, capsys, args, needle):
    uri = store_uri(tmp_path)
    assert cli.main(["run", str(tiny_file), "--tracking-uri", uri, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err
    assert all_runs(uri, "tiny") == []


def test_unreachable_server_is_one_line_exit_2(tiny_file, capsys):
    assert cli.main(["run", str(tiny_file), "--tracking-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "127.0.0.1:9" in err and "unreachable" in err and "\n" not in err


def test_divergence_marks_failed_and_the_sweep_goes_on(tmp_path, tiny_file):
    uri = store_uri(tmp_path)
    args = [
        "run",
        str(tiny_file),
        "--tracking-uri",
        uri,
        "--seeds",
        "0",
        "--models",
        "plain8,resnet8",
        "--set",
        'train.optimizer="sgd"',
        "--set",
        "train.learning_rate=1e30",
    ]
    assert cli.main(args) == 1
    runs = all_runs(uri, "tiny")
    assert len(runs) == 2  # the sweep went on after the first failure
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert failed and all(r.data.tags["failure_reason"].startswith("diverged") for r in failed)
    assert all(r.info.status in ("FAILED", "FINISHED") for r in runs)


def test_interrupt_keeps_epochs_marks_killed_and_resumes(tmp_path, tiny_file):
    uri = store_uri(tmp_path)
    args = [
        "run",
        str(tiny_file),
        "--tracking-uri",
        uri,
        "--seeds",
        "0",
        "--models",
        "resnet8,plain8",
        "--set",
        "train.epochs=60",
    ]
    proc = spawn(args, cwd=tmp_path)
    client = MlflowClient(tracking_uri=uri)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until the second run is mid-way
        running = by_status(uri, "tiny", "RUNNING")
        if by_status(uri, "tiny", "FINISHED") and running:
            if client.get_metric_history(running[0].info.run_id, "train_loss"):
                break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    killed = by_status(uri, "tiny", "KILLED")
    assert len(killed) == 1
    assert client.get_metric_history(killed[0].info.run_id, "train_loss")  # epochs done are kept
    assert cli.main(args[:1] + args[1:] + []) == 0
    finished = by_status(uri, "tiny", "FINISHED")
    assert sorted(r.data.params["model"] for r in finished) == ["plain8", "resnet8"]


def test_sigkilled_run_is_found_and_rerun(tmp_path, tiny_file):
    uri = store_uri(tmp_path)
    args = [
        "run",
        str(tiny_file),
        "--tracking-uri",
        uri,
        "--seeds",
        "0",
        "--models",
        "resnet8",
        "--set",
        "train.epochs=60",
    ]
    proc = spawn(args, cwd=tmp_path)
    client = MlflowClient(tracking_uri=uri)
    deadline = time.time() + 240
    while time.time() < deadline:
        running = by_status(uri, "tiny", "RUNNING")
        if running and client.get_metric_history(running[0].info.run_id, "train_loss"):
            break
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert len(by_status(uri, "tiny", "RUNNING")) == 1  # left behind by the dead process
    cfg = config.load(tiny_file, ["train.epochs=60"])
    planned = plan(cfg, Store(uri), select(cfg, [0], ["resnet8"]))
    assert planned[0].state == "pending"  # its owner is dead, so it is not "running"
    assert (
        cli.main(
            [
                "run",
                str(tiny_file),
                "--tracking-uri",
                uri,
                "--seeds",
                "0",
                "--models",
                "resnet8",
                "--set",
                "train.epochs=2",
            ]
        )
        == 0
    )
    assert cli.main(args) == 0
    statuses = sorted(r.info.status for r in all_runs(uri, "tiny"))
    assert statuses == ["FINISHED", "FINISHED", "KILLED"]


def test_two_sweeps_at_once_neither_crash_nor_duplicate(tmp_path, tiny_file):
    uri = store_uri(tmp_path)
    args = ["run", str(tiny_file), "--tracking-uri", uri, "--models", "resnet8,plain8", "--set", "train.epochs=1"]
    procs = [spawn(args, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    finished = by_status(uri, "tiny", "FINISHED")
    keys = [r.data.tags["run_key"] for r in finished]
    assert len(keys) == 4 and len(set(keys)) == 4


def test_shipped_default_experiment_runs_one_epoch(tmp_path):
    """The must-show command, shrunk in data size so it fits the suite."""
    uri = store_uri(tmp_path)
    exp = ROOT / "experiments" / "shortcut_ablation.toml"
    args = [
        "run",
        str(exp),
        "--set",
        "train.epochs=1",
        "--seeds",
        "0",
        "--tracking-uri",
        uri,
        "--set",
        "data.train_size=64",
        "--set",
        "data.test_size=32",
    ]
    assert cli.main(args) == 0
    finished = by_status(uri, "shortcut_ablation", "FINISHED")
    assert sorted(r.data.params["model"] for r in finished) == ["plain20", "plain56", "resnet20", "resnet56"]


def test_photo_folder_run_logs_skipped_files(tmp_path, tiny_file):
    from .test_data import make_folder

    root = make_folder(tmp_path / "photos", n_train=8, n_test=2)
    (root / "training_set" / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    uri = store_uri(tmp_path)
    args = ["run", str(tiny_file), "--tracking-uri", uri, "--data", str(root), "--models", "resnet8", "--seeds", "0",
            "--set", "train.epochs=1", "--set", "train.batch_size=4", "--set", "data.max_bad_fraction=0.1"]
    assert cli.main(args) == 0
    (run,) = all_runs(uri, "tiny")
    assert run.data.params["data_source"] == "folder" and run.data.params["data_skipped"] == "1"
    assert run.data.params["data_counts"] == '{"test": {"cats": 2, "dogs": 2}, "train": {"cats": 8, "dogs": 8}}'
    text = MlflowClient(tracking_uri=uri).download_artifacts(run.info.run_id, "skipped_files.txt", str(tmp_path))
    assert "broken.jpg" in open(text).read()
