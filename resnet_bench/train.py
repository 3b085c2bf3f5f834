"""Train one (variant, seed): build, compile, fit, and measure each epoch.

This module knows Keras and the data pipeline, not MLflow: per-epoch results go to an
``on_epoch`` hook that the driver turns into tracking calls. What it measures per epoch:
loss and accuracy (train and validation), wall time, step times (median and 90th percentile),
throughput, the learning rate, and per-stage gradient norms on a fixed probe batch (the
diagnostic of why plain nets stall: it shows how the gradient a deep plain net passes to its
early stages differs from its residual twin's, epoch by epoch).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from . import schema
from .data import pipeline
from .errors import DivergedError
from .models import ModelSpec, build_model, count_macs, count_params, stage_of
from .responses import ResponseProbe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSettings:
    """Settings chosen per device kind when the experiment says ``auto``."""

    device: str  # "gpu" or "cpu"
    mixed_precision: str  # "off" | "float16" | "bfloat16"
    jit_compile: bool


def resolve_device_settings(train_cfg) -> DeviceSettings:
    """Fastest measured defaults per device kind (see docs/performance.md), overridable by the file.

    On CPU, mixed precision gained nothing and XLA was slower (width 16) or no faster (width
    4) after a ~20 s compile, so both stay off; on GPU mixed precision is on, and
    XLA too when ``train.deterministic`` is false: Keras compiles without XLA while TensorFlow's
    op determinism is on (``keras.src.trainers.trainer.model_supports_jit``), so a deterministic
    run resolves to no XLA and says so, rather than asking for XLA and silently not getting it.
    """
    gpu = bool(tf.config.list_physical_devices("GPU"))
    mp = train_cfg.mixed_precision
    if mp == "auto":
        mp = "float16" if gpu else "off"
    jit = train_cfg.jit_compile
    jit = gpu and not train_cfg.deterministic if jit == "auto" else jit == "on"
    return DeviceSettings("gpu" if gpu else "cpu", mp, jit)


_THREADS_WARNED: set[int] = set()


def configure_threads(intra_op_threads: int) -> None:
    """Size TensorFlow's intra-op pool (0 keeps its default of one thread per core).

    For the small convolutions of the CIFAR-style nets at 16-32 pixels, one intra-op thread
    (with the inter-op pool still running independent ops side by side) trained 1.2-1.4x
    faster on a 2-core CPU; large ones gained nothing (docs/performance.md). TensorFlow fixes the
    pool when it starts, so each process that trains calls this first (runner.prepare_process).
    """
    if not intra_op_threads or tf.config.threading.get_intra_op_parallelism_threads() == intra_op_threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    except RuntimeError:
        if intra_op_threads not in _THREADS_WARNED:  # once per process, not once per run
            _THREADS_WARNED.add(intra_op_threads)
            log.warning("TensorFlow already started: train.intra_op_threads=%d not applied", intra_op_threads)


def make_strategy(name: str):
    """``none`` -> default strategy; ``mirrored`` -> all visible GPUs (or the CPU);
    ``multi_worker`` -> workers described by ``TF_CONFIG``."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def resolve_steps_per_execution(requested: int, steps_per_epoch: int) -> int:
    """The largest divisor of ``steps_per_epoch`` not above ``requested``.

    Keras runs whole calls of k steps and the training stream never ends, so a k that does not
    divide the epoch would silently train up to k - 1 extra steps in every epoch.
    """
    return max(k for k in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % k == 0)


@keras.saving.register_keras_serializable(package="resnet_bench")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """He et al.'s warm-up: ``factor`` times the rate for the first ``steps`` steps, then ``after``.

    The paper trains ResNet-110 at 0.01 "until the training error is below 80% (about 400
    iterations)" before going back to 0.1, because 0.1 was "slightly too large to start
    converging"; a deep net whose summed residual branches make its first steps unstable is the
    same problem at a smaller scale. A fixed step count rather than an error threshold keeps
    every variant on the same schedule.
    """

    def __init__(self, after, steps: int, factor: float):
        self.after, self.steps, self.factor = after, int(steps), float(factor)

    def __call__(self, step):
        lr = self.after(step) if callable(self.after) else keras.ops.convert_to_tensor(self.after, "float32")
        return keras.ops.where(keras.ops.less(step, self.steps), lr * self.factor, lr)

    def get_config(self):
        after = keras.saving.serialize_keras_object(self.after) if callable(self.after) else self.after
        return {"after": after, "steps": self.steps, "factor": self.factor}


