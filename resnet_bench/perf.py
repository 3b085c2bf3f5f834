"""``resnet-bench perf``: how fast our models train, against keras.applications and the machine.

Measurement rules (the machine's speed drifts, so comparisons are interleaved):
- warm-up (tracing, any XLA compile) is timed separately and excluded;
- models are timed in alternating windows (ours, baseline, ours, ...), each window a fixed
  number of full optimizer steps on a fixed in-memory batch; we report the median and the
  spread (min-max) of the per-window throughput;
- achieved GFLOP/s counts a training step as 3 x 2 x MACs per image (forward, and a backward
  pass of about twice the forward cost) and is set against the practical peak measured in
  the same process with a large float32 matmul.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .models import count_macs, parse_model_name
from .tracking import Store

KEPT_SECTION = "## Settings tried"


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Practical float32 peak: median rate of an n x n matmul."""
    a = tf.random.stateless_normal((n, n), seed=[1, 2])
    b = tf.random.stateless_normal((n, n), seed=[3, 4])
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(a, b).numpy()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).numpy()
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


class Subject:
    """One model under test with a fixed batch, a compiled train step and an inference call."""

    def __init__(self, name: str, model: keras.Model, batch_size: int, classes: int, jit: bool = False):
        self.name, self.model = name, model
        shape = model.input_shape[1:]
        self.x = tf.random.stateless_normal((batch_size, *shape), seed=[5, 6])
        self.y = tf.constant(np.arange(batch_size) % classes)
        if jit:  # Keras drops XLA while op determinism is on, and an earlier training may have left it on
            from tensorflow.python.framework import config as tf_config

            tf_config.disable_op_determinism()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=jit)
        self.jit = bool(model.jit_compile)  # what Keras compiled
        self.macs = count_macs(model)
        self.train_rates: list[float] = []
        self.infer_rates: list[float] = []

    def warm_up(self) -> float:
        t = time.perf_counter()
        self.model.train_on_batch(self.x, self.y)
        self.model.predict_on_batch(self.x)
        return time.perf_counter() - t

    def window(self, steps: int) -> None:
        b = int(self.x.shape[0])
        t = time.perf_counter()
        for _ in range(steps):
            self.model.train_on_batch(self.x, self.y)
        self.train_rates.append(steps * b / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(steps):
            self.model.predict_on_batch(self.x)
        self.infer_rates.append(steps * b / (time.perf_counter() - t))

    def result(self, warmup: float, peak: float) -> dict:
        ips = statistics.median(self.train_rates)
        gflops = 6 * self.macs * ips / 1e9
        return {
            "model": self.name,
            "jit_compiled": self.jit,
            "macs": self.macs,
            "warmup_seconds": warmup,
            "train_images_per_second": ips,
            "train_images_per_second_min": min(self.train_rates),
            "train_images_per_second_max": max(self.train_rates),
            "inference_images_per_second": statistics.median(self.infer_rates),
            "achieved_gflops": gflops,
            "percent_of_matmul_peak": 100 * gflops / peak,
        }


def measure_models(models, image_size, batch_size, classes, baseline, windows, steps, jit=False) -> dict:
    shape = (image_size, image_size, 3)
    subjects = []
    for name in models:
        spec = parse_model_name(name)
        from .models import build_model

        subjects.append(Subject(f"ours:{spec.name}", build_model(spec, shape, classes), batch_size, classes, jit))
    if baseline == "keras":
        base = keras.applications.ResNet50(weights=None, input_shape=shape, classes=classes)
        subjects.append(Subject("keras.applications:ResNet50", base, batch_size, classes, jit))
    peak = matmul_peak_gflops()
    warm = {s.name: s.warm_up() for s in subjects}
    for _ in range(windows):  # interleaved, so drift hits every model alike
        for s in subjects:
            s.window(steps)
    rows = [s.result(warm[s.name], peak) for s in subjects]
    out = {"peak_gflops": peak, "models": rows, "image_size": image_size, "batch_size": batch_size, "jit": jit}
    ours = next((r for r in rows if r["model"] == "ours:resnet50"), rows[0])
    out["ours_images_per_second"] = ours["train_images_per_second"]
    out["achieved_gflops"] = ours["achieved_gflops"]
    if baseline == "keras":
        b = rows[-1]
        out["baseline_images_per_second"] = b["train_images_per_second"]
        out["ratio"] = ours["train_images_per_second"] / b["train_images_per_second"]
        # Per-window ratios (adjacent windows), a drift-robust view of the same comparison.
        ours_subject = next(s for s in subjects if s.name == ours["model"])
        out["window_ratios"] = [o / b for o, b in zip(ours_subject.train_rates, subjects[-1].train_rates)]
    return out


def measure_pipeline(experiment: str, folder: str | None, batches: int = 200) -> dict:
    """Images/s of the input pipeline alone, and the default model's training rate on it."""
    from . import config, data
    from .train import train_run

    cfg = config.load(experiment)
    arrays = data.load(cfg.data)
    out = {"experiment": cfg.name}
    out["pipeline_images_per_second"] = _pipeline_rate(arrays, cfg.train.batch_size, batches)
    if folder:
        fcfg = config.load(experiment, ['data.source="folder"'], data_path=folder)
        t = time.perf_counter()
        farr = data.sources.load_folder(fcfg.data)
        decode = len(farr.x_train) + len(farr.x_test)
        out["folder_decode_images_per_second"] = decode / (time.perf_counter() - t)
        out["folder_pipeline_images_per_second"] = _pipeline_rate(farr, cfg.train.batch_size, batches)
    # Training rate of the default experiment's deepest model, the cost of logging + gradient
    # probes, and the cost of op determinism: the same short training in each mode, in two
    # interleaved rounds. The period between successive epoch ends is timed, so it holds
    # everything an epoch costs (training, validation, probe, logging); epoch 1 (tracing) is
    # left out.
    deep = max(cfg.variants(), key=lambda s: s.depth)
    modes = {
        "default": (["train.epochs=4"], True),
        "no_logging": (["train.epochs=4"], False),
        "no_determinism": (["train.epochs=4", "train.deterministic=false"], True),
    }
    periods = {m: [] for m in modes}
    rates = []
    tmp = tempfile.TemporaryDirectory()
    store = Store(f"sqlite:///{tmp.name}/perf.db")  # real MLflow logging, as the driver does it
    exp_id = store.experiment_id("perf")
    for round_ in range(2):
        for mode, (overrides, logging) in modes.items():
            short = config.load(experiment, overrides)
            ends = []
            with store.tracked_run(exp_id, f"perf-{mode}-{round_}", {"run_name": mode}) as run:

                def on_epoch(row, run=run, logging=logging, ends=ends):
                    ends.append(time.perf_counter())
                    if logging:
                        run.log_epoch(row)

                result = train_run(short, deep, 0, arrays, on_epoch=on_epoch, probes=logging)
            periods[mode] += list(np.diff(ends))
            if mode == "default":
                rates += [r["images_per_second"] for r in result.history[1:]]
    out["train_model"] = deep.name
    out["train_images_per_second"] = statistics.median(rates)
    out["pipeline_to_training_ratio"] = out["pipeline_images_per_second"] / out["train_images_per_second"]
    med = {m: statistics.median(t) for m, t in periods.items()}
    out["epoch_seconds_with_logging"] = med["default"]
    out["epoch_seconds_without_logging"] = med["no_logging"]
    out["logging_overhead_percent"] = 100 * (med["default"] / med["no_logging"] - 1)
    out["epoch_seconds_without_determinism"] = med["no_determinism"]
    out["determinism_cost_percent"] = 100 * (med["default"] / med["no_determinism"] - 1)
    tmp.cleanup()
    return out


def sweep_flops(runs) -> float:
    """Arithmetic of a finished sweep, from the MACs per image each run logged.

    A training image costs 3 forward passes' worth (forward, and a backward pass of about
    twice the forward), an evaluated one 1; a MAC is 2 FLOPs. Training images per epoch are
    the full batches of the training split, evaluated ones the test split plus the gradient
    probe's batch (forward and backward, so 3x).
    """
    total = 0.0
    for run in runs:
        p = run.data.params
        epochs, batch = int(p["train.epochs"]), int(p["train.batch_size"])
        n_train, n_test = int(p["data_train_count"]), int(p["data_test_count"])
        probe = min(int(p["train.grad_probe_size"]), n_train)
        per_epoch = 3 * (n_train // batch * batch) + n_test + 3 * probe
        total += 2 * int(p["macs"]) * per_epoch * epochs
    return total


def _peak_in_fresh_process() -> float:
    """The matmul peak with TensorFlow's default threads, measured where no sweep set them."""
    import subprocess

    code = "from resnet_bench.perf import matmul_peak_gflops; print(matmul_peak_gflops())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def measure_sweep(experiment: str, jobs="auto", overrides=()) -> dict:
    """Wall time of a whole sweep as ``resnet-bench run`` does it (worker start-up, data,
    tracing, training, evaluation, logging), in a temporary store, and its share of the peak."""
    from . import config, driver

    cfg = config.load(experiment, list(overrides))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/mlflow.db")
        t = time.perf_counter()
        code = driver.run_sweep(cfg, store.uri, jobs=jobs, echo=lambda text: None)
        wall = time.perf_counter() - t
        runs = store.runs(store.experiment_id(cfg.name), "attributes.status = 'FINISHED'")
    if code != 0:
        raise RuntimeError(f"the sweep of {experiment} did not finish every run (exit code {code})")
    flops = sweep_flops(runs)
    peak = _peak_in_fresh_process()
    return {
        "experiment": experiment,
        "overrides": list(overrides),
        "jobs": jobs,
        "runs": len(runs),
        "wall_seconds": wall,
        "tflops": flops / 1e12,
        "achieved_gflops": flops / wall / 1e9,
        "peak_gflops": peak,
        "percent_of_matmul_peak": 100 * flops / wall / 1e9 / peak,
    }


def _pipeline_rate(arrays, batch_size: int, batches: int) -> float:
    from . import data

    pipes = data.make_pipelines(arrays, batch_size, seed=0)
    it = iter(pipes.train)
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t)


def environment() -> dict:
    from .provenance import cpu_model

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu_model(),
        "gpu": ", ".join(g.name for g in gpus) or "none",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


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
    p = result.get("pipeline")
    if p:
        lines += [
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
    sw = result.get("sweep")
    if sw:
        lines += [
            "",
            "## Whole sweep",
            "",
            f"`resnet-bench run {sw['experiment']}` (jobs: {sw['jobs']}) in a temporary store, timed from start to "
            f"end: {sw['runs']} runs in **{sw['wall_seconds']:.0f} s**, {sw['tflops']:.1f} TFLOP of training and "
            f"evaluation arithmetic (3 x 2 x MACs per trained image, 2 x MACs per evaluated one), so "
            f"{sw['achieved_gflops']:.0f} GFLOP/s: **{sw['percent_of_matmul_peak']:.0f}%** of the float32 matmul "
            f"peak measured right after it in a fresh process ({sw['peak_gflops']:.0f} GFLOP/s).",
        ]
    return "\n".join(lines) + "\n"


def cli_perf(args) -> int:
    models = args.model or ["resnet50"]
    if args.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    try:
        result = measure_models(
            models, args.image_size, args.batch_size, args.classes, args.baseline, args.windows, args.steps, args.jit
        )
    except ValueError as e:
        from .errors import UserError

        raise UserError(str(e)) from None
    result["environment"] = environment()
    if args.pipeline:
        result["pipeline"] = measure_pipeline("experiments/shortcut_ablation.toml", args.data or None)
    if args.sweep:
        result["sweep"] = measure_sweep(args.sweep, args.jobs, args.set)
    command = "resnet-bench " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("resnet-bench") else "resnet-bench perf"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = to_markdown(result, command)
        # A hand-kept log of settings tried (with their commands) survives regeneration.
        if out.is_file() and KEPT_SECTION in out.read_text():
            text += "\n" + KEPT_SECTION + out.read_text().split(KEPT_SECTION, 1)[1]
        out.write_text(text)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(to_markdown(result, command))
    return 0
