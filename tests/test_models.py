"""The model family: pinned counts, MACs, structure, forward pass and gradients."""

import functools
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
    describe,
    minimum_input_size,
    parse_model_name,
    registry,
    stage_of,
)

# torchvision's parameter counts (shortcut B, 224 px, 1000 classes).
TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# He et al. section 4.2 nets, option A, 32 px, 10 classes.
CIFAR = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
# The tutorial's models at 224 px with one sigmoid unit (count_params, BN statistics included).
ARTICLE = {(18, "B"): 11_195_265, (18, "none"): 11_018_753, (50, "B"): 23_595_649, (50, "none"): 20_807_553}
# He et al. Table 1 (multiply-adds, rounded by the paper).
TABLE1_MACS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9}


@functools.cache
def _describe(spec: ModelSpec, shape: tuple, classes: int, binary: bool = False) -> dict:
    """``describe`` once per network: the count tests and the MAC tests ask for the same ones."""
    return describe(spec, shape, classes, binary)


def _deep_ones_slow(depths, slow_from: int):
    """The deepest builds take seconds each: they run in `make test`, not in `make test-fast`."""
    return [pytest.param(d, marks=pytest.mark.slow) if d >= slow_from else d for d in depths]


@pytest.mark.parametrize("depth", _deep_ones_slow(sorted(TORCHVISION), 101))
def test_imagenet_trainable_params_match_torchvision(depth):
    info = _describe(ModelSpec(depth, "B"), (224, 224, 3), 1000)
    assert info["params_trainable"] == TORCHVISION[depth]


@pytest.mark.parametrize("depth", _deep_ones_slow(sorted(CIFAR), 110))
def test_cifar_params_and_plain_twin_equal(depth):
    res = describe(ModelSpec(depth, "A"), (32, 32, 3), 10)
    plain = describe(ModelSpec(depth, "none"), (32, 32, 3), 10)
    assert res["params_trainable"] == CIFAR[depth]
    assert plain["params_trainable"] == res["params_trainable"]
    assert plain["params_total"] == res["params_total"]


@pytest.mark.parametrize("depth,shortcut", sorted(ARTICLE))
def test_article_flavour_totals(depth, shortcut):
    info = describe(ModelSpec(depth, shortcut, flavour="article"), (224, 224, 3), 2, binary_head=True)
    assert info["params_total"] == ARTICLE[(depth, shortcut)]


@pytest.mark.parametrize("depth", sorted(TABLE1_MACS))
def test_macs_within_5_percent_of_table1(depth):
    macs = _describe(ModelSpec(depth, "B"), (224, 224, 3), 1000)["macs"]
    assert abs(macs / TABLE1_MACS[depth] - 1) < 0.05


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


def _registry_deep_ones_slow():
    """Every registry entry; the deepest of each family (101, 152, 110) run in `make test`
    only: their builds take seconds each and share code with the shallower ones."""
    specs = registry("paper") + registry("article")
    return [pytest.param(s, marks=pytest.mark.slow) if s.depth >= 101 else s for s in specs]


@pytest.mark.parametrize("spec", _registry_deep_ones_slow(), ids=lambda s: f"{s.name}-{s.flavour}")
def test_registry_forward_shape_and_finite(spec):
    size = max(32, minimum_input_size(spec))
    kwargs = dict(spec.__dict__, width=8 if spec.family == "imagenet" and spec.flavour == "paper" else 0)
    small = ModelSpec(**kwargs)
    binary = spec.flavour == "article"
    model = build_model(small, (size, size, 3), 2 if binary else 5, binary_head=binary)
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == ((2, 1) if binary else (2, 5))
    assert np.isfinite(y).all()
    keras.backend.clear_session()


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
    spec = ModelSpec(14, "A", zero_init_residual=True)
    assert spec.name == "resnet14-zi" and spec.twin().name == "plain14"
    gammas = _gammas(build_model(spec, (16, 16, 3), 3))
    last = {n for n in gammas if re.fullmatch(r"stage\d_block\d_bn2", n)}
    assert len(last) == 6  # 3 stages x 2 blocks
    for name, g in gammas.items():
        assert (not np.any(g)) if name in last else np.all(g == 1), name


def test_zero_init_leaves_plain_nets_untouched():
    plain = ModelSpec(14, "none", zero_init_residual=True)
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
    assert count_macs(model) > 0
    groups = {stage_of(v.path) for v in model.trainable_variables}
    assert groups == {"stem", "stage1", "stage2", "stage3", "head"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth=19), "unknown depth 19"),
        (dict(depth=21, family="cifar"), "6n\\+2"),
        (dict(depth=20, shortcut="D"), "unknown shortcut"),
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
