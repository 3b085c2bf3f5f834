"""Layer responses and branch ratios (He et al. Fig. 7): measured values against a hand computation."""

import numpy as np
import pytest

from resnet_bench import responses, schema
from resnet_bench.models import ModelSpec, build_model

EPS = 1.001e-5  # the models' BN epsilon


def _hand_set(model, rng):
    """Centre-tap-only 3x3 kernels (each conv is a per-pixel channel mix, subsampled at
    stride 2) and random BN statistics, so numpy can run the net without a convolution."""
    params = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            k = np.zeros(layer.kernel.shape, "float32")
            k[1, 1] = rng.normal(size=k.shape[2:])
            layer.kernel.assign(k)
            params[layer.name] = (k[1, 1], layer.strides[0])
        elif kind == "BatchNorm":
            c = layer.gamma.shape[0]
            values = [rng.uniform(0.2, 2.0, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2.0, c)]
            for var, v in zip((layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance), values):
                var.assign(v.astype("float32"))
            params[layer.name] = values
    return params


def _by_hand(x, p):
    """resnet8 (option A) in numpy: the BN outputs of its 3x3 layers and each block's
    shortcut and branch."""
    conv = lambda h, name: h[:, :: p[name][1], :: p[name][1], :] @ p[name][0]  # noqa: E731
    bn = lambda h, name: p[name][0] * (h - p[name][2]) / np.sqrt(p[name][3] + EPS) + p[name][1]  # noqa: E731
    relu = lambda h: np.maximum(h, 0)  # noqa: E731
    taps = {"stem_bn": bn(conv(x, "stem_conv"), "stem_bn")}
    h = relu(taps["stem_bn"])
    blocks = {}
    for s in (1, 2, 3):
        name = f"stage{s}_block1"
        taps[f"{name}_bn1"] = bn(conv(h, f"{name}_conv1"), f"{name}_bn1")
        taps[f"{name}_bn2"] = bn(conv(relu(taps[f"{name}_bn1"]), f"{name}_conv2"), f"{name}_bn2")
        branch = taps[f"{name}_bn2"]
        short = h[:, ::2, ::2, :] if s > 1 else h  # option A: subsample, zero-pad channels
        extra = branch.shape[-1] - short.shape[-1]
        short = np.pad(short, [(0, 0)] * 3 + [(extra // 2, extra - extra // 2)])
        blocks[name] = (short, branch)
        h = relu(short + branch)
    return taps, blocks


def test_responses_and_branch_ratios_equal_a_hand_computation():
    rng = np.random.default_rng(0)
    model = build_model(ModelSpec(8, "A", "cifar", width=2), (8, 8, 3), 3)
    params = _hand_set(model, rng)
    x = rng.normal(size=(5, 8, 8, 3)).astype("float32")
    measured = responses.ResponseProbe(model)(x)

    taps, blocks = _by_hand(x.astype("float64"), params)
    expected = {}
    for i, name in enumerate(taps, 1):
        expected[schema.response_metric(i, name)] = taps[name].std(axis=(0, 1, 2)).mean()
    for i, (name, (short, branch)) in enumerate(blocks.items(), 1):
        expected[schema.branch_metric(i, name)] = np.linalg.norm(branch) / np.linalg.norm(short)
    assert list(measured) == list(expected)  # network order, the stem first
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, rel=1e-4), key


def test_a_plain_twin_has_the_same_response_layers_and_no_branches():
    residual = build_model(ModelSpec(14, "A", "cifar", width=2), (8, 8, 3), 3)
    plain = build_model(ModelSpec(14, "none", "cifar", width=2), (8, 8, 3), 3)
    assert responses.response_layers(plain) == responses.response_layers(residual)
    assert len(responses.response_layers(plain)) == 13  # every conv of a CIFAR net is 3x3
    assert responses.residual_blocks(plain) == [] and len(responses.residual_blocks(residual)) == 6
    assert not any(k.startswith(schema.BRANCH_RATIO_PREFIX) for k in responses.metric_names(plain))


def test_a_bottleneck_net_measures_its_middle_convs_only():
    model = build_model(ModelSpec(50, "B", "imagenet", width=8), (32, 32, 3), 2)
    layers = responses.response_layers(model)
    assert len(layers) == 16 and all(n.endswith("_bn2") for n in layers)  # 3+4+6+3 blocks, 7x7 stem left out
    assert len(responses.residual_blocks(model)) == 16


def test_a_zero_init_net_starts_with_zero_branches():
    """The initialisation, not a finding: the report says so; here it checks the measurement."""
    model = build_model(ModelSpec(8, "A", "cifar", width=2, zero_init=True), (8, 8, 3), 3)
    values = responses.ResponseProbe(model)(np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32"))
    ratios = [v for k, v in values.items() if k.startswith(schema.BRANCH_RATIO_PREFIX)]
    assert len(ratios) == 3 and all(r == 0 for r in ratios)


def test_layer_metric_names_parse_back():
    assert schema.parse_layer_metric(schema.response_metric(7, "stage2_block1_bn1")) == (
        "response_std",
        7,
        "stage2_block1_bn1",
    )
    assert schema.parse_layer_metric(schema.branch_metric(12, "stage3_block4")) == ("branch_ratio", 12, "stage3_block4")
    assert schema.parse_layer_metric("grad_norm/stage1") is None
    assert schema.parse_layer_metric("response_std/x_y") is None
