"""The driver end to end on a tiny model and tiny generated data, in a temporary store."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from resnet_bench import cli, config, schema
from resnet_bench.driver import plan, select
from resnet_bench.models import describe
from resnet_bench.schema import stored_key
from resnet_bench.tracking import Store, TrackedRun

from .helpers import EPOCH_METRICS, ROOT, TRAIN_LOSS, all_runs, by_status, spawn, store_uri

pytestmark = pytest.mark.slow


def cli_args(experiment, uri: str, extra: str = "") -> list[str]:
    """Arguments of ``resnet-bench run`` on ``experiment`` against the store ``uri``."""
    return ["run", str(experiment), "--tracking-uri", uri, *extra.split()]


# What the report reads, from the one place that declares it: every finished run must carry it.
PARAMS = [*schema.RUN_PARAMS, *schema.INFO_PARAMS]
TAGS = ["bench_experiment", *(t for t in schema.RUN_TAGS if t != "failure_reason")]  # a finished run has no failure


def test_sweep_tracks_params_metrics_tags_artifacts(tiny_sweep):
    tmp, exp, uri = tiny_sweep
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
        spec = next(s for s in cfg.variants() if s.name == params["model"])
        built = describe(spec, (16, 16, 3), 3)  # the logged counts are those of the network trained
        assert [int(params[k]) for k in ("params_total", "params_trainable", "macs")] == [
            built["params_total"], built["params_trainable"], built["macs"]]  # fmt: skip
        for key in TAGS:
            assert key in run.data.tags, key
        for key in EPOCH_METRICS + ["grad_norm/stage1", "grad_norm/stem", "grad_norm/head"]:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, stored_key(key))]
            assert steps == [1, 2], key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.toml", "model_summary.txt", "history.csv"} <= artifacts
        assert not any(a.endswith(".h5") for a in artifacts)  # no weights by default


def test_every_run_records_its_data_set_as_an_mlflow_dataset_input(tiny_sweep):
    _, _, uri = tiny_sweep
    client = MlflowClient(tracking_uri=uri)
    for run in all_runs(uri, "tiny"):
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1
        d = inputs[0].dataset
        assert d.digest == run.data.params["data_hash"] and d.source_type == "code"
        assert json.loads(d.profile)["train"] == int(run.data.params["data_train_count"])
        assert json.loads(d.source)["generator"] == "resnet_bench.data.synthetic"


def test_dataset_input_survives_a_concurrent_insert_of_the_same_dataset(tmp_path, monkeypatch):
    """Two runs logging one new dataset at once: the loser of MLflow's insert race retries."""
    from mlflow.exceptions import MlflowException

    from resnet_bench.tracking import TrackedRun

    store = Store(store_uri(tmp_path))
    exp_id = store.experiment_id("race")
    run_id = store.create_run(exp_id, {})
    calls, real = [], store.log_inputs

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "log_inputs", racing)
    TrackedRun(store, run_id).log_dataset("d", "abc", "code", {}, {}, {})
    assert len(calls) == 2
    assert [i.dataset.digest for i in store.get_run(run_id).inputs.dataset_inputs] == ["abc"]

    def broken(*args, **kwargs):
        raise MlflowException("RESOURCE_DOES_NOT_EXIST")

    monkeypatch.setattr(store, "log_inputs", broken)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):  # other errors are not retried
        TrackedRun(store, run_id).log_dataset("d", "abc", "code", {}, {}, {})


def test_rerun_trains_nothing_and_creates_no_runs(tiny_sweep, capsys):
    tmp, exp, uri = tiny_sweep
    before = {r.info.run_id for r in all_runs(uri, "tiny")}
    assert cli.main(["run", str(exp), "--tracking-uri", uri]) == 0
    assert {r.info.run_id for r in all_runs(uri, "tiny")} == before
    assert "8 already finished" in capsys.readouterr().out


