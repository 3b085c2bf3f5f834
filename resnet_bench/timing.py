"""How fast our models train: the measurements behind ``resnet-bench perf`` and ``gpu-check``.

Measurement rules (the machine's speed drifts, so comparisons are interleaved):
- warm-up (tracing, any XLA compile) is timed separately and excluded;
- models are timed in alternating windows (ours, baseline, ours, ...), each window a fixed
  number of full optimizer steps on a fixed in-memory batch; we report the median and the
  spread (min-max) of the per-window throughput;
- achieved GFLOP/s counts arithmetic with :func:`training_flops` and :func:`evaluation_flops`
  and is set against the practical peak measured in the same process with a large float32
  matmul.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import schema
from .spec import parse_model_name

TRAINING_PASSES = 3  # a trained image costs its forward pass and a backward pass of about twice that


def training_flops(macs_per_image: float, images: float) -> float:
    """Arithmetic of training on ``images``: 3 forward passes' worth, 2 FLOPs per MAC."""
    return TRAINING_PASSES * 2 * macs_per_image * images


def evaluation_flops(macs_per_image: float, images: float) -> float:
    """Arithmetic of a forward pass over ``images``, 2 FLOPs per MAC."""
    return 2 * macs_per_image * images


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Practical float32 peak: median rate of an n x n matmul."""
    import tensorflow as tf

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

    def __init__(self, name: str, model, batch_size: int, classes: int, jit: bool = False):
        import keras
        import tensorflow as tf

        from .models import count_macs

        self.name, self.model = name, model
        shape = model.input_shape[1:]
        self.x = tf.random.stateless_normal((batch_size, *shape), seed=[5, 6])
        self.y = tf.constant(np.arange(batch_size) % classes)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=jit)
        self.jit = bool(model.jit_compile)  # what Keras compiled
        self.macs = count_macs(model)
        self.train_rates: list[float] = []
        self.infer_rates: list[float] = []
        self.train_images = 0  # counted as they pass, so a test can check what a rate is made of
        self.train_seconds = 0.0

    def warm_up(self) -> float:
        t = time.perf_counter()
        self.model.train_on_batch(self.x, self.y)
        self.model.predict_on_batch(self.x)
        return time.perf_counter() - t

    def window(self, steps: int) -> None:
        t, images = time.perf_counter(), 0
        for _ in range(steps):
            self.model.train_on_batch(self.x, self.y)
            images += int(self.x.shape[0])
        seconds = time.perf_counter() - t
        self.train_images += images
        self.train_seconds += seconds
        self.train_rates.append(images / seconds)
        t = time.perf_counter()
        for _ in range(steps):
            self.model.predict_on_batch(self.x)
        self.infer_rates.append(steps * int(self.x.shape[0]) / (time.perf_counter() - t))

    def result(self, warmup: float, peak: float) -> ModelTiming:
        return ModelTiming(
            self.name, self.jit, self.macs, warmup, self.train_images, self.train_seconds,
            tuple(self.train_rates), tuple(self.infer_rates), peak,
        )  # fmt: skip


@dataclass(frozen=True)
class ModelTiming:
    """One model's measured speed: what was counted and timed, and what follows from it."""

    model: str
    jit_compiled: bool  # what Keras compiled, not what was asked
    macs: int  # multiply-accumulates per image
    warmup_seconds: float  # the first step and prediction: tracing, any XLA compile
    train_images: int  # every image of the timed training windows
    train_seconds: float  # their time
    train_rates: tuple[float, ...]  # images/s of each timed training window
    infer_rates: tuple[float, ...]  # images/s of each timed inference window
    peak_gflops: float  # the float32 matmul peak of the same process

    @property
    def train_images_per_second(self) -> float:
        return statistics.median(self.train_rates)

    @property
    def achieved_gflops(self) -> float:
        return training_flops(self.macs, self.train_images_per_second) / 1e9

    @property
    def percent_of_matmul_peak(self) -> float:
        return 100 * self.achieved_gflops / self.peak_gflops

    def as_dict(self) -> dict:
        """What ``perf --json`` prints and perf.md and gpu-check read."""
        return {
            "model": self.model,
            "jit_compiled": self.jit_compiled,
            "macs": self.macs,
            "warmup_seconds": self.warmup_seconds,
            "train_images": self.train_images,
            "train_seconds": self.train_seconds,
            "train_images_per_second": self.train_images_per_second,
            "train_images_per_second_min": min(self.train_rates),
            "train_images_per_second_max": max(self.train_rates),
            "inference_images_per_second": statistics.median(self.infer_rates),
            "achieved_gflops": self.achieved_gflops,
            "percent_of_matmul_peak": self.percent_of_matmul_peak,
        }


