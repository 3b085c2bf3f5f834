"""``resnet-bench perf``: how fast our models train, against keras.applications and the machine.

The measurements are :mod:`resnet_bench.timing`'s; this command chooses them, prints them and
writes ``reports/perf.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import inputs
from ..config import PRECISIONS
from ..errors import UserError

NAME = "perf"
LOADS_TENSORFLOW = True


def add_parser(sub) -> None:
    pf = sub.add_parser(NAME, help="training/inference throughput against keras.applications and matmul peak")
    pf.add_argument("--model", action="append", help="e.g. resnet50 (repeatable; default resnet50)")
    pf.add_argument("--image-size", type=inputs.positive_int, default=64)
    pf.add_argument("--batch-size", type=inputs.positive_int, default=32)
    pf.add_argument("--classes", type=inputs.positive_int, default=10)
    pf.add_argument("--baseline", choices=("keras", "none"), default="keras")
    pf.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    pf.add_argument("--mixed-precision", choices=PRECISIONS, default="off")
    pf.add_argument("--windows", type=inputs.positive_int, default=5, help="timed windows")
    pf.add_argument("--steps", type=inputs.positive_int, default=10, help="steps per timed window")
    pf.add_argument("--pipeline", action="store_true", help="also measure the input pipeline and logging overhead")
    pf.add_argument("--data", help="photo folder for the pipeline measurement")
    pf.add_argument("--sweep", metavar="EXPERIMENT", help="also time a whole sweep of this experiment file")
    pf.add_argument("--jobs", type=inputs.jobs, default="auto", help="--jobs of that sweep")
    pf.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for that sweep")
    pf.add_argument("--json", action="store_true")
    pf.add_argument("--out", help="write a Markdown report (reports/perf.md)")
    pf.set_defaults(command_main=main)


def to_markdown(result: dict, command: str) -> str:
    env = result["environment"]
    lines = [
        "# Training speed",
        "",
        f"Command: `{command}`",
        "",
        f"Device: {env['cpu']} (GPU: {env['gpu']}); TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"Python {env['python']}.",
        "",
        f"Matmul peak (float32, 2048²): {result['peak_gflops']:.1f} GFLOP/s.",
        "",
        f"Image size {result['image_size']}, batch {result['batch_size']}; median of interleaved windows "
        "(min-max in brackets).",
        "",
        "| model | MACs/image | warm-up (s) | train images/s | inference images/s | GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["models"]:
        lines.append(
            f"| {r['model']} | {r['macs'] / 1e6:.0f}M | {r['warmup_seconds']:.1f} | "
            f"{r['train_images_per_second']:.1f} "
            f"[{r['train_images_per_second_min']:.1f}-{r['train_images_per_second_max']:.1f}] | "
            f"{r['inference_images_per_second']:.1f} | {r['achieved_gflops']:.1f} | "
            f"{r['percent_of_matmul_peak']:.0f}% |"
        )
    if "ratio" in result:
        lines += [
            "",
            f"Ours / keras.applications ResNet-50 training throughput: **{result['ratio']:.2f}x** "
            f"(per-window ratios {', '.join(f'{x:.2f}' for x in result['window_ratios'])}).",
        ]
    if result.get("pipeline"):
        lines += _pipeline_section(result["pipeline"])
    if result.get("sweep"):
        lines += _sweep_section(result["sweep"])
    return "\n".join(lines) + "\n"


def _pipeline_section(p: dict) -> list[str]:
    lines = [
        "",
        "## Input pipeline and logging overhead",
        "",
        f"- Pipeline alone ({p['experiment']} data): {p['pipeline_images_per_second']:.0f} images/s; "
        f"training {p['train_model']}: {p['train_images_per_second']:.0f} images/s; ratio "
        f"**{p['pipeline_to_training_ratio']:.0f}x**.",
    ]
    if "folder_decode_images_per_second" in p:
        lines.append(
            f"- Photo folder: decoding {p['folder_decode_images_per_second']:.0f} images/s (once per "
            f"process), then the pipeline {p['folder_pipeline_images_per_second']:.0f} images/s."
        )
    lines.append(
        f"- Epoch time with MLflow logging and gradient probes {p['epoch_seconds_with_logging']:.2f} s, without "
        f"{p['epoch_seconds_without_logging']:.2f} s: overhead **{p['logging_overhead_percent']:+.1f}%** "
        "(median epoch-to-epoch period over epochs 2-4 of two interleaved rounds; TensorFlow's default "
        "threads in this process)."
    )
    lines.append(
        f"- Op determinism: epoch time {p['epoch_seconds_with_logging']:.2f} s with it, "
        f"{p['epoch_seconds_without_determinism']:.2f} s without: cost **{p['determinism_cost_percent']:+.1f}%**."
    )
    return lines


def _sweep_section(sw: dict) -> list[str]:
    from ..timing import TRAINING_PASSES

    return [
        "",
        "## Whole sweep",
        "",
        f"`resnet-bench run {sw['experiment']}` (jobs: {sw['jobs']}) in a temporary store, timed from start to "
        f"end: {sw['runs']} runs in **{sw['wall_seconds']:.0f} s**, {sw['tflops']:.1f} TFLOP of training and "
        f"evaluation arithmetic ({TRAINING_PASSES} x 2 x MACs per trained image, 2 x MACs per evaluated one), so "
        f"{sw['achieved_gflops']:.0f} GFLOP/s: **{sw['percent_of_matmul_peak']:.0f}%** of the float32 matmul "
        f"peak measured right after it in a fresh process ({sw['peak_gflops']:.0f} GFLOP/s).",
    ]


def main(args) -> int:
    import keras

    from ..provenance import environment
    from ..timing import measure_models, measure_pipeline, measure_sweep

    models = args.model or ["resnet50"]
    if args.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    try:
        result = measure_models(
            models, args.image_size, args.batch_size, args.classes, args.baseline, args.windows, args.steps, args.jit
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    result["environment"] = environment()
    if args.pipeline:
        result["pipeline"] = measure_pipeline("experiments/shortcut_ablation.toml", args.data or None)
    if args.sweep:
        from ..driver import run_sweep
        from ..pools import PoolOptions

        def sweep(cfg, uri: str) -> int:
            return run_sweep(cfg, uri, pools=PoolOptions(jobs=args.jobs), echo=lambda text: None)

        result["sweep"] = measure_sweep(args.sweep, sweep, args.jobs, args.set)
    command = "resnet-bench " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("resnet-bench") else "resnet-bench perf"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(to_markdown(result, command))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(to_markdown(result, command))
    return 0