def test_dry_run_lists_done_and_pending(tiny_sweep, capsys):
    tmp, exp, uri = tiny_sweep
    assert cli.main(["run", str(exp), "--tracking-uri", uri, "--dry-run", "--seeds", "0,5"]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 4 and out.count(" pending ") == 4


def test_same_seed_gives_the_same_losses(tmp_path, tiny_file):
    """Determinism: seeded init, order and op determinism give identical losses on one machine."""
    uri = store_uri(tmp_path)
    args = ["run", str(tiny_file), "--tracking-uri", uri, "--models", "resnet14", "--seeds", "1"]
    assert cli.main(args) == 0
    assert cli.main([*args, "--force"]) == 0
    runs = all_runs(uri, "tiny")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri=uri)
    losses = [[m.value for m in client.get_metric_history(r.info.run_id, TRAIN_LOSS)] for r in runs]
    assert losses[0] == losses[1] and len(losses[0]) == 2


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
    args = cli_args(
        tiny_file, uri, '--seeds 0 --models plain8,resnet8 --set train.optimizer="sgd" --set train.learning_rate=1e30'
    )
    assert cli.main(args) == 1
    runs = all_runs(uri, "tiny")
    assert len(runs) == 2  # the sweep went on after the first failure
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert failed and all(r.data.tags["failure_reason"].startswith("diverged") for r in failed)
    assert all(r.info.status in ("FAILED", "FINISHED") for r in runs)


def test_interrupt_keeps_epochs_marks_killed_and_resumes(tmp_path, tiny_file, capsys, monkeypatch):
    """A real SIGINT to this process as the second of two runs logs its first epoch: exit code
    130 and one line, the first run FINISHED, the second KILLED with that epoch kept, and the
    same command trains it again. The signal is sent from the epoch hook itself, so it lands
    mid-run on any machine with runs of a second (no thread racing a clock); the networks
    traced before it serve the resume. A program ending on a signal in a process of its own,
    at moments the clock picks, is test_parallel's."""
    uri = store_uri(tmp_path)
    args = cli_args(tiny_file, uri, "--seeds 0 --models resnet8,plain8 --jobs 1")  # one run after the other
    client = MlflowClient(tracking_uri=uri)
    log_epoch, seen = TrackedRun.log_epoch, []

    def interrupt_at_second_runs_first_epoch(run, row):
        log_epoch(run, row)
        if run.run_id not in seen:
            seen.append(run.run_id)
            if len(seen) == 2:
                os.kill(os.getpid(), signal.SIGINT)  # raised here, in the training loop's callback

    monkeypatch.setattr(TrackedRun, "log_epoch", interrupt_at_second_runs_first_epoch)
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err and err.count("interrupted: ") == 1, err
    killed = by_status(uri, "tiny", "KILLED")
    assert [r.info.run_id for r in killed] == seen[1:]
    assert [m.step for m in client.get_metric_history(seen[1], TRAIN_LOSS)] == [1]  # the epoch done is kept
    assert [r.info.run_id for r in by_status(uri, "tiny", "FINISHED")] == seen[:1]
    monkeypatch.undo()
    assert cli.main(args) == 0
    finished = by_status(uri, "tiny", "FINISHED")
    assert sorted(r.data.params["model"] for r in finished) == ["plain8", "resnet8"]


def test_a_run_left_running_by_a_dead_process_is_found_and_rerun(tmp_path, tiny_file):
    """What a SIGKILLed sweep leaves behind (a RUNNING run, its epochs, a pid that is gone) is
    marked KILLED by the next sweep and trained again. The decision itself is test_lease's;
    killing a real sweep is test_parallel's."""
    uri = store_uri(tmp_path)
    args = cli_args(tiny_file, uri, "--seeds 0 --models resnet8 --set train.epochs=1")
    cfg = config.load(tiny_file, ["train.epochs=1"])
    spec = next(s for s in cfg.variants() if s.name == "resnet8")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid of this host that no longer runs
    store = Store(uri)
    exp = store.experiment_id("tiny")
    tags = {"run_key": cfg.run_key(spec, 0), "owner_host": socket.gethostname(), "owner_pid": dead.pid}
    left = store.create_run(exp, {**tags, "claim": "ready", "claim_ticket": 1})
    store.log_epoch(left, {"epoch": 1, "train_loss": 1.0})
    planned = plan(cfg, store, select(cfg, [0], ["resnet8"]))
    assert planned[0].state == "pending"  # its owner is dead, so it is not "running"
    assert cli.main(args) == 0
    assert store.get_run(left).info.status == "KILLED"
    assert store.metric_history(left, TRAIN_LOSS)[0].value == 1.0  # what it logged stays
    statuses = sorted(r.info.status for r in all_runs(uri, "tiny"))
    assert statuses == ["FINISHED", "KILLED"]


