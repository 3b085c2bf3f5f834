"""The model family: pinned counts, MACs, structure, forward pass and gradients."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from resnet_bench.models import (
    BatchNorm,
    ModelSpec,
    build_model,
    count_macs,
    count_params,
    registry,
    stage_of,
)
from resnet_bench.spec import parse_model_name

# torchvision's parameter counts (shortcut B, 224 px, 1000 classes).
TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# He et al. section 4.2 nets, option A, 32 px, 10 classes.
CIFAR = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
# The tutorial's models at 224 px with one sigmoid unit (count_params, BN statistics included).
ARTICLE = {(18, "B"): 11_195_265, (18, "none"): 11_018_753, (50, "B"): 23_595_649, (50, "none"): 20_807_553}
# He et al. Table 1 (multiply-adds, rounded by the paper).
TABLE1_MACS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9}


# Built in `make test` only: their builds take seconds each and share their blocks with a
# shallower pair (34 with 18, 101 and 152 with 50, 110 with 56), which `make test-fast` keeps.
SLOW_PAIRS = {34, 101, 110, 152}


def _pairs():
    """Each registry network with its plain twin."""
    specs = [s for s in registry("paper") + registry("article") if s.shortcut != "none"]
    return [pytest.param(s, marks=pytest.mark.slow) if s.depth in SLOW_PAIRS else s for s in specs]


def _published_size(spec: ModelSpec):
    """(input shape, classes, binary head) of the published counts: the paper's ImageNet nets
    at 224 px and 1000 classes, its CIFAR nets at 32 px and 10, the tutorial's at 224 px with
    one sigmoid unit."""
    if spec.flavour == "article":
        return (224, 224, 3), 2, True
    return ((224, 224, 3), 1000, False) if spec.family == "imagenet" else ((32, 32, 3), 10, False)


@pytest.mark.parametrize("spec", _pairs(), ids=lambda s: f"{s.name}-{s.flavour}")
def test_registry_pair_matches_published_counts_and_runs_forward(spec):
    """Every registry network and its plain twin, each built once at the size its published
    counts are for: those counts (torchvision's, the paper's CIFAR table, the tutorial's; the
    paper's Table 1 MACs within 5%), and a forward pass of the right shape with finite values."""
    shape, classes, binary = _published_size(spec)
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")  # one image: 224 px forwards cost
    info = {}
    for net in (spec, spec.twin()):
        model = build_model(net, shape, classes, binary_head=binary)
        info[net.shortcut] = {**count_params(model), "macs": count_macs(model)}
        y = model(x, training=False).numpy()
        assert y.shape == ((1, 1) if binary else (1, classes)), net.name
        assert np.isfinite(y).all(), net.name
        keras.backend.clear_session()
    res, plain = info[spec.shortcut], info["none"]
    if spec.flavour == "article":
        assert res["params_total"] == ARTICLE[(spec.depth, spec.shortcut)]
        assert plain["params_total"] == ARTICLE[(spec.depth, "none")]
    elif spec.family == "imagenet":
        assert res["params_trainable"] == TORCHVISION[spec.depth]
        if spec.depth in TABLE1_MACS:
            assert abs(res["macs"] / TABLE1_MACS[spec.depth] - 1) < 0.05
    else:  # option A adds no weights: the plain twin has exactly the same ones
        assert res["params_trainable"] == plain["params_trainable"] == CIFAR[spec.depth]
        assert res["params_total"] == plain["params_total"]


def test_every_published_count_has_a_registry_network():
    """The tables above are all checked by the test before: none lists a network the
    registry lacks."""
    names = {(s.family, s.flavour, s.depth, s.shortcut) for s in registry("paper") + registry("article")}
    assert {("imagenet", "paper", d, "B") for d in TORCHVISION} <= names
    assert {("imagenet", "paper", d, "B") for d in TABLE1_MACS} <= names
    assert {("cifar", "paper", d, "A") for d in CIFAR} <= names
    assert {("imagenet", "article", d, sc) for d, sc in ARTICLE} <= names


def test_stem_gives_56x56_at_224():
    model = build_model(ModelSpec(18, "B"), (224, 224, 3), 1000)
    assert model.get_layer("stem_pool").output.shape[1:3] == (56, 56)


@pytest.mark.parametrize("spec", [ModelSpec(20, "A"), ModelSpec(18, "B"), ModelSpec(50, "A"), ModelSpec(50, "C")])
def test_add_layers_one_per_block_and_none_in_plain_twin(spec):
    shape = (64, 64, 3)
    blocks = sum(b for _, b, _ in spec.stages())
    res = build_model(spec, shape, 10)
    plain = build_model(spec.twin(), shape, 10)
    assert sum(isinstance(layer, keras.layers.Add) for layer in res.layers) == blocks
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    # Structured names line the twins up layer by layer.
    conv = {layer.name for layer in res.layers if isinstance(layer, keras.layers.Conv2D)}
    plain_conv = {layer.name for layer in plain.layers if isinstance(layer, keras.layers.Conv2D)}
    assert plain_conv <= conv
    assert "stage2_block1_conv1" in conv


def test_option_c_projects_every_block_and_b_only_where_shape_changes():
    c = build_model(ModelSpec(18, "C", stem="small", width=8), (32, 32, 3), 10)
    b = build_model(ModelSpec(18, "B", stem="small", width=8), (32, 32, 3), 10)
    count = lambda m: sum(layer.name.endswith("_shortcut_conv") for layer in m.layers)  # noqa: E731
    assert count(c) == 8
    assert count(b) == 3


@pytest.mark.parametrize("spec", [ModelSpec(8, "A"), ModelSpec(8, "none"), ModelSpec(50, "B", width=8)])
def test_every_trainable_weight_gets_a_gradient(spec):
    model = build_model(spec, (32, 32, 3), 4)
    x = tf.random.stateless_normal((4, 32, 32, 3), seed=[1, 2])
    y = tf.constant([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(g.numpy())]
    assert not missing


def _gammas(model):
    return {layer.name: layer.gamma.numpy() for layer in model.layers if isinstance(layer, BatchNorm)}


def test_zero_init_residual_zeroes_exactly_the_last_bn_of_each_residual_branch():
    spec = ModelSpec(14, "A", zero_init=True)
    assert spec.name == "resnet14-zi" and spec.twin().name == "plain14"
    gammas = _gammas(build_model(spec, (16, 16, 3), 3))
    last = {n for n in gammas if re.fullmatch(r"stage\d_block\d_bn2", n)}
    assert len(last) == 6  # 3 stages x 2 blocks
    for name, g in gammas.items():
        assert (not np.any(g)) if name in last else np.all(g == 1), name


def test_zero_init_leaves_plain_nets_untouched():
    plain = ModelSpec(14, "none", zero_init=True)
    assert plain.name == "plain14" and not plain.zero_init
    gammas = _gammas(build_model(plain, (16, 16, 3), 3))
    assert gammas and all(np.all(g == 1) for g in gammas.values())
    keras.utils.set_random_seed(0)
    a = build_model(plain, (16, 16, 3), 3).get_weights()
    keras.utils.set_random_seed(0)
    b = build_model(ModelSpec(14, "none"), (16, 16, 3), 3).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bn_momentum_reaches_every_batch_norm():
    assert {layer.momentum for layer in build_model(ModelSpec(8, "A"), (16, 16, 3), 3).layers
            if isinstance(layer, BatchNorm)} == {0.9}  # fmt: skip
    model = build_model(ModelSpec(8, "A", bn_momentum=0.99), (16, 16, 3), 3)
    assert {layer.momentum for layer in model.layers if isinstance(layer, BatchNorm)} == {0.99}


def test_counts_and_stage_groups():
    model = build_model(ModelSpec(8, "A"), (16, 16, 3), 3)
    counts = count_params(model)
    # non-trainable weights are exactly the BN moving mean and variance: 2 per BN channel
    bn_channels = sum(layer.gamma.shape[0] for layer in model.layers if isinstance(layer, BatchNorm))
    assert counts["params_non_trainable"] == 2 * bn_channels
    # by hand, per image at 16 px (width 16, option A: no shortcut convs): stem 3->16 at 16x16,
    # stage1 two 16->16 at 16x16, stage2 16->32 (stride 2) and 32->32 at 8x8, stage3 32->64 and
    # 64->64 at 4x4, each 9 MACs per output per input channel; the head 64 x 3
    convs = 256 * 9 * (3 * 16 + 2 * 16 * 16) + 64 * 9 * (16 * 32 + 32 * 32) + 16 * 9 * (32 * 64 + 64 * 64)
    assert count_macs(model) == convs + 64 * 3 == 3_059_904
    groups = {stage_of(v.path) for v in model.trainable_variables}
    assert groups == {"stem", "stage1", "stage2", "stage3", "head"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth=19), "unknown depth 19"),
        (dict(depth=21, family="cifar"), "6n\\+2"),
        (dict(depth=20, shortcut="D"), "shortcut = 'D' is not one of A, B, C, none"),
        (dict(depth=18, family="imagenet", flavour="article", shortcut="A"), "article flavour"),
    ],
)
def test_bad_specs_raise_value_error_with_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelSpec(**kwargs)