def make_optimizer(t, steps_per_epoch: int):
    lr = t.learning_rate
    if t.lr_schedule == "step":
        values = [t.learning_rate * t.lr_decay**i for i in range(len(t.lr_boundaries) + 1)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(list(t.lr_boundaries), values)
    elif t.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, t.epochs * steps_per_epoch)
    if t.warmup_epochs:
        lr = WarmUp(lr, round(t.warmup_epochs * steps_per_epoch), t.warmup_factor)
    wd = (t.weight_decay or None) if t.weight_decay_mode == "decoupled" else None
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=t.momentum, weight_decay=wd)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {t.optimizer!r}")  # TrainConfig.optimizer admits only these


def add_l2_penalty(model: keras.Model, weight_decay: float) -> int:
    """The paper's weight decay: ``weight_decay / 2 * |w|^2`` of every conv and dense kernel
    joins the training loss, so each kernel's gradient gains ``weight_decay * w``.

    Batch-norm scales and shifts (and biases) are left out: they set the scale of a layer's
    output, not its capacity, and decaying them pulls BN towards zero output (Goyal et al.
    2017 leave them undecayed too). Returns how many kernels were regularised.
    """
    l2 = keras.regularizers.L2(weight_decay / 2)
    n = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            layer.kernel.regularizer = l2
            n += 1
    return n


def make_loss(t, num_classes: int):
    """Loss and accuracy metric for the head in use (one sigmoid unit or softmax)."""
    if t.loss == "binary":
        return keras.losses.BinaryCrossentropy(label_smoothing=t.label_smoothing), keras.metrics.BinaryAccuracy(
            name="accuracy"
        )
    metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if not t.label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(), metric

    def smoothed(y_true, y_pred):
        onehot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes)
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=t.label_smoothing)

    return smoothed, metric


class GradientProbe:
    """Per-stage gradient L2 norms of the data loss on a fixed batch, in training mode.

    Training-mode BN updates its moving statistics; the probe restores them inside the same
    graph, so it leaves the run's numbers untouched (a test checks identical losses with and
    without it). One compiled call and one device sync per epoch keep its cost small.
    """

    def __init__(self, model: keras.Model, loss_fn):
        groups = defaultdict(list)
        for i, v in enumerate(model.trainable_variables):
            groups[stage_of(v.path)].append(i)
        groups = dict(sorted(groups.items()))

        @tf.function
        def norms(x, y):
            saved = [tf.identity(v.value) for v in model.non_trainable_variables]
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            for v, value in zip(model.non_trainable_variables, saved):
                v.assign(value)
            squares = [tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]
            return {
                f"{schema.GRAD_NORM_PREFIX}{name}": tf.sqrt(tf.add_n([squares[i] for i in idx]))
                for name, idx in groups.items()
            }

        self._norms = norms

    def __call__(self, batch) -> dict[str, float]:
        x, y = (tf.constant(a) for a in batch)
        return {k: float(v) for k, v in self._norms(x, y).items()}


class EpochRecorder(keras.callbacks.Callback):
    """Collects per-epoch metrics, stops on divergence, and hands each epoch to ``on_epoch``."""

    def __init__(self, batch_size: int, on_epoch, probe: GradientProbe | None, lr_of):
        super().__init__()
        self.batch_size = batch_size
        self.on_epoch = on_epoch
        self.probe = probe
        self.lr_of = lr_of
        self.history: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.grad_norms = self.probe() if self.probe else {}
        self.steps: list[float] = []
        self.epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.first_step = batch
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # With k steps per compiled call Keras calls these hooks once per call, with the first
        # and last step of the call: each of its k steps is credited with a k-th of its time.
        self.t1 = time.perf_counter()
        k = batch - self.first_step + 1
        self.steps.extend([(self.t1 - self.t0) / k] * k)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now = time.perf_counter()
        steps = np.array(self.steps) * 1000
        train_seconds = self.t1 - self.epoch_start
        row = {
            "epoch": epoch + 1,
            "train_loss": float(logs.get("loss", np.nan)),
            "train_accuracy": float(logs.get("accuracy", np.nan)),
            "val_loss": float(logs.get("val_loss", np.nan)),
            "val_accuracy": float(logs.get("val_accuracy", np.nan)),
            # training + validation; the probe and the logging hook fall outside (perf measures them)
            "epoch_seconds": now - self.epoch_start,
            "step_ms_median": float(np.median(steps)),
            "step_ms_p90": float(np.percentile(steps, 90)),
            "images_per_second": len(steps) * self.batch_size / train_seconds,
            "learning_rate": self.lr_of(),
            **self.grad_norms,
        }
        assert set(schema.EPOCH_METRICS) <= row.keys()  # the one definition of what an epoch logs
        self.history.append(row)
        if self.on_epoch:
            self.on_epoch(row)
        if not math.isfinite(row["train_loss"]):
            raise DivergedError(f"train_loss is {row['train_loss']} at epoch {epoch + 1}")