@dataclass(frozen=True)
class SweepTiming:
    """A whole sweep's wall time and the arithmetic its runs did in it."""

    experiment: str
    overrides: tuple[str, ...]
    jobs: int | str
    runs: int
    wall_seconds: float
    flops: float  # training and evaluation arithmetic of every finished run (sweep_flops)
    peak_gflops: float

    @property
    def achieved_gflops(self) -> float:
        return self.flops / self.wall_seconds / 1e9

    @property
    def percent_of_matmul_peak(self) -> float:
        return 100 * self.achieved_gflops / self.peak_gflops

    def as_dict(self) -> dict:
        return {
            "experiment": self.experiment,
            "overrides": list(self.overrides),
            "jobs": self.jobs,
            "runs": self.runs,
            "wall_seconds": self.wall_seconds,
            "tflops": self.flops / 1e12,
            "achieved_gflops": self.achieved_gflops,
            "peak_gflops": self.peak_gflops,
            "percent_of_matmul_peak": self.percent_of_matmul_peak,
        }


def _keras_resnet50(shape, classes):
    import keras

    return keras.applications.ResNet50(weights=None, input_shape=shape, classes=classes)


# What ``--baseline keras`` times next to ours: Keras' own ResNet-50, the network our resnet50
# must match in speed. (Its name and builder, so the suite can time a small stand-in: building
# and tracing ResNet-50 took most of a minute of the perf test on 2 cores.)
KERAS_BASELINE = ("keras.applications:ResNet50", _keras_resnet50)


@contextlib.contextmanager
def _op_determinism(enabled: bool):
    """TensorFlow's op determinism set to ``enabled`` for a measurement, and put back as it was
    after it. Keras drops XLA while op determinism is on, and a training earlier in the process
    may have left it on: an XLA timing needs it off, and what runs after the timing needs it as
    it was."""
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    (tf_config.enable_op_determinism if enabled else tf_config.disable_op_determinism)()
    try:
        yield
    finally:
        (tf_config.enable_op_determinism if was else tf_config.disable_op_determinism)()


def measure_models(models, image_size, batch_size, classes, baseline, windows, steps, jit=False) -> dict:
    """Train and inference rates of ``models`` (and Keras' ResNet-50 with ``baseline="keras"``)
    in interleaved windows, with XLA when ``jit`` (op determinism off for that while)."""
    from tensorflow.python.framework import config as tf_config

    with _op_determinism(tf_config.is_op_determinism_enabled() and not jit):
        return _measure_models(models, image_size, batch_size, classes, baseline, windows, steps, jit)


def _measure_models(models, image_size, batch_size, classes, baseline, windows, steps, jit) -> dict:
    shape = (image_size, image_size, 3)
    subjects = []
    for name in models:
        spec = parse_model_name(name)
        from .models import build_model

        subjects.append(Subject(f"ours:{spec.name}", build_model(spec, shape, classes), batch_size, classes, jit))
    if baseline == "keras":
        name, build = KERAS_BASELINE
        subjects.append(Subject(name, build(shape, classes), batch_size, classes, jit))
    peak = matmul_peak_gflops()
    warm = {s.name: s.warm_up() for s in subjects}
    for _ in range(windows):  # interleaved, so drift hits every model alike
        for s in subjects:
            s.window(steps)
    timings = [s.result(warm[s.name], peak) for s in subjects]
    out = {"peak_gflops": peak, "models": [t.as_dict() for t in timings], "image_size": image_size,
           "batch_size": batch_size, "jit": jit}  # fmt: skip
    ours = next((t for t in timings if t.model == "ours:resnet50"), timings[0])
    out["ours_images_per_second"] = ours.train_images_per_second
    out["achieved_gflops"] = ours.achieved_gflops
    if baseline == "keras":
        b = timings[-1]
        out["baseline_images_per_second"] = b.train_images_per_second
        out["ratio"] = ours.train_images_per_second / b.train_images_per_second
        # Per-window ratios (adjacent windows), a drift-robust view of the same comparison.
        out["window_ratios"] = [o / w for o, w in zip(ours.train_rates, b.train_rates)]
    return out


def measure_pipeline(experiment: str, folder: str | None, batches: int = 200) -> dict:
    """Images/s of the input pipeline alone (and of a photo folder's decoding, given one), and
    what an epoch of the experiment's deepest model costs with and without logging and op
    determinism (:func:`_epoch_costs`)."""
    from . import config, data

    cfg = config.load(experiment)
    arrays = data.load(cfg.data)
    out = {"experiment": cfg.name}
    out["pipeline_images_per_second"] = _pipeline_rate(arrays, cfg.train.batch_size, batches)
    if folder:
        fcfg = config.load(experiment, ['data.source="folder"'], data_path=folder)
        farr = data.load(fcfg.data)  # decoded into its store once, or opened
        from .data.decoded import decode_rate

        out["folder_decode_images_per_second"] = decode_rate(folder, fcfg.data.image_size, fcfg.data.resize)
        out["folder_pipeline_images_per_second"] = _pipeline_rate(farr, cfg.train.batch_size, batches)
    out.update(_epoch_costs(experiment, cfg, arrays))
    out["pipeline_to_training_ratio"] = out["pipeline_images_per_second"] / out["train_images_per_second"]
    return out


