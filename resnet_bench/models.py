"""The ResNet family and its plain twins, as data plus two block functions.

Everything here follows He et al., "Deep Residual Learning for Image Recognition" (2015),
except the ``article`` flavour, which reproduces a well-known TensorFlow tutorial so that its
experiment can be replayed exactly (its deviations are listed on :func:`build_model`).

Layer names are structured (``stage2_block1_conv1``, ``stage2_block1_add``,
``stage2_block1_shortcut_conv``) so that a plain net and its residual twin line up layer by
layer, and so that gradient norms can be grouped by stage (see ``stage_of``).

Builders are pure: they return a ``keras.Model`` and never print, log or touch files.
"""

from __future__ import annotations

import re

import keras
from keras import layers

from .spec import BOTTLENECK_EXPANSION, CIFAR_EXAMPLE_DEPTHS, IMAGENET_DEPTHS, ModelSpec

# --------------------------------------------------------------------------------------
# Layers


@keras.saving.register_keras_serializable(package="resnet_bench")
class ZeroPadShortcut(layers.Layer):
    """Option A: identity with stride-``s`` subsampling and zero-padded extra channels.

    It has no parameters, which is the point: residual and plain twins stay equal in size.
    """

    def __init__(self, stride: int, out_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride
        self.out_channels = out_channels

    def call(self, x):
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride, :]
        extra = self.out_channels - x.shape[-1]
        if extra > 0:
            x = keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.stride
        return (b, None if h is None else -(-h // s), None if w is None else -(-w // s), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "out_channels": self.out_channels}


@keras.saving.register_keras_serializable(package="resnet_bench")
class BatchNorm(layers.BatchNormalization):
    """Keras' BatchNormalization computed with TensorFlow's fused kernel.

    Same weights, names and normalisation as the Keras layer; on the TensorFlow backend one
    fused op replaces the separate moments and normalise ops, which made ResNet-50 training
    about 1.2x faster on a 2-core CPU (docs/performance.md). The moving variance takes the
    unbiased batch variance the fused op returns (as torchvision and tf.keras 2 do; Keras 3
    uses the biased one). Other backends and layouts fall back to the Keras layer.
    """

    def call(self, inputs, training=None, mask=None):
        if keras.backend.backend() != "tensorflow" or len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        if training and self.trainable:
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1 - m))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=False,
        )
        return y


@keras.saving.register_keras_serializable(package="resnet_bench")
class Gate(layers.Layer):
    """``g * block + (1 - g) * removed`` with a stored scalar ``g`` (1: the block as trained).

    Only a lesionable net has gates (:func:`build_model`): setting one to 0 deletes its block
    at test time (Veit et al. 2016) without building the net again. At 1 the block's output
    passes unchanged, bit for bit (``1 * a + 0 * b == a`` for finite ``b``).
    """

    def build(self, input_shape):
        self.g = self.add_weight(shape=(), initializer="ones", trainable=False, name="g")

    def call(self, inputs):
        block, removed = inputs
        g = keras.ops.cast(self.g, block.dtype)
        return g * block + (1 - g) * removed

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class _Ops:
    """Conv/BN/ReLU factory bound to a flavour, so block code stays one function per kind."""

    def __init__(self, spec: ModelSpec, lesionable: bool = False):
        self.article = spec.flavour == "article"
        self.bn_momentum = spec.bn_momentum
        self.lesionable = lesionable

    def conv(self, x, filters, kernel, stride, name):
        # The paper's nets put BN after every conv, so a bias is redundant; the tutorial kept it.
        padding = "same"
        if kernel > 1 and stride > 1 and not self.article:
            # At stride 2 Keras "same" pads asymmetrically (0 before, 1 after); pad symmetrically
            # as torchvision does so feature maps line up with the reference. At stride 1 "same"
            # is already symmetric, and a separate pad layer would only cost a copy per conv.
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
            padding = "valid"
        return layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding=padding,
            use_bias=self.article,
            kernel_initializer="he_normal",
            name=name,
        )(x)

    def bn(self, x, name, zero_gamma=False):
        return BatchNorm(
            momentum=self.bn_momentum,
            epsilon=1.001e-5,
            gamma_initializer="zeros" if zero_gamma else "ones",
            name=name,
        )(x)

    @staticmethod
    def relu(x, name):
        return layers.ReLU(name=name)(x)