def test_too_small_input_is_a_value_error():
    with pytest.raises(ValueError, match="too small"):
        build_model(ModelSpec(50, "B"), (8, 8, 3), 10)


def test_parse_model_name():
    assert parse_model_name("resnet50").shortcut == "B"
    assert parse_model_name("resnet56").shortcut == "A"
    assert parse_model_name("plain56").shortcut == "none"
    assert parse_model_name("article_resnet18").flavour == "article"
    with pytest.raises(ValueError):
        parse_model_name("vgg16")


def test_fused_batch_norm_matches_keras_layer_and_keeps_the_unbiased_variance():
    """The fused layer against Keras' own on one batch: the same output in training and in
    inference mode, and moving statistics that differ only by Bessel's factor n / (n - 1) on
    the variance (the fused op's unbiased batch variance; Keras 3 keeps the biased one)."""
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 5, 5, 6)).astype(np.float32)
    ours, ref = BatchNorm(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    for layer in (ours, ref):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 6))
        layer.beta.assign(np.linspace(-1, 1, 6))
    np.testing.assert_allclose(ours(x, training=True), ref(x, training=True), rtol=1e-4, atol=1e-4)
    n = x.size // x.shape[-1]  # values per channel
    np.testing.assert_allclose(ours.moving_mean, ref.moving_mean, rtol=1e-5, atol=1e-6)
    batch_var = x.reshape(-1, 6).var(axis=0)  # biased, by numpy
    np.testing.assert_allclose(ref.moving_variance, 0.5 + 0.5 * batch_var, rtol=1e-4)
    np.testing.assert_allclose(ours.moving_variance, 0.5 + 0.5 * batch_var * n / (n - 1), rtol=1e-4)
    ref.moving_variance.assign(ours.moving_variance)  # same statistics: the same inference output
    np.testing.assert_allclose(ours(x, training=False), ref(x, training=False), rtol=1e-4, atol=1e-4)
