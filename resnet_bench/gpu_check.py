"""The GPU path proven by one prepared command (``resnet-bench gpu-check``, ``make gpu-check``).

GPU time is short and lent only to some sessions, so everything a GPU check needs runs in
one call and writes one report (``reports/gpu.md`` plus a JSON beside it):

1. **Correctness.** A CIFAR-style resnet20 (resnet8 at toy sizes) trained briefly on generated 32 px data in
   float32 without XLA, then with the GPU defaults (mixed float16 + XLA), same seed and data
   order. Every loss and gradient-probe norm must be finite, and the mixed-precision loss
   curve must stay within :data:`LOSS_TOLERANCE` of the float32 one.
2. **Throughput.** Our ResNet-50 against ``keras.applications.ResNet50`` at 224 px, in
   float32 and in mixed float16 + XLA (interleaved windows, as ``resnet-bench perf``), with
   the share of the device's dense peak for that dtype (:data:`PEAK_TFLOPS`).
3. **A taste of the paper's recipe.** resnet20 and resnet56 (8 and 14 at toy sizes) with He et al.'s optimiser (SGD
   0.1, momentum 0.9, L2 weight decay 1e-4, batch 128) for a fixed number of steps; the rate
   gives the time a full 64k-iteration Table 6 run would take.

Without a GPU the same stages run at toy sizes, so the suite tests this code on any machine;
the report then says that its figures mean nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

LOSS_TOLERANCE = 0.05
"""Largest relative gap allowed between the mixed-float16 and float32 loss curves.