def _shortcut(ops: _Ops, x, out_channels: int, stride: int, option: str, force: bool, name: str):
    """The shortcut branch, or ``None`` for a plain block.

    ``force`` marks blocks where the shape changes (or option C projects everywhere).
    """
    if option == "none":
        return None
    changes = force or stride > 1 or x.shape[-1] != out_channels
    if option == "C" or (option == "B" and changes):
        s = ops.conv(x, out_channels, 1, stride, f"{name}_shortcut_conv")
        return ops.bn(s, f"{name}_shortcut_bn")
    if option == "A" and changes:
        return ZeroPadShortcut(stride, out_channels, name=f"{name}_shortcut")(x)
    return x


def _merge(ops: _Ops, y, shortcut, name, removed=None):
    """The block's output: ReLU of branch plus shortcut. In a lesionable net it passes a
    :class:`Gate` whose other input, ``removed``, is what the block leaves when deleted."""
    out = y if shortcut is None else layers.Add(name=f"{name}_add")([shortcut, y])
    out = ops.relu(out, f"{name}_out")
    if removed is None:
        return out
    return Gate(name=f"{name}_gate")([out, ops.relu(removed, f"{name}_removed_out")])


def _removed(ops: _Ops, x, shortcut_path, out_channels: int, stride: int, name: str):
    """What a deleted block passes on (``None`` unless the net is lesionable): its shortcut
    path; for a plain block, which has none, the identity, or option A's parameter-free
    subsample-and-pad where the block changes the shape, so a plain net and its residual twin
    lose the same thing."""
    if not ops.lesionable:
        return None
    if shortcut_path is not None:
        return shortcut_path
    return _shortcut(ops, x, out_channels, stride, "A", False, f"{name}_removed")


def basic_block(ops: _Ops, x, filters: int, stride: int, shortcut: str, name: str, zero_init=False):
    """Two 3x3 convs (He et al. Fig. 2 left); ``shortcut`` is A, B, C or none."""
    sc = _shortcut(ops, x, filters, stride, shortcut, False, name)
    removed = _removed(ops, x, sc, filters, stride, name)
    y = ops.conv(x, filters, 3, stride, f"{name}_conv1")
    y = ops.relu(ops.bn(y, f"{name}_bn1"), f"{name}_relu1")
    y = ops.conv(y, filters, 3, 1, f"{name}_conv2")
    # Zero-initialised last BN (Goyal et al. 2017): each residual block starts as identity.
    # Only meaningful with a shortcut; a plain block would output zeros.
    y = ops.bn(y, f"{name}_bn2", zero_gamma=zero_init and sc is not None)
    return _merge(ops, y, sc, name, removed)


def bottleneck_block(ops: _Ops, x, filters: int, stride: int, shortcut: str, name: str, zero_init=False, v15=False):
    """1x1 reduce, 3x3, 1x1 expand (He et al. Fig. 5 right).

    The stride sits on the first 1x1 conv (``v1``, He et al. and keras.applications) or on the
    3x3 (``v1.5``, torchvision), which costs more MACs but trains slightly better.
    """
    out = filters * BOTTLENECK_EXPANSION
    sc = _shortcut(ops, x, out, stride, shortcut, False, name)
    removed = _removed(ops, x, sc, out, stride, name)
    s1, s2 = (1, stride) if v15 else (stride, 1)
    y = ops.conv(x, filters, 1, s1, f"{name}_conv1")
    y = ops.bn(y, f"{name}_bn1")
    if not ops.article:  # the tutorial omitted this ReLU
        y = ops.relu(y, f"{name}_relu1")
    y = ops.conv(y, filters, 3, s2, f"{name}_conv2")
    y = ops.relu(ops.bn(y, f"{name}_bn2"), f"{name}_relu2")
    y = ops.conv(y, out, 1, 1, f"{name}_conv3")
    y = ops.bn(y, f"{name}_bn3", zero_gamma=zero_init and sc is not None)
    return _merge(ops, y, sc, name, removed)