def test_two_sweeps_at_once_neither_crash_nor_duplicate_and_only_v_shows_tensorflow(tmp_path, tiny_file):
    """Two processes sweep the same runs side by side: every run is trained once. The second
    is started with ``-v``, so the same pair also shows that a sweep's stderr stays empty
    unless asked (with ``-v`` TensorFlow's start-up lines are back on it); each process start
    costs TensorFlow's import, 10 s of CPU here. The store is new: both create it at once."""
    uri = store_uri(tmp_path, fresh=True)
    args = ["run", str(tiny_file), "--tracking-uri", uri, "--models", "resnet8,plain8", "--set", "train.epochs=1"]
    procs = [spawn(a, cwd=tmp_path, stderr=subprocess.PIPE) for a in (args, ["-v", *args])]
    (out, err), (loud_out, loud_err) = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], (out, err, loud_out, loud_err)
    finished = by_status(uri, "tiny", "FINISHED")
    keys = [r.data.tags["run_key"] for r in finished]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert err == "" and "runs planned" in out
    assert loud_err.strip() and "runs planned" in loud_out


def test_shipped_default_experiment_runs_one_epoch(tmp_path):
    """The must-show command, shrunk in data size so it fits the suite."""
    uri = store_uri(tmp_path)
    exp = ROOT / "experiments" / "shortcut_ablation.toml"
    # One depth, the smallest of the family (every setting of the file applies at any depth;
    # this test took 34 s of the suite at depth 20, 17 s at depth 8), in this process (--jobs 1: two
    # workers would load TensorFlow twice more; pools are test_parallel's).
    extra = "--set train.epochs=1 --seeds 0 --set data.train_size=64 --set data.test_size=32 --set grid.depths=[8]"
    extra += " --jobs 1"
    assert cli.main(cli_args(exp, uri, extra)) == 0
    finished = by_status(uri, "shortcut_ablation", "FINISHED")
    assert sorted(r.data.params["model"] for r in finished) == ["plain8", "resnet8"]


def test_photo_folder_run_logs_skipped_files(tmp_path, tiny_file):
    from .test_data import make_folder

    root = make_folder(tmp_path / "photos", n_train=8, n_test=2)
    (root / "training_set" / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    uri = store_uri(tmp_path)
    extra = "--models resnet8 --seeds 0 --set train.epochs=1 --set train.batch_size=4 --set data.max_bad_fraction=0.1"
    args = cli_args(tiny_file, uri, f"--data {root} {extra}")
    assert cli.main(args) == 0
    (run,) = all_runs(uri, "tiny")
    assert run.data.params["data_source"] == "folder" and run.data.params["data_skipped"] == "1"
    assert run.data.params["data_counts"] == '{"test": {"cats": 2, "dogs": 2}, "train": {"cats": 8, "dogs": 8}}'
    text = MlflowClient(tracking_uri=uri).download_artifacts(run.info.run_id, "skipped_files.txt", str(tmp_path))
    assert "broken.jpg" in open(text).read()


def test_runs_of_other_hosts_are_reaped_only_without_heartbeat(tmp_path):
    store = Store(store_uri(tmp_path))
    exp = store.experiment_id("hosts")
    now = time.time()
    owner = {"owner_host": "elsewhere", "owner_pid": "1"}
    stale = store.create_run(exp, {"run_key": "k1", "heartbeat": f"{now - 3600:.0f}", **owner})
    live = store.create_run(exp, {"run_key": "k2", "heartbeat": f"{now:.0f}", **owner})
    assert store.reap(exp, "k1") == 1 and store.reap(exp, "k2") == 0
    assert store.get_run(stale).info.status == "KILLED"
    assert store.get_run(live).info.status == "RUNNING"
    assert store.claim(exp, "k2", {}) is None  # a live claim elsewhere wins
    assert store.claim(exp, "k1", {}) is not None


def test_a_run_cut_short_by_a_stop_is_killed_whatever_exception_the_cut_became(tmp_path, capfd):
    """A SIGTERM that lands inside TensorFlow can come out as a SystemError: the run was cut
    short by the stop, so it ends KILLED with its epochs kept, quietly, and the stop goes on up."""
    from resnet_bench import signals
    from resnet_bench.errors import Terminated

    store = Store(store_uri(tmp_path))
    exp = store.experiment_id("stops")
    with pytest.raises(SystemError), store.tracked_run(exp, "k", {}) as run:
        run.log_epoch({"epoch": 1, "train_loss": 1.5})
        with signals.raising():
            try:
                signal.raise_signal(signal.SIGTERM)
            except Terminated:
                raise SystemError("Objects/listobject.c:338: bad argument to internal function") from None
    (done,) = store.runs(exp)
    assert done.info.status == "KILLED" and done.data.metrics[TRAIN_LOSS] == 1.5
    assert "Traceback" not in capfd.readouterr().err