float16 rounds every activation to 11 significant bits, so the two runs start to differ at
the first step and drift apart slowly; over a few epochs of the same seed and batches their
losses stay within a few percent. A gap above 5% means something more than rounding (a
loss-scale or cast bug, or a layer that must stay in float32), which is what this check is for.
"""

PAPER_ITERATIONS = 64_000  # He et al. section 4.2: 64k iterations at batch 128

# Dense (no sparsity) peak throughput in TFLOP/s from NVIDIA's datasheets. "float32" on these
# GPUs means TF32 tensor cores, which TensorFlow uses for float32 convolutions and matmuls by
# default; "float16" is FP16/BF16 tensor cores.
PEAK_TFLOPS = {
    "H200": {"float32": 494.7, "float16": 989.4},  # H200 SXM datasheet (same cores as H100 SXM)
    "H100": {"float32": 494.7, "float16": 989.4},  # H100 SXM datasheet
    "A100": {"float32": 156.0, "float16": 312.0},  # A100 datasheet
    "L40S": {"float32": 183.0, "float16": 362.0},  # L40S datasheet
    "L4": {"float32": 60.0, "float16": 121.0},  # L4 datasheet
    "V100": {"float32": 15.7, "float16": 125.0},  # V100 SXM2 datasheet (no TF32)
}


def peak_for(device_name: str, dtype: str) -> float | None:
    """The dense peak of a device by (part of) its name, or None when it is not in the table."""
    for key, peaks in PEAK_TFLOPS.items():
        if key.lower() in device_name.lower():
            return peaks[dtype]
    return None


def _sizes(gpu: bool) -> dict:
    if gpu:
        return {"image": 32, "train": 10_000, "test": 2_000, "epochs": 3, "big_model": "resnet50",
                "baseline": "keras", "big_image": 224, "big_batch": 128, "big_classes": 1000,
                "windows": 5, "steps": 20, "taste_steps": 300, "batch": 128,
                "depth": 20, "taste_depths": (20, 56)}  # fmt: skip
    # Toy sizes: every stage and both modes run, on the smallest nets that exercise the same
    # code (CIFAR resnet8 and resnet14, no keras baseline). XLA-compiling two ResNet-50s took
    # 2.5 minutes on 2 CPU cores; an ImageNet-style resnet18 in stage 2 took 46 s of the
    # check's 85 (resnet8: 19 s). The comparison with keras.applications itself is exercised
    # by `resnet-bench perf`'s tests.
    return {"image": 16, "train": 128, "test": 32, "epochs": 2, "big_model": "resnet8", "baseline": "none",
            "big_image": 16, "big_batch": 4, "big_classes": 10,
            "windows": 1, "steps": 2, "taste_steps": 4, "batch": 16,
            "depth": 8, "taste_depths": (8, 14)}  # fmt: skip


def _config(sizes: dict, mixed: str, jit: str, extra: dict | None = None, depth: int | None = None):
    from . import config

    raw = {
        "name": "gpu_check",
        "data": {
            "source": "synthetic",
            "image_size": sizes["image"],
            "classes": 10,
            "train_size": sizes["train"],
            "test_size": sizes["test"],
        },  # fmt: skip
        "train": {
            "epochs": sizes["epochs"],
            "batch_size": sizes["batch"],
            "mixed_precision": mixed,
            "jit_compile": jit,
            **(extra or {}),
        },  # fmt: skip
        "model": {"family": "cifar"},
        "grid": {"depths": [depth or sizes["depth"]], "shortcuts": ["A"], "seeds": [0]},
    }
    return config.from_dict(raw, "gpu-check")


def check_correctness(sizes: dict) -> dict:
    """float32 against the GPU defaults on the same seed and batches."""
    from . import data, schema
    from .train import train_run

    curves = {}
    for label, mixed, jit in (("float32", "off", "off"), ("mixed_float16+xla", "float16", "on")):
        cfg = _config(sizes, mixed, jit, {"deterministic": False})  # XLA only compiles without op determinism
        spec = cfg.variants()[0]
        result = train_run(cfg, spec, 0, data.load(cfg.data), reuse=False)
        curves[label] = {
            "jit_compiled": result.model_info["jit_compile_resolved"],
            "train_loss": [r["train_loss"] for r in result.history],
            "grad_norms": [v for r in result.history for k, v in r.items() if k.startswith(schema.GRAD_NORM_PREFIX)],
        }
    ref, mp = curves["float32"]["train_loss"], curves["mixed_float16+xla"]["train_loss"]
    finite = all(math.isfinite(x) for c in curves.values() for x in c["train_loss"] + c["grad_norms"])
    gap = max(abs(a - b) / abs(a) for a, b in zip(ref, mp))
    xla = curves["mixed_float16+xla"]["jit_compiled"]  # Keras may decline XLA (it warns, then trains without)
    return {"curves": curves, "finite": finite, "max_relative_gap": gap, "tolerance": LOSS_TOLERANCE,
            "xla_compiled": xla, "passed": finite and xla and gap <= LOSS_TOLERANCE}  # fmt: skip


def check_throughput(sizes: dict, device_name: str) -> list[dict]:
    """Ours and keras.applications' ResNet-50, float32 and mixed float16 + XLA."""
    import keras
    import tensorflow as tf

    from .timing import measure_models, training_flops

    rows = []
    for label, policy, jit, dtype in (("float32", "float32", False, "float32"),
                                      ("mixed_float16+xla", "mixed_float16", True, "float16")):  # fmt: skip
        keras.mixed_precision.set_global_policy(policy)
        batch = sizes["big_batch"]
        while True:
            try:
                out = measure_models([sizes["big_model"]], sizes["big_image"], batch, sizes["big_classes"],
                                     sizes["baseline"], sizes["windows"], sizes["steps"], jit=jit)  # fmt: skip
                break
            except tf.errors.ResourceExhaustedError:
                if batch <= 8:
                    raise
                batch //= 2  # the largest batch that fits, stated in the report
                keras.backend.clear_session()
        peak = peak_for(device_name, dtype)
        for r in out["models"]:
            tflops = training_flops(r["macs"], r["train_images_per_second"]) / 1e12
            rows.append({"mode": label, "model": r["model"], "batch": batch, "jit_compiled": r["jit_compiled"],
                         "train_images": r["train_images"], "train_seconds": r["train_seconds"],
                         "train_images_per_second": r["train_images_per_second"],
                         "inference_images_per_second": r["inference_images_per_second"],
                         "achieved_tflops": tflops, "percent_of_peak": 100 * tflops / peak if peak else None,
                         "ratio_to_keras": out.get("ratio") if r["model"].startswith("ours") else None})  # fmt: skip
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
    return rows


