"""`resnet-bench gpu-check` runs every stage at toy sizes on a machine without a GPU."""

import json

import pytest

from resnet_bench import cli
from resnet_bench.gpu_check import peak_for


@pytest.mark.slow
def test_gpu_check_on_cpu_runs_every_stage_and_says_so(tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert cli.main(["gpu-check", "--out", str(out), "--cpu-sizes"]) == 0
    text = out.read_text()
    assert "No GPU: sizes reduced, figures not meaningful" in text
    result = json.loads(out.with_suffix(".json").read_text())
    c = result["correctness"]
    assert c["finite"] and set(c["curves"]) == {"float32", "mixed_float16+xla"}
    assert [c["curves"][m]["jit_compiled"] for m in ("float32", "mixed_float16+xla")] == [False, True]
    assert [t["jit_compiled"] for t in result["throughput"]] == [False, True]  # XLA really on
    assert all(len(curve["train_loss"]) == 2 and curve["grad_norms"] for curve in c["curves"].values())
    modes = [(t["mode"], t["model"]) for t in result["throughput"]]
    assert modes == [("float32", "ours:resnet8"), ("mixed_float16+xla", "ours:resnet8")]  # toy sizes
    sizes = result["sizes"]
    for t in result["throughput"]:  # every image of every timed step is counted
        assert t["train_images"] == sizes["windows"] * sizes["steps"] * t["batch"]
    assert [p["model"] for p in result["paper_recipe"]] == ["resnet8", "resnet14"]  # toy sizes
    for p in result["paper_recipe"]:  # He et al.'s 64k iterations of batch 128 at the measured rate
        assert p["table6_hours"] == pytest.approx(64_000 * 128 / p["images_per_second"] / 3600)


def test_device_peaks_by_name():
    assert peak_for("NVIDIA H200", "float16") == 989.4
    assert peak_for("NVIDIA A100-SXM4-80GB", "float32") == 156.0
    assert peak_for("some other card", "float16") is None
