"""Runs side by side in local worker processes (``--jobs``), and compiled models reused across seeds."""

import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from resnet_bench import cli, config, data, pools
from resnet_bench.train import clear_compiled, train_run

from .helpers import (
    SLOW_RUN,
    TRAIN_LOSS,
    by_status,
    finished_losses,
    has_tensorflow,
    live_children,
    spawn,
    started,
    still_running,
    store_uri,
    wait_for_mid_run,
)

pytestmark = pytest.mark.slow


def test_reused_model_gives_the_numbers_of_a_fresh_one(tiny_file):
    """Seed 1 after seed 0 on the same compiled model equals seed 1 on a freshly built one."""
    cfg = config.load(tiny_file)
    spec = next(s for s in cfg.variants() if s.name == "resnet8")
    arrays = data.load(cfg.data)
    clear_compiled()
    first = train_run(cfg, spec, 0, arrays)
    reused = train_run(cfg, spec, 1, arrays)
    assert reused.model is first.model  # the same compiled model, not a new one
    clear_compiled()
    fresh = train_run(cfg, spec, 1, arrays)
    assert fresh.model is not first.model
    for key in ("train_loss", "val_loss", "grad_norm/stage1"):
        assert [r[key] for r in reused.history] == [r[key] for r in fresh.history], key
    again = train_run(cfg, spec, 0, arrays)  # and back to seed 0 on the reused one
    assert [r["train_loss"] for r in again.history] == [r["train_loss"] for r in first.history]


def test_parallel_sweep_equals_in_process_sweep(tiny_sweep, tmp_path):
    """tiny_sweep ran with --jobs 2; the same runs in this process give bit-identical losses."""
    _, exp, uri = tiny_sweep
    reference = store_uri(tmp_path)
    args = ["run", str(exp), "--tracking-uri", reference, "--jobs", "1", "--models", "resnet14,plain8", "--seeds", "1"]
    assert cli.main(args) == 0
    ours, theirs = finished_losses(uri, "tiny"), finished_losses(reference, "tiny")
    assert set(theirs) == {("resnet14", "1"), ("plain8", "1")}
    for key, losses in theirs.items():
        assert ours[key] == losses and len(losses) == 2, key


def test_parallel_sweep_prints_epochs_and_overall_progress(tiny_sweep):
    out = (tiny_sweep[0] / "sweep.log").read_text()
    assert "2 local worker processes" in out
    assert out.count("epoch 2/2:") == 8
    assert "[sweep 8/8 done]" in out and "ETA" in out


def test_auto_jobs_fills_the_cores(monkeypatch):
    monkeypatch.setattr(pools, "available_cores", lambda: 8)
    assert pools.auto_jobs(1, 12) == 8
    assert pools.auto_jobs(2, 12) == 4
    assert pools.auto_jobs(0, 12) == 1  # TensorFlow's default pool takes every core
    assert pools.auto_jobs(1, 3) == 3  # never more workers than runs
    assert pools.auto_jobs(16, 3) == 1


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_jobs_is_one_line_exit_2(tiny_file, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(tiny_file), "--tracking-uri", store_uri(tmp_path, fresh=True), "--jobs", value])
    assert e.value.code == 2
    assert "--jobs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, named",
    [(["--address", "auto"], "--address"), (["--gpus-per-run", "1"], "--gpus-per-run"),
     (["--executor", "ray", "--jobs", "2"], "--jobs")],
)  # fmt: skip
def test_an_option_of_the_other_executor_is_one_line_exit_2(tiny_file, tmp_path, capsys, flags, named):
    """Not silently dropped: a Ray option with the local executor, or --jobs with Ray."""
    assert cli.main(["run", str(tiny_file), "--tracking-uri", store_uri(tmp_path, fresh=True), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {named} applies to --executor"), err
    assert not (tmp_path / "db.sqlite").exists()  # nothing planned, no store made


def _two_job_sweep_under_way(tmp_path, tiny_file):
    """A --jobs 2 sweep of two long runs in a subprocess, once one of them has logged an epoch:
    (store URI, its arguments, the process, that run)."""
    uri = store_uri(tmp_path)
    args = ["run", str(tiny_file), "--tracking-uri", uri, "--jobs", "2", "--seeds", "0", *SLOW_RUN.split()]
    args += ["--models", "resnet8,plain8"]
    proc = spawn(args, cwd=tmp_path)
    return uri, args, proc, wait_for_mid_run(uri, "tiny", proc)


def test_interrupted_parallel_sweep_keeps_its_epochs_and_plans_both_runs_again(tmp_path, tiny_file, capsys):
    uri, args, proc, _ = _two_job_sweep_under_way(tmp_path, tiny_file)
    # The workers train; the sweep itself only loads the data and hands out runs, so it never
    # pays TensorFlow's import (10 s here). The worker mid-run is the control.
    workers = [pid for pid in live_children(proc.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2 and any(has_tensorflow(pid) for pid in workers)
    assert not has_tensorflow(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and out.count("interrupted: ") == 1, out
    assert "absl::" not in out, out  # the workers loaded TensorFlow quietly
    assert by_status(uri, "tiny", "RUNNING") == []
    killed = by_status(uri, "tiny", "KILLED")  # the runs in flight, the epochs they logged kept
    assert sorted(r.data.params["model"] for r in killed) == ["plain8", "resnet8"]
    assert any(MlflowClient(tracking_uri=uri).get_metric_history(r.info.run_id, TRAIN_LOSS) for r in killed)
    # What the same command would do next is read from the store: train both again, each once.
    # (Planned, not trained: retraining a KILLED run is test_driver's interrupt test, and who
    # claims it test_lease's.)
    capsys.readouterr()
    assert cli.main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "2 runs planned, 0 already finished" in plan and plan.count(" pending ") == 2, plan


@pytest.mark.parametrize(
    "sig,moment",
    [
        (signal.SIGINT, "runs planned"),  # as the data loads and the pool starts (no TensorFlow here)
        (signal.SIGINT, "local worker processes"),  # while the workers boot and import it
        (signal.SIGTERM, "started on worker"),  # as the first runs are handed out
    ],
)
def test_an_interrupt_while_a_sweep_starts_is_one_line(tmp_path, tiny_file, sig, moment):
    """SIGINT or SIGTERM right after the sweep prints ``moment``: exit 130 or 143, one line, no
    traceback, no run left RUNNING, no worker left behind. (A worker that dies mid-sweep and the
    pool's ending of its workers are test_scheduler's, with fake runs.)"""
    uri = store_uri(tmp_path)
    args = ["run", str(tiny_file), "--tracking-uri", uri, "--jobs", "2", "--seeds", "0", "--models", "resnet8,plain8"]
    proc = spawn(args, cwd=tmp_path)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if moment in line:
            break
    children = {pid: started(pid) for pid in live_children(proc.pid)}
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=180)
    out = "".join(seen) + rest
    word = {signal.SIGINT: "interrupted: ", signal.SIGTERM: "terminated: "}[sig]
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], out
    assert "Traceback" not in out and out.count(word) == 1, out
    assert by_status(uri, "tiny", "RUNNING") == []
    deadline = time.time() + 10
    while still_running(children) and time.time() < deadline:
        time.sleep(0.2)
    assert not still_running(children), out