def check_paper_recipe(sizes: dict) -> list[dict]:
    """resnet20 and resnet56 (toy sizes: 8 and 14) with the paper's optimiser for a fixed number of steps."""
    from . import data
    from .train import train_run

    extra = {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
             "weight_decay_mode": "l2"}  # fmt: skip
    rows = []
    for depth in sizes["taste_depths"]:
        steps_per_epoch = max(1, sizes["taste_steps"] // 2)
        cfg = _config({**sizes, "train": steps_per_epoch * sizes["batch"], "epochs": 2}, "auto", "auto", extra, depth)
        spec = cfg.variants()[0]
        result = train_run(cfg, spec, 0, data.load(cfg.data), reuse=False)
        ips = result.history[-1]["images_per_second"]  # epoch 2: tracing and compilation excluded
        rows.append({"model": spec.name, "steps": 2 * steps_per_epoch, "images_per_second": ips,
                     "final_train_loss": result.history[-1]["train_loss"],
                     "table6_hours": PAPER_ITERATIONS * 128 / ips / 3600})  # fmt: skip
    return rows


def run(out: Path, force_cpu_sizes: bool = False) -> dict:
    """Every stage; writes ``out`` (Markdown) and ``out.with_suffix('.json')``."""
    import tensorflow as tf

    from .provenance import environment

    gpus = tf.config.list_physical_devices("GPU")
    gpu = bool(gpus) and not force_cpu_sizes
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "none"
    sizes = _sizes(gpu)
    t0 = time.perf_counter()
    result = {"gpu": gpu, "device_name": name, "environment": environment(), "sizes": sizes}
    result["correctness"] = check_correctness(sizes)
    result["throughput"] = check_throughput(sizes, name)
    result["paper_recipe"] = check_paper_recipe(sizes)
    result["seconds"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.write_text(to_markdown(result))
    return result


def _num(x, fmt=".1f"):
    return "n/a" if x is None else f"{x:{fmt}}"


def to_markdown(r: dict) -> str:
    env, c = r["environment"], r["correctness"]
    L = ["# GPU check", ""]
    if not r["gpu"]:
        L += ["**No GPU: sizes reduced, figures not meaningful.** This run only shows that every stage works.", ""]
    L += [
        "Command: `resnet-bench gpu-check --out reports/gpu.md` (`make gpu-check`).",
        "",
        f"Device: {r['device_name']} (CPU {env['cpu']}); TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"Python {env['python']}. Whole check: {r['seconds']:.0f} s.",
        "",
        "## Correctness: float32 against mixed float16 + XLA",
        "",
        f"CIFAR-style resnet{r['sizes']['depth']}, generated {r['sizes']['image']} px data, "
        f"{r['sizes']['train']} training images, "
        f"{r['sizes']['epochs']} epochs, batch {r['sizes']['batch']}, same seed and batches in both modes.",
        "",
        "| mode | XLA compiled | training loss per epoch |",
        "|---|---|---|",
    ]
    for mode, curve in c["curves"].items():
        L.append(f"| {mode} | {curve['jit_compiled']} | {', '.join(f'{x:.4f}' for x in curve['train_loss'])} |")
    verdict = "passed" if c["passed"] else "FAILED"
    L += [
        "",
        f"**{verdict}**: losses and gradient-probe norms finite: {c['finite']}; XLA compiled: {c['xla_compiled']}; "
        "largest relative gap between "
        f"the curves {c['max_relative_gap']:.3f} (tolerance {c['tolerance']}: float16 rounding makes the runs "
        "drift apart slowly; more than that means a precision bug, not rounding).",
        "",
        f"## Throughput: {r['sizes']['big_model']}, ours"
        + (" against keras.applications" if r["sizes"]["baseline"] == "keras" else " (no keras baseline at toy sizes)"),
        "",
        f"{r['sizes']['big_image']} px, interleaved windows of {r['sizes']['steps']} steps; % of the dense peak for "
        "the mode's dtype (TF32 tensor cores for float32) from NVIDIA's datasheet.",
        "",
        "| mode | model | XLA compiled | batch | train images/s | inference images/s | TFLOP/s | % of peak "
        "| ours / keras |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r["throughput"]:
        L.append(
            f"| {t['mode']} | {t['model']} | {t['jit_compiled']} | {t['batch']} | {t['train_images_per_second']:.1f} | "
            f"{t['inference_images_per_second']:.1f} | {t['achieved_tflops']:.2f} | {_num(t['percent_of_peak'])} | "
            f"{_num(t['ratio_to_keras'], '.2f')} |"
        )
    L += [
        "",
        "## The paper's recipe, a taste",
        "",
        "SGD lr 0.1, momentum 0.9, L2 weight decay 1e-4 on conv and dense kernels, the device's default "
        "precision; images/s of the second epoch; a full Table 6 run is 64,000 iterations at batch 128.",
        "",
        "| model | steps | images/s | hours for 64k iterations |",
        "|---|---|---|---|",
    ]
    for p in r["paper_recipe"]:
        L.append(f"| {p['model']} | {p['steps']} | {p['images_per_second']:.0f} | {p['table6_hours']:.2f} |")
    return "\n".join(L) + "\n"
