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