def _stem(ops: _Ops, x, spec: ModelSpec, width: int):
    if spec.resolved_stem() == "small":
        x = ops.conv(x, width, 3, 1, "stem_conv")
        return ops.relu(ops.bn(x, "stem_bn"), "stem_relu")
    if ops.article:
        # Tutorial: 7x7/2 "same" conv straight into a valid 3x3/2 max-pool, no BN or ReLU.
        x = layers.Conv2D(64, 7, strides=2, padding="same", name="stem_conv")(x)
        return layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    x = ops.conv(x, width, 7, 2, "stem_conv")
    x = ops.relu(ops.bn(x, "stem_bn"), "stem_relu")
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def _body(ops: _Ops, x, spec: ModelSpec):
    """The stages of ``spec``'s depth table, block by block: ``stage<s>_block<b>``."""
    for s, (kind, blocks, filters) in enumerate(spec.stages(), start=1):
        for b in range(1, blocks + 1):
            stride = stage_stride(spec, s, kind) if b == 1 else 1
            name = f"stage{s}_block{b}"
            if kind == "basic":
                x = basic_block(ops, x, filters, stride, spec.shortcut, name, spec.zero_init)
            else:
                v15 = spec.bottleneck_stride == "v1.5"
                x = bottleneck_block(ops, x, filters, stride, spec.shortcut, name, spec.zero_init, v15=v15)
    return x


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
    binary_head: bool = False,
    lesionable: bool = False,
) -> keras.Model:
    """Build one network of the family.

    Args:
        spec: architecture (depth, shortcut option, flavour, ...).
        input_shape: (height, width, channels).
        num_classes: number of classes; with ``binary_head`` and 2 classes the head is one
            sigmoid unit (the tutorial's), otherwise a softmax over ``num_classes``.
        binary_head: use the single-sigmoid head for a two-class task.
        lesionable: give every block a :class:`Gate` (named ``<block>_gate``) that deletes it
            when set to 0. The gates add no weight that training would touch, and every other
            layer keeps its name, so a trained net's weights load into it by layer name.

    Returns:
        An uncompiled ``keras.Model`` named after the variant.

    The ``article`` flavour reproduces the tutorial, deviations from the paper included:
    conv biases; no BN/ReLU after the 7x7 stem; a 3x3/2 max-pool with valid padding; no ReLU
    after the bottleneck's first 1x1 conv; stride 2 in the first block of *every* bottleneck
    stage, the first included; a 2x2/2 average pool + flatten instead of global average
    pooling; and its plain twins drop the projection branches (shortcut ``none``).

    Raises:
        ValueError: when the input is too small for the network's downsampling.
    """
    if binary_head and num_classes != 2:
        raise ValueError(f"a binary (sigmoid) head needs 2 classes, got {num_classes}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    h, w, _ = input_shape
    min_size = minimum_input_size(spec)
    if min(h, w) < min_size:
        raise ValueError(f"image size {min(h, w)} is too small for {spec.name}: it needs at least {min_size} pixels")
    ops = _Ops(spec, lesionable)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _stem(ops, inputs, spec, spec.stages()[0][2] if spec.family == "cifar" else (spec.width or 64))
    x = _body(ops, x, spec)
    if ops.article:
        x = layers.AveragePooling2D(2, name="head_pool")(x)
        x = layers.Flatten(name="head_flatten")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    units, activation = (1, "sigmoid") if binary_head else (num_classes, "softmax")
    # float32 head so mixed-precision runs keep a stable loss.
    outputs = layers.Dense(units, activation=activation, dtype="float32", name="head_dense")(x)
    return keras.Model(inputs, outputs, name=spec.name)


def stage_stride(spec: ModelSpec, stage: int, kind: str) -> int:
    """Stride of the first block of ``stage`` (1-based): every stage after the first halves the
    image (He et al.); the tutorial's bottleneck blocks halve it in stage 1 too, one of its
    slips, kept in its ``article`` flavour. The builder and :func:`minimum_input_size` both ask
    here, so the size check cannot drift from the network."""
    return 2 if stage > 1 or (spec.flavour == "article" and kind == "bottleneck") else 1


def _final_size(spec: ModelSpec, size: int) -> int:
    """Spatial size entering the head for a square input of ``size`` pixels."""
    if spec.flavour == "article":
        size = (-(-size // 2) - 3) // 2 + 1  # "same" 7x7/2 conv, valid 3x3/2 max-pool
    elif spec.resolved_stem() == "imagenet":
        size = ((size - 1) // 2 + 1 - 1) // 2 + 1
    for s, (kind, _, _) in enumerate(spec.stages(), start=1):
        if stage_stride(spec, s, kind) == 2:
            if size < 2:
                return 0  # a stride-2 stage needs at least two pixels to halve
            size = (size - 1) // 2 + 1
    if spec.flavour == "article":
        size //= 2  # 2x2/2 average pool
    return size


def minimum_input_size(spec: ModelSpec) -> int:
    """Smallest square input for which every stride-2 stage still has pixels to halve."""
    return next(n for n in range(1, 4096) if _final_size(spec, n) >= 1)


# --------------------------------------------------------------------------------------
# Counts


def count_params(model: keras.Model) -> dict[str, int]:
    """Trainable and non-trainable (BN moving statistics) parameter counts."""
    trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
    total = model.count_params()
    return {"params_total": total, "params_trainable": trainable, "params_non_trainable": total - trainable}


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of the conv and dense layers (what Table 1 counts)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, oh, ow, oc = layer.output.shape
            kh, kw = layer.kernel_size
            ic = layer.input.shape[-1]
            macs += oh * ow * oc * kh * kw * ic // layer.groups
        elif isinstance(layer, layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return int(macs)


def describe(spec: ModelSpec, input_shape, num_classes, binary_head=False) -> dict:
    """Name, architecture fields, parameter counts and MACs of one spec (builds it once)."""
    model = build_model(spec, input_shape, num_classes, binary_head)
    info = {
        "name": spec.name,
        "depth": spec.depth,
        "family": spec.family,
        "shortcut": spec.shortcut,
        "flavour": spec.flavour,
        "blocks": sum(b for _, b, _ in spec.stages()),
        "add_layers": sum(isinstance(layer, layers.Add) for layer in model.layers),
    }
    info.update(count_params(model))
    info["macs"] = count_macs(model)
    keras.backend.clear_session()
    return info


def stage_of(variable_path: str) -> str:
    """Group name of a weight for per-stage gradient norms: ``stem``, ``stage2``, ``head``."""
    head = variable_path.split("/")[0]
    m = re.match(r"(stage\d+)_", head)
    if m:
        return m.group(1)
    return "head" if head.startswith("head") else "stem"


def registry(flavour: str = "paper") -> list[ModelSpec]:
    """Every named architecture of a flavour, each residual spec followed by its plain twin."""
    if flavour == "article":
        residual = [ModelSpec(d, "B", "imagenet", "article") for d in (18, 50)]
    else:
        residual = [ModelSpec(d, "B", "imagenet") for d in IMAGENET_DEPTHS]
        residual += [ModelSpec(d, "A", "cifar") for d in CIFAR_EXAMPLE_DEPTHS]
    return [s for r in residual for s in (r, r.twin())]
