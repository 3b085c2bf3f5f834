"""`resnet-bench perf` runs and reports the agreed keys (no timing is asserted)."""

import json

import pytest

from resnet_bench import cli
from resnet_bench.models import describe
from resnet_bench.spec import parse_model_name

pytestmark = pytest.mark.slow


def _small_keras_baseline(shape, classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def test_perf_json_has_the_keys(capsys, monkeypatch):
    """Ours against a Keras baseline in interleaved windows. The baseline is a one-convolution
    net here (ResNet-50, the one `make perf` times, took most of a minute to build and trace);
    the code that times and compares it is the same."""
    from resnet_bench import timing

    monkeypatch.setattr(timing, "KERAS_BASELINE", ("keras:one_conv", _small_keras_baseline))
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
    assert [m["model"] for m in out["models"]] == ["ours:resnet8", "keras:one_conv"]
    ours, base = out["models"]
    for m in (ours, base):  # one window of 1 step at batch 2: the rate is 2 images over the window's time
        assert m["train_images"] == 1 * 1 * 2
        assert m["train_images_per_second"] == pytest.approx(m["train_images"] / m["train_seconds"])
    assert out["ratio"] == pytest.approx(ours["train_images_per_second"] / base["train_images_per_second"])
    assert ours["macs"] == describe(parse_model_name("resnet8"), (32, 32, 3), 3)["macs"]
    # a training image costs 3 forward passes, 2 FLOPs per MAC
    assert out["achieved_gflops"] == pytest.approx(6 * ours["macs"] * ours["train_images_per_second"] / 1e9)
    assert out["peak_gflops"] > 0


def test_perf_rejects_unknown_model(capsys):
    assert cli.main(["perf", "--model", "vgg16", "--baseline", "none"]) == 2
    assert "vgg16" in capsys.readouterr().err


def test_sweep_flops_counts_training_three_times_and_evaluation_once():
    from types import SimpleNamespace

    from resnet_bench.timing import sweep_flops

    params = {"train.epochs": "2", "train.batch_size": "32", "data_train_count": "100", "data_test_count": "50",
              "train.grad_probe_size": "16", "macs": "1000"}  # fmt: skip
    run = SimpleNamespace(data=SimpleNamespace(params=params))
    # per epoch: 3 full batches of 32 trained (x3), 50 evaluated (x1), probe 16 (x3); 2 FLOPs per MAC
    assert sweep_flops([run, run]) == 2 * (2 * 1000 * (3 * 96 + 50 + 3 * 16) * 2)


def test_perf_times_a_whole_sweep(tiny_file, capsys):
    args = ["perf", "--model", "resnet8", "--image-size", "16", "--batch-size", "2", "--classes", "3",
            "--baseline", "none", "--windows", "1", "--steps", "1", "--json",
            "--sweep", str(tiny_file), "--jobs", "1", "--set", "train.epochs=1", "--set", "grid.seeds=[0]",
            "--set", "grid.depths=[8]"]  # fmt: skip
    assert cli.main(args) == 0
    sweep = json.loads(capsys.readouterr().out)["sweep"]
    assert sweep["runs"] == 2
    assert sweep["wall_seconds"] > 0 and sweep["peak_gflops"] > 0  # measured: only their sign is known
    # the rest is derived from them and from the runs' logged work
    assert sweep["achieved_gflops"] == pytest.approx(sweep["tflops"] * 1e3 / sweep["wall_seconds"])
    assert sweep["percent_of_matmul_peak"] == pytest.approx(100 * sweep["achieved_gflops"] / sweep["peak_gflops"])
    assert sweep["tflops"] > 0


@pytest.mark.parametrize("intra,inter,where", [(0, 0, "here"), (1, 0, "fresh"), (0, 2, "fresh")])
def test_the_sweeps_peak_is_measured_with_default_threads(monkeypatch, intra, inter, where):
    """In this process while its pools are TensorFlow's default, in a fresh one once sized."""
    import tensorflow as tf

    from resnet_bench import timing

    monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: intra)
    monkeypatch.setattr(tf.config.threading, "get_inter_op_parallelism_threads", lambda: inter)
    monkeypatch.setattr(timing, "matmul_peak_gflops", lambda: "here")
    monkeypatch.setattr(timing, "_peak_in_fresh_process", lambda: "fresh")
    assert timing.default_threads_peak() == where


def test_the_keras_baseline_is_resnet50_the_size_of_ours():
    """What `make perf` times ours against: Keras' ResNet-50, within 1% of our resnet50's
    parameters (Keras' convolutions carry biases, ours feed batch norm and do not)."""
    from resnet_bench import timing

    name, build = timing.KERAS_BASELINE
    keras_params = build((32, 32, 3), 1000).count_params()
    ours = describe(parse_model_name("resnet50"), (32, 32, 3), 1000)["params_total"]
    assert name == "keras.applications:ResNet50"
    assert abs(keras_params - ours) / ours < 0.01, (keras_params, ours)