@dataclass
class RunResult:
    history: list[dict]
    model_info: dict
    summary: str
    model: keras.Model
    responses: dict  # layer responses and branch ratios after the last epoch (resnet_bench.responses)
    normalisation: tuple  # (mean, std) per channel: what the model's inputs were normalised with


def seed_everything(seed: int, deterministic: bool, tensorflow_seed: bool = True) -> None:
    """One seed fixes weight init, data order and augmentation (python, numpy, TF).

    ``tensorflow_seed=False`` leaves TensorFlow's global seed alone: setting it clears every
    compiled function's instantiation, which a reused model would then pay again (about 4 s
    of graph optimisation for resnet56). Nothing in a run depends on that seed: Keras seeds
    each initializer from Python's ``random``, and the data order and augmentation are
    stateless ops with explicit seeds.
    """
    if tensorflow_seed:
        keras.utils.set_random_seed(seed)
    else:
        random.seed(seed)
        np.random.seed(seed)
    from tensorflow.python.framework import config as tf_config

    if deterministic == tf_config.is_op_determinism_enabled():
        return
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:  # the switch is process-wide; a non-deterministic run must turn it off again
        tf_config.disable_op_determinism()


@dataclass
class CompiledModel:
    """A built, compiled model with what its runs reuse: traced train, test and probe functions.

    Tracing is most of a small net's first epoch (about 3x a steady one for resnet56 at 16 px),
    so a process that trains the same architecture for several seeds keeps one compiled model
    and resets it per run instead of building it again.
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    loss_fn: object
    probe: GradientProbe | None
    responses: ResponseProbe | None
    optimizer_start: list  # the optimizer's variables right after build (step 0, zero slots)
    info: dict
    summary: str


@dataclass(frozen=True)
class BuildKey:
    """What a compiled model depends on: runs with equal keys can share one."""

    spec: ModelSpec
    shape: tuple  # one image: (height, width, channels)
    num_classes: int
    binary: bool  # a single sigmoid unit (train.loss = binary)
    train: object  # the TrainConfig
    settings: object  # the resolved DeviceSettings
    steps: int  # training steps per epoch
    probes: bool
    responses: bool


class CompiledCache:
    """The compiled models of this process, one per :class:`BuildKey`, least recently used
    first. Small: a sweep has a handful of variants, and ImageNet-size models are large."""

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict[BuildKey, CompiledModel] = OrderedDict()

    def get(self, key: BuildKey) -> CompiledModel | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: BuildKey, entry: CompiledModel) -> None:
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


COMPILED = CompiledCache()


def initial_model(spec: ModelSpec, shape: tuple, num_classes: int, binary: bool, seed: int) -> keras.Model:
    """The net a run of ``spec`` with repeat seed ``seed`` starts training from.

    Keras seeds each initializer from Python's ``random`` when the net is built, so seeding it
    (and numpy) and building gives the same initial weights in any process: training builds
    its nets here, and an analysis of the landscape a run started in rebuilds them here.
    """
    random.seed(seed)
    np.random.seed(seed)
    return build_model(spec, shape, num_classes, binary_head=binary)


def _compile(key: BuildKey, seed: int) -> CompiledModel:
    t, spec = key.train, key.spec
    with make_strategy(t.distribute).scope():
        model = initial_model(spec, key.shape, key.num_classes, key.binary, seed)
        if t.weight_decay and t.weight_decay_mode == "l2":
            add_l2_penalty(model, t.weight_decay)
        loss_fn, metric = make_loss(t, key.num_classes)
        optimizer = make_optimizer(t, key.steps)
        spe = resolve_steps_per_execution(t.steps_per_execution, key.steps)
        model.compile(
            optimizer=optimizer,
            loss=loss_fn,
            metrics=[metric],
            jit_compile=key.settings.jit_compile,
            steps_per_execution=spe,
        )
        optimizer.build(model.trainable_variables)  # what fit would do first; built now to snapshot it
    info = {
        **count_params(model),
        "macs": count_macs(model),
        "device": key.settings.device,
        "mixed_precision_resolved": key.settings.mixed_precision,
        "jit_compile_resolved": bool(model.jit_compile),  # what Keras compiled, not what was asked
        "steps_per_execution_resolved": spe,
    }
    lines: list[str] = []
    model.summary(print_fn=lambda s, **_: lines.append(s), line_length=110)
    probe = GradientProbe(model, loss_fn) if key.probes else None
    layer_probe = ResponseProbe(model) if key.responses else None
    start = [tf.identity(v.value) for v in optimizer.variables]
    return CompiledModel(model, optimizer, loss_fn, probe, layer_probe, start, info, "\n".join(lines))


def _reset(entry: CompiledModel, key: BuildKey, seed: int) -> None:
    """Give a reused model exactly the state a fresh build with ``seed`` would have.

    The weights come from building the same architecture again (:func:`initial_model`);
    building is cheap, tracing is what is saved. The optimizer goes back to step 0 with zero
    slots. Metrics are reset by ``fit`` at every epoch.
    """
    fresh = initial_model(key.spec, key.shape, key.num_classes, key.binary, seed)
    entry.model.set_weights(fresh.get_weights())
    for v, value in zip(entry.optimizer.variables, entry.optimizer_start):
        v.assign(value)


def clear_compiled() -> None:
    """Forget every compiled model of this process (tests use it to force a fresh build)."""
    COMPILED.clear()


def train_run(
    cfg, spec: ModelSpec, seed: int, arrays, *, on_epoch=None, on_model=None, probes=True, reuse=True, responses=True
) -> RunResult:
    """Train ``spec`` on ``arrays`` with the config's training settings and the repeat's seed.

    Args:
        cfg: the :class:`~resnet_bench.config.ExperimentConfig`.
        spec: model variant.
        seed: repeat seed, shared by every variant of the repeat (paired comparison).
        arrays: loaded data (:func:`resnet_bench.data.load`).
        on_epoch: called with each epoch's metrics dict (after it is complete).
        on_model: called with ``(model, info)`` once the model is built, before training.
        probes: measure per-stage gradient norms each epoch (off only to measure their cost).
        responses: measure layer responses and residual-branch ratios on the probe batch
            after the last epoch (:mod:`resnet_bench.responses`; off only to measure its cost).
        reuse: reuse a model this process already compiled for the same architecture, input
            and training settings (:data:`COMPILED`), reset to this seed's initial state
            (bit-identical numbers, no second trace). Runs under a distribution strategy
            always build afresh.

    Raises:
        DivergedError: the loss became NaN or infinite (the epoch is reported first).
    """
    t = cfg.train
    configure_threads(t.intra_op_threads)
    settings = resolve_device_settings(t)
    key = BuildKey(
        spec, tuple(arrays.x_train.shape[1:]), len(arrays.classes), t.loss == "binary", t, settings,
        pipeline.steps_per_epoch(len(arrays.x_train), t.batch_size), probes, responses,
    )  # fmt: skip
    reuse = reuse and t.distribute == "none"
    entry = COMPILED.get(key) if reuse else None
    # No keras.backend.clear_session() and, on reuse, no TensorFlow seed: either would drop
    # the compiled functions kept for reuse (see seed_everything).
    seed_everything(seed, t.deterministic, tensorflow_seed=entry is None)
    keras.mixed_precision.set_global_policy(
        "float32" if settings.mixed_precision == "off" else f"mixed_{settings.mixed_precision}"
    )
    pipes = pipeline.make_pipelines(
        arrays, t.batch_size, seed, normalization=cfg.data.normalization, augment=cfg.data.augment,
        binary=key.binary, probe_size=t.grad_probe_size,
    )  # fmt: skip
    if entry is None:
        entry = _compile(key, seed)
        if reuse:
            COMPILED.put(key, entry)
    else:
        _reset(entry, key, seed)
    if on_model:
        on_model(entry.model, entry.info)
    return _fit(entry, pipes, t, on_epoch)


def _fit(entry: CompiledModel, pipes, t, on_epoch) -> RunResult:
    """Every epoch of training, recorded, then the layer measurements of the trained net."""
    model, optimizer = entry.model, entry.optimizer
    probe = (lambda: entry.probe(pipes.probe)) if entry.probe else None
    recorder = EpochRecorder(t.batch_size, on_epoch, probe, lambda: float(np.asarray(optimizer.learning_rate)))
    model.fit(
        pipes.train,
        epochs=t.epochs,
        steps_per_epoch=pipes.steps_per_epoch,
        validation_data=pipes.test,
        callbacks=[recorder],
        shuffle=False,  # the pipeline shuffles, seeded per repeat
        verbose=0,
    )
    layers = entry.responses(pipes.probe[0]) if entry.responses else {}
    return RunResult(recorder.history, entry.info, entry.summary, model, layers, (pipes.mean, pipes.std))
