"""`resnet-bench perf` runs and reports the agreed keys (no timing is asserted)."""

import json

import pytest

from resnet_bench import cli
from resnet_bench.models import describe
from resnet_bench.spec import parse_model_name


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


@pytest.mark.slow
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
    for m in (ours, base):  # one window of 1 step at batch 2
        assert m["train_images"] == 1 * 1 * 2
        assert m["train_images_per_second"] == pytest.approx(m["train_images"] / m["train_seconds"])
        assert m["train_images_per_second_min"] == m["train_images_per_second"] == m["train_images_per_second_max"]
    assert ours["macs"] == describe(parse_model_name("resnet8"), (32, 32, 3), 3)["macs"]
    assert out["ratio"] == pytest.approx(ours["train_images_per_second"] / base["train_images_per_second"])


def test_a_model_timing_derives_rates_from_what_it_counted():
    """Hand-computed: windows of 2, 4 and 3 images/s give a median 3; a training image of
    10^9 MACs costs 3 passes x 2 FLOPs, so 3 images/s are 18 GFLOP/s, half a 36 GFLOP/s peak."""
    from resnet_bench.timing import ModelTiming

    t = ModelTiming("ours:x", False, 10**9, 1.5, 90, 30.0, (2.0, 4.0, 3.0), (8.0, 6.0, 7.0), 36.0)
    assert t.train_images_per_second == 3.0
    assert t.achieved_gflops == pytest.approx(18.0)
    assert t.percent_of_matmul_peak == pytest.approx(50.0)
    d = t.as_dict()
    assert (d["train_images_per_second_min"], d["train_images_per_second_max"]) == (2.0, 4.0)
    assert d["inference_images_per_second"] == 7.0


def test_a_sweep_timing_sets_its_arithmetic_against_its_wall_time_and_the_peak():
    """Hand-computed: 2 TFLOP in 10 s are 200 GFLOP/s, half a 400 GFLOP/s peak."""
    from resnet_bench.timing import SweepTiming

    d = SweepTiming("tiny", ("train.epochs=1",), 1, 2, 10.0, 2e12, 400.0).as_dict()
    assert (d["tflops"], d["achieved_gflops"], d["percent_of_matmul_peak"]) == (2.0, 200.0, 50.0)
    assert d["overrides"] == ["train.epochs=1"]


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


@pytest.mark.slow
def test_perf_times_a_whole_sweep(tiny_file, capsys):
    args = ["perf", "--model", "resnet8", "--image-size", "16", "--batch-size", "2", "--classes", "3",
            "--baseline", "none", "--windows", "1", "--steps", "1", "--json",
            "--sweep", str(tiny_file), "--jobs", "1", "--set", "train.epochs=1", "--set", "grid.seeds=[0]",
            "--set", "grid.depths=[8]"]  # fmt: skip
    assert cli.main(args) == 0
    sweep = json.loads(capsys.readouterr().out)["sweep"]
    assert sweep["runs"] == 2
    assert sweep["achieved_gflops"] == pytest.approx(1e3 * sweep["tflops"] / sweep["wall_seconds"])
    assert sweep["percent_of_matmul_peak"] == pytest.approx(100 * sweep["achieved_gflops"] / sweep["peak_gflops"])


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


@pytest.mark.slow
def test_the_keras_baseline_is_resnet50_the_size_of_ours():
    """What `make perf` times ours against: Keras' ResNet-50, within 1% of our resnet50's
    parameters (Keras' convolutions carry biases, ours feed batch norm and do not)."""
    from resnet_bench import timing

    name, build = timing.KERAS_BASELINE
    keras_params = build((32, 32, 3), 1000).count_params()
    ours = describe(parse_model_name("resnet50"), (32, 32, 3), 1000)["params_total"]
    assert name == "keras.applications:ResNet50"
    assert abs(keras_params - ours) / ours < 0.01, (keras_params, ours)
