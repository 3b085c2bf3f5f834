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
import random
from collections import OrderedDict
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from .data import pipeline
from .device import configure_threads, make_strategy, resolve_device_settings, resolve_steps_per_execution
from .models import ModelSpec, build_model, count_macs, count_params, stage_of
from .optim import add_l2_penalty, make_loss, make_optimizer
from .recording import EpochRecorder, GradientProbe
from .responses import ResponseProbe

log = logging.getLogger(__name__)


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
    probe = GradientProbe(model, loss_fn, stage_of) if key.probes else None
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