def _epoch_costs(experiment: str, cfg, arrays) -> dict:
    """Training rate of the experiment's deepest model, the cost of logging + gradient probes,
    and the cost of op determinism: the same short training in each mode, in two interleaved
    rounds. The period between successive epoch ends is timed, so it holds everything an epoch
    costs (training, validation, probe, logging); epoch 1 (tracing) is left out."""
    from . import config
    from .train import train_run

    deep = max(cfg.variants(), key=lambda s: s.depth)
    modes = {
        "default": (["train.epochs=4"], True),
        "no_logging": (["train.epochs=4"], False),
        "no_determinism": (["train.epochs=4", "train.deterministic=false"], True),
    }
    periods = {m: [] for m in modes}
    rates = []
    from .tracking.store import Store

    with tempfile.TemporaryDirectory() as tmp:  # removed on error too
        store = Store(f"sqlite:///{tmp}/perf.db")  # real MLflow logging, as the driver does it
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
    med = {m: statistics.median(t) for m, t in periods.items()}
    return {
        "train_model": deep.name,
        "train_images_per_second": statistics.median(rates),
        "epoch_seconds_with_logging": med["default"],
        "epoch_seconds_without_logging": med["no_logging"],
        "logging_overhead_percent": 100 * (med["default"] / med["no_logging"] - 1),
        "epoch_seconds_without_determinism": med["no_determinism"],
        "determinism_cost_percent": 100 * (med["default"] / med["no_determinism"] - 1),
    }


def sweep_flops(runs) -> float:
    """Arithmetic of a finished sweep, from the MACs per image each run logged.

    Per epoch, the full batches of the training split and the gradient probe's batch (forward
    and backward) are trained images, the test split is evaluated.
    """
    total = 0.0
    for run in runs:
        p = schema.typed_params(run.data.params)
        epochs, batch, macs = p["train.epochs"], p["train.batch_size"], p["macs"]
        n_train, n_test = p["data_train_count"], p["data_test_count"]
        probe = min(p["train.grad_probe_size"], n_train)
        trained = n_train // batch * batch + probe
        total += epochs * (training_flops(macs, trained) + evaluation_flops(macs, n_test))
    return total


def _peak_in_fresh_process() -> float:
    """The matmul peak with TensorFlow's default threads, measured where no sweep set them."""
    import subprocess

    code = "from resnet_bench.timing import matmul_peak_gflops; print(matmul_peak_gflops())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def default_threads_peak() -> float:
    """The matmul peak with TensorFlow's default thread pools: measured in this process when
    its pools are still the default (a sweep in worker processes leaves them so, and TensorFlow
    refuses to resize them once started), otherwise in a fresh process (a ``--jobs 1`` sweep
    that sized them here before TensorFlow started). A fresh process costs TensorFlow's import,
    10 s on 2 cores."""
    import tensorflow as tf

    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() == 0 and threading.get_inter_op_parallelism_threads() == 0:
        return matmul_peak_gflops()
    return _peak_in_fresh_process()


def measure_sweep(experiment: str, sweep, jobs="auto", overrides=()) -> dict:
    """Wall time of a whole sweep as ``resnet-bench run`` does it (worker start-up, data,
    tracing, training, evaluation, logging), in a temporary store, and its share of the peak.

    ``sweep(cfg, uri)`` runs it on ``jobs`` workers and returns the exit code (the caller's
    :func:`resnet_bench.driver.run_sweep`, passed in so that this library, which ``gpu-check``
    uses too, does not stand on the whole driver)."""
    from . import config
    from .tracking.store import Store

    cfg = config.load(experiment, list(overrides))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/mlflow.db")
        t = time.perf_counter()
        code = sweep(cfg, store.uri)
        wall = time.perf_counter() - t
        runs = store.runs(store.experiment_id(cfg.name), "attributes.status = 'FINISHED'")
    if code != 0:
        raise RuntimeError(f"the sweep of {experiment} did not finish every run (exit code {code})")
    timing = SweepTiming(experiment, tuple(overrides), jobs, len(runs), wall, sweep_flops(runs), default_threads_peak())
    return timing.as_dict()


def _pipeline_rate(arrays, batch_size: int, batches: int) -> float:
    from . import data

    pipes = data.make_pipelines(arrays, batch_size, seed=0)
    it = iter(pipes.train)
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t)
