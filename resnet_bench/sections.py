"""The tables of an experiment file, one frozen dataclass each: ``[data]``, ``[train]``,
``[model]``, ``[grid]``, ``[analysis]`` and ``[report]``.

Every field carries its rule and a line of help (:mod:`resnet_bench.fields`), so the
validation in :mod:`resnet_bench.config` and the reference page (docs/config.md, by
:mod:`resnet_bench.reference`) read one declaration. Comments here say why a default is what it
is; the help says what the field does.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from . import fields
from .spec import SHORTCUTS, ModelSpec

SOURCES = ("synthetic", "folder", "cifar10", "arrays")
PRECISIONS = ("off", "float16", "bfloat16")  # mixed precision: off, or the 16-bit type of the compute


@dataclass(frozen=True)
class DataConfig:
    source: str = fields.choice(
        "synthetic",
        SOURCES,
        "where the images come from: the generated shapes set, a photo "
        "folder, CIFAR-10, or .npz/.h5 array files (docs/data.md)",
    )
    path: str = fields.plain("", "the folder, CIFAR-10 folder or .tar.gz, or array file; `--data PATH` sets it")
    image_size: int = fields.positive(
        32, "side in pixels every image is resized to (at most 1024; at least 8 for the generated set)"
    )
    normalization: str = fields.choice(
        "standardize",
        ("standardize", "unit"),
        "standardize: minus the training split's per-channel mean, over its std; unit: pixels in [0, 1]",
    )
    augment: bool = fields.plain(
        False, "pad 4, random crop and horizontal flip of training images (He et al.'s recipe)"
    )
    classes: int = fields.positive(10, "generated set: number of classes (2 to 30: 10 shapes x 3 fill patterns)")
    train_size: int = fields.positive(2000, "generated set: training images")
    test_size: int = fields.positive(1000, "generated set: test images")
    generator_seed: int = fields.non_negative(
        0,
        "fixes the data set itself (generated images, photo hold-outs "
        "and subsets); the run's seed fixes only the order",
    )
    noise: float = fields.fraction(0.1, "generated set: std of the Gaussian pixel noise, as a fraction of full scale")
    clutter: int = fields.non_negative(3, "generated set: distractor blobs per image")
    resize: str = fields.choice(
        "crop", ("crop", "squash"), "photos: crop keeps the aspect and centre-crops; squash stretches to a square"
    )
    max_per_class: int = fields.non_negative(
        0, "photos: a seeded subset of this many training images per class (0: all)"
    )
    holdout_fraction: float = fields.fraction(
        0.2, "photos in one `ROOT/<class>/` tree: the seeded fraction per class held out as the test split"
    )
    max_bad_fraction: float = fields.fraction(
        0.01, "photos: the fraction of unreadable files skipped with a warning; more stops the run"
    )
    validation_size: int = fields.non_negative(
        0, "validate on a seeded hold-out of this many training images instead of the test split (0: the test split)"
    )
    x_key: str = fields.plain("train_set_x", "array files: the training images' key")
    y_key: str = fields.plain("train_set_y", "array files: the training labels' key")
    test_x_key: str = fields.plain("test_set_x", "array files: the test images' key")
    test_y_key: str = fields.plain("test_set_y", "array files: the test labels' key")
    test_path: str = fields.plain("", "array files: the test file when it is not the training file's test_ sibling")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = fields.positive(5, "passes over the training split")
    batch_size: int = fields.positive(32, "images per step")
    optimizer: str = fields.choice("adam", ("adam", "sgd"), "Adam, or SGD with `momentum`")
    learning_rate: float = fields.positive(1e-3, "the base learning rate")
    momentum: float = fields.fraction(0.9, "SGD's momentum (sgd only)")
    lr_schedule: str = fields.choice(
        "constant",
        ("constant", "step", "cosine"),
        "constant; step: times `lr_decay` at each of `lr_boundaries`; cosine: down to 0 over the run",
    )
    lr_boundaries: tuple[int, ...] = fields.plain(
        (),
        "step schedule: the iterations (steps, not epochs) at which the rate is multiplied by `lr_decay`; increasing",
    )
    lr_decay: float = fields.positive(0.1, "step schedule: the factor at each boundary")
    # He et al.'s warm-up (section 4.2, ResNet-110).
    warmup_epochs: float = fields.non_negative(
        0.0,
        "the first this many epochs (fractions allowed) train at "
        "`learning_rate` x `warmup_factor`, then the schedule (0: none)",
    )
    warmup_factor: float = fields.positive(0.1, "the warm-up's factor on the rate (at most 1)")
    weight_decay: float = fields.non_negative(0.0, "the weight decay (0: none)")
    # "l2" is the paper's form: its gradient wd * w passes through SGD's momentum like the data
    # gradient does; "decoupled" is Keras' form.
    weight_decay_mode: str = fields.choice(
        "decoupled",
        ("decoupled", "l2"),
        "decoupled: the optimizer shrinks "
        "every weight by lr x wd each step; l2: wd/2 x |w|^2 of every kernel "
        "joins the loss",
    )
    loss: str = fields.choice(
        "categorical",
        ("categorical", "binary"),
        "categorical: softmax over the classes; binary: one sigmoid unit, for 2 classes",
    )
    label_smoothing: float = fields.fraction(0.0, "label smoothing of the training loss")
    mixed_precision: str = fields.choice(
        "auto", ("auto", *PRECISIONS), "16-bit compute (auto: float16 on a GPU, off on a CPU)"
    )
    jit_compile: str = fields.choice(
        "auto", ("auto", "on", "off"), "XLA (auto: on a GPU when not deterministic; on needs deterministic = false)"
    )
    deterministic: bool = fields.plain(True, "TensorFlow's op determinism: the same seed gives the same numbers")
    distribute: str = fields.choice(
        "none",
        ("none", "mirrored", "multi_worker"),
        "a tf.distribute strategy for one run over several devices or machines",
    )
    intra_op_threads: int = fields.non_negative(
        0, "TensorFlow's intra-op threads per run (0: one per core); `--jobs auto` runs cores / this side by side"
    )
    grad_probe_size: int = fields.positive(32, "images in the fixed batch of the per-stage gradient norms")
    # Small nets on a CPU are dispatch-bound; resolved to the largest divisor of the epoch's
    # steps, so an epoch is never lengthened, and the same updates in the same order.
    steps_per_execution: int = fields.positive(
        1, "training steps per compiled call: the same numbers, less overhead per step (docs/performance.md)"
    )
    save_weights: bool = fields.plain(
        False, "also log the final weights as an .h5 artifact (every run keeps its net as an MLflow model anyway)"
    )


GRID_FIELDS = ("depth", "shortcut", "zero_init")  # a ModelSpec's fields that the grid varies


def _model_config() -> type:
    """``[model]``: every field of :class:`ModelSpec` that the grid does not vary, with its
    type and default, so a new model option is declared once, in spec.py, and is at once a
    config field (validated, logged, part of the config hash)."""
    hints = typing.get_type_hints(ModelSpec)
    own = [
        (f.name, hints[f.name], field(default=f.default, metadata=f.metadata))
        for f in dataclasses.fields(ModelSpec)
        if f.name not in GRID_FIELDS
    ]
    cls = dataclasses.make_dataclass("ModelConfig", own, frozen=True)
    cls.__module__ = __name__  # where pickle (spawned workers) finds it
    return cls


ModelConfig = _model_config()


@dataclass(frozen=True)
class GridConfig:
    depths: tuple[int, ...] = fields.plain(
        (20, 56), "the nets' depths: 6n+2 for the cifar family; 18, 34, 50, 101, 152 for imagenet"
    )
    shortcuts: tuple[str, ...] = fields.each_of(
        ("A", "none"), SHORTCUTS, "shortcut options (none: the plain twin); at most one residual option"
    )
    zero_init: tuple[bool, ...] = fields.plain(
        (False,),
        "[false] is He et al.'s initialisation; [false, true] "
        "adds a -zi twin of every residual net whose branches' last BN "
        "scale starts at 0 (Goyal et al. 2017)",
    )
    seeds: tuple[int, ...] = fields.plain(
        (0, 1, 2), "the repeats: each variant is trained once per seed, paired across variants"
    )

    def cells(self) -> list[tuple[int, str, bool]]:
        """(depth, shortcut, zero_init) of every variant, residual before plain, shallow before
        deep. Zero-init applies to residual nets only: a plain net has no residual branch to
        zero, so it appears once whatever ``zero_init`` holds."""
        return [
            (d, s, z) for d in self.depths for s in self.shortcuts for z in self.zero_init if not (z and s == "none")
        ]


@dataclass(frozen=True)
class AnalysisConfig:
    """What ``resnet-bench analyse`` measures beyond its fixed set (docs/methods.md); no part
    of a run's identity, since it is measured after training."""

    contours: int = fields.non_negative(
        0,
        "an N x N loss contour in the plane of two directions for the first "
        "seed of the deepest plain net and its residual twin, at init and at the "
        "end (0: none; else at least 3)",
    )


@dataclass(frozen=True)
class ReportConfig:
    """What the report says about where its seeds stand: the seeds its design was chosen on
    (so its verdicts on them are in-sample), and seeds that played no part in the choice, from
    another experiment that trains the same nets the same way. No part of a run's identity."""

    design_seeds: tuple[int, ...] = fields.plain(
        (), "the seeds this design was chosen on; the report names them, so its verdicts on them read as in-sample"
    )
    held_out: str = fields.plain(
        "",
        "another experiment whose runs train the same nets on the same data with the same "
        'settings (its name; "": none); the report decides the three claims on its runs of '
        "held_out_seeds too, when they are in the same store",
    )
    held_out_seeds: tuple[int, ...] = fields.plain(
        (), "the seeds of held_out that the report decides the claims on; none of them in design_seeds"
    )
