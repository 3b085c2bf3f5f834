"""`resnet-bench perf` runs and reports the agreed keys (no timing is asserted)."""

import json

import pytest

from resnet_bench import cli

pytestmark = pytest.mark.slow


def test_perf_json_has_the_keys(capsys):
    args = [
        "perf",
        "--model",
        "resnet8",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--classes",
        "3",
        "--baseline",
        "keras",
        "--windows",
        "1",
        "--steps",
        "1",
        "--json",
    ]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("ours_images_per_second", "baseline_images_per_second", "ratio", "achieved_gflops", "peak_gflops"):
        assert out[key] > 0, key
    assert [m["model"] for m in out["models"]] == ["ours:resnet8", "keras.applications:ResNet50"]


def test_perf_rejects_unknown_model(capsys):
    assert cli.main(["perf", "--model", "vgg16", "--baseline", "none"]) == 2
    assert "vgg16" in capsys.readouterr().err


def test_sweep_flops_counts_training_three_times_and_evaluation_once():
    from types import SimpleNamespace

    from resnet_bench.perf import sweep_flops

    params = {"train.epochs": "2", "train.batch_size": "32", "data_train_count": "100", "data_test_count": "50",
              "train.grad_probe_size": "16", "macs": "1000"}  # fmt: skip
    run = SimpleNamespace(data=SimpleNamespace(params=params))
    # per epoch: 3 full batches of 32 trained (x3), 50 evaluated (x1), probe 16 (x3); 2 FLOPs per MAC
    assert sweep_flops([run, run]) == 2 * (2 * 1000 * (3 * 96 + 50 + 3 * 16) * 2)


def test_perf_times_a_whole_sweep(tiny_file, capsys):
    args = ["perf", "--model", "resnet8", "--image-size", "16", "--batch-size", "2", "--classes", "3",
            "--baseline", "none", "--windows", "1", "--steps", "1", "--json",
            "--sweep", str(tiny_file), "--jobs", "1", "--set", "train.epochs=1", "--set", "grid.seeds=[0]"]  # fmt: skip
    assert cli.main(args) == 0
    sweep = json.loads(capsys.readouterr().out)["sweep"]
    assert sweep["runs"] == 4
    for key in ("wall_seconds", "tflops", "achieved_gflops", "peak_gflops", "percent_of_matmul_peak"):
        assert sweep[key] > 0, key
